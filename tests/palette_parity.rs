//! Parity of the Palette family with the official Palette code (the paper's fork, branch `i2i`).
//!
//! - `../shared/fixtures/palette` (made by the project with the official code, 32 px, tiny random
//!   weights, real photographs; see its README): the noise prediction, every encoder feature map,
//!   one ancestral step at t = 1234 of the test schedule, and the schedule's ᾱ.
//! - `tests/fixtures/palette_ref` (made by `tools/reference/palette_reference.py` with other
//!   weights and sizes): the same at other noise levels and timesteps, a 10-step restoration loop
//!   with its noise, Palette's training loss, and one "ours" unlearning step (loss and encoder
//!   gradients); see `palette_reference_*` below.
//!
//! Tolerance (the fixtures README's): 1e-4 relative (max |ours − ref| ≤ 1e-4 · max |ref|).

mod common;
use candle_core::{Device, Tensor};
use i2i_unlearn::models::palette::{diffusion, Palette, Schedule};
use i2i_unlearn::models::{self, FamilyConfig, FamilyName};
use i2i_unlearn::nn::Mode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOL: f32 = 1e-4;

fn shared_fixture() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/palette");
    if p.is_dir() {
        Some(p)
    } else {
        common::absent("../shared/fixtures/palette");
        None
    }
}

fn rel(ours: &Tensor, reference: &Tensor) -> f32 {
    i2i_unlearn::util::max_rel_diff(ours, reference, 1e-12).unwrap()
}

fn load(dir: &Path) -> (Palette, HashMap<String, Tensor>, String) {
    let dev = Device::Cpu;
    let p =
        models::load_pretrained(FamilyName::Palette, dir.to_str().unwrap(), None, &dev).unwrap();
    let FamilyConfig::Palette(cfg) = p.config else {
        panic!("not a Palette config")
    };
    let case = candle_core::safetensors::load(dir.join("case.safetensors"), &dev).unwrap();
    (
        Palette::new(cfg, &p.weights, false, &dev).unwrap(),
        case,
        p.layout,
    )
}

fn check(what: &str, ours: &Tensor, reference: &Tensor) {
    assert_eq!(ours.dims(), reference.dims(), "{what}: shape");
    let r = rel(ours, reference);
    println!("{what}: max rel diff {r:.2e}");
    assert!(r <= TOL, "{what}: relative difference {r:.3e} > {TOL:e}");
}

#[test]
fn shared_fixture_noise_prediction_and_encoder_maps() {
    let Some(dir) = shared_fixture() else { return };
    let (m, case, layout) = load(&dir);
    println!("{layout}");
    let x = Tensor::cat(&[&case["y_cond"], &case["y_t"]], 1).unwrap();
    let eps = m.net.forward(&x, &case["gammas"], Mode::Infer).unwrap();
    check("eps", &eps, &case["eps"]);
    // The differentiable path (training) computes the same.
    let eps_train = m.net.forward(&x, &case["gammas"], Mode::Train).unwrap();
    check("eps (train path)", &eps_train, &case["eps"]);
    let feats = m.net.features(&x, &case["gammas"], Mode::Infer).unwrap();
    assert_eq!(feats.len(), m.palette_config().num_encoder_maps());
    let mut n = 0;
    for (i, f) in feats.iter().enumerate() {
        let key = format!("encoder_feat_{i:02}");
        if let Some(r) = case.get(&key) {
            check(&key, f, r);
            n += 1;
        }
    }
    assert_eq!(n, feats.len(), "every encoder map has a reference");
}

#[test]
fn shared_fixture_test_schedule_and_one_ancestral_step() {
    let Some(dir) = shared_fixture() else { return };
    let (m, case, _) = load(&dir);
    let g: Vec<f32> = case["schedule_test_gammas"].to_vec1().unwrap();
    assert_eq!(g.len(), m.test.len());
    let ours = Tensor::from_vec(
        m.test.gammas.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        g.len(),
        &Device::Cpu,
    )
    .unwrap();
    // ᾱ falls to ~1e-40 at the end of this schedule: compare each value to itself.
    let worst = m
        .test
        .gammas
        .iter()
        .zip(&g)
        .map(|(a, b)| ((*a as f32 - b).abs() / b.abs().max(1e-30)) as f64)
        .fold(0.0, f64::max);
    println!("schedule ᾱ: worst per-value rel diff {worst:.2e}");
    assert!(worst < 1e-5 || rel(&ours, &case["schedule_test_gammas"]) < 1e-6);
    let t: Vec<i64> = case["t"].to_vec1().unwrap();
    let c = m.test.coefficients(t[0] as usize);
    let b = case["y0"].dim(0).unwrap();
    let gam = diffusion::gammas_tensor(&vec![c.gamma; b], &Device::Cpu).unwrap();
    let x = Tensor::cat(&[&case["y_cond"], &case["y_t"]], 1).unwrap();
    let eps = m.net.forward(&x, &gam, Mode::Infer).unwrap();
    let (mean, logvar) = diffusion::posterior(&case["y_t"], &eps, &c).unwrap();
    check("p_mean", &mean, &case["p_mean"]);
    let lv: Vec<f32> = case["p_logvar"].flatten_all().unwrap().to_vec1().unwrap();
    assert!(((logvar as f32) - lv[0]).abs() <= TOL * lv[0].abs());
    let y_prev = diffusion::ancestral(&mean, logvar, Some(&case["step_noise"])).unwrap();
    check("y_prev", &y_prev, &case["y_prev"]);
    let pasted = i2i_unlearn::masks::paste(&case["y0"], &y_prev, &case["mask"]).unwrap();
    check("y_prev_pasted", &pasted, &case["y_prev_pasted"]);
}

#[test]
fn the_checkpoint_config_must_match_its_schedule_buffers() {
    let Some(dir) = shared_fixture() else { return };
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        dir.join("palette_tiny_Network.pth"),
        tmp.path().join("palette_tiny_Network.pth"),
    )
    .unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    cfg["beta_schedule"]["train"]["linear_end"] = serde_json::json!(0.02);
    cfg["beta_schedule"]["test"]["linear_end"] = serde_json::json!(0.05);
    std::fs::write(tmp.path().join("config.json"), cfg.to_string()).unwrap();
    let err = models::load_pretrained(
        FamilyName::Palette,
        tmp.path().to_str().unwrap(),
        None,
        &Device::Cpu,
    )
    .err()
    .expect("a schedule mismatch is refused");
    assert!(format!("{err:#}").contains("gammas"), "{err:#}");
    let _ = Schedule::new(&Default::default());
}

fn own_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette_ref")
}

/// A batch as `I2IModel::prepare` would give it, from the fixture's tensors: pixels in [0, 1],
/// the pixel-grid masks, noise levels, noise, the condition image's noise, no "pure" rows.
fn input_of(case: &HashMap<String, Tensor>, gammas: &Tensor) -> i2i_unlearn::models::ModelInput {
    use i2i_unlearn::masks::{BatchMask, PatchMask};
    let mask = &case["mask"];
    let (b, _, s, _) = mask.dims4().unwrap();
    let v: Vec<f32> = mask.flatten_all().unwrap().to_vec1().unwrap();
    let masks = v
        .chunks(s * s)
        .map(|m| PatchMask {
            grid: s,
            hidden: m.iter().map(|&x| x > 0.5).collect(),
            border: None,
        })
        .collect();
    i2i_unlearn::models::ModelInput {
        pixels: case["y0"].affine(0.5, 0.5).unwrap(),
        mask: BatchMask::ragged(masks).unwrap(),
        cond: vec![
            gammas.clone(),
            case["noise"].clone(),
            case["cond_noise"].clone(),
            Tensor::zeros(b, candle_core::DType::F32, &Device::Cpu).unwrap(),
        ],
    }
}

/// The noise prediction, the 7 encoder maps and Palette's training loss at four noise levels,
/// with the inputs built by our own batch code (`net_input`) from the same noise.
#[test]
fn palette_reference_forward_maps_and_training_loss() {
    use i2i_unlearn::models::I2IModel;
    let (m, case, layout) = load(&own_fixture());
    assert!(layout.contains("train schedule"), "{layout}");
    let input = input_of(&case, &case["forward_gammas"]);
    let x = m.net_input(&input, None).unwrap();
    let want_x = Tensor::cat(&[&case["y_cond"], &case["y_t"]], 1).unwrap();
    assert!(i2i_unlearn::util::max_abs_diff(&x, &want_x).unwrap() < 1e-5);
    check("eps", &m.output(&input, Mode::Infer).unwrap(), &case["eps"]);
    let emb = m.encode(&input, Mode::Train).unwrap();
    assert_eq!(emb.0.len(), 7);
    for (i, f) in emb.0.iter().enumerate() {
        check(&format!("feat_{i:02}"), f, &case[&format!("feat_{i:02}")]);
    }
    let loss = m
        .training_loss(&input, &input.pixels, Mode::Train)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let want = case["train_loss"].to_scalar::<f32>().unwrap();
    println!("training loss {loss} vs {want}");
    assert!((loss - want).abs() <= TOL * want);
}

/// Ancestral steps at t = 1999 (ᾱ subnormal in f32), 700 and 0 (no noise), and a whole 10-step
/// restoration loop with the official noise, known region reset at every step.
#[test]
fn palette_reference_ancestral_steps_and_restoration_loop() {
    let (m, case, _) = load(&own_fixture());
    for (name, mine) in [
        ("schedule_train_gammas", &m.train),
        ("schedule_test_gammas", &m.test),
    ] {
        let want: Vec<f32> = case[name].to_vec1().unwrap();
        assert!(
            mine.gammas
                .iter()
                .zip(&want)
                .all(|(a, b)| (*a as f32 - b).abs() <= 1e-6 * b.abs()
                    || (*a as f32 - b).abs() < 1e-37)
        );
    }
    let b = case["y0"].dim(0).unwrap();
    let x = Tensor::cat(&[&case["y_cond"], &case["y_t"]], 1).unwrap();
    for t in [1999usize, 700, 0] {
        let c = m.test.coefficients(t);
        let gam = diffusion::gammas_tensor(&vec![c.gamma; b], &Device::Cpu).unwrap();
        let eps = m.net.forward(&x, &gam, Mode::Infer).unwrap();
        let (mean, logvar) = diffusion::posterior(&case["y_t"], &eps, &c).unwrap();
        check(
            &format!("p_mean_t{t}"),
            &mean,
            &case[&format!("p_mean_t{t}")],
        );
        let lv: Vec<f32> = case[&format!("p_logvar_t{t}")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(
            ((logvar as f32) - lv[0]).abs() <= 1e-5 * lv[0].abs(),
            "logvar t{t}"
        );
        let noise = (t > 0).then(|| case[&format!("step_noise_t{t}")].clone());
        let y = diffusion::ancestral(&mean, logvar, noise.as_ref()).unwrap();
        check(&format!("y_prev_t{t}"), &y, &case[&format!("y_prev_t{t}")]);
    }
    let short = Schedule::new(&i2i_unlearn::models::palette::BetaSchedule {
        schedule: "linear".into(),
        n_timestep: 10,
        linear_start: 1e-3,
        linear_end: 0.3,
        cosine_s: 8e-3,
    });
    let want_g: Vec<f32> = case["restore_gammas"].to_vec1().unwrap();
    for (a, w) in short.gammas.iter().zip(&want_g) {
        assert!((*a as f32 - w).abs() <= 1e-6 * w);
    }
    let noise = &case["restore_noise"];
    let mut steps = 0;
    let out = m
        .restore(
            &case["y0"],
            &case["mask"],
            &case["cond_noise"],
            &short,
            // The official loop draws in the order i = 9, 8, …: row 9 − i.
            &mut |i| Ok(noise.get(9 - i)?),
            &mut |_, _| steps += 1,
        )
        .unwrap();
    assert_eq!(steps, 10);
    check("restore_out", &out, &case["restore_out"]);
}

/// One "ours" step as the official `Network.forward(…, fix_decoder=True)` computes it: the
/// teacher sees pure noise in the forget rows' hole (our `noise_input`), the loss is
/// Σ_maps [mse(s·w_r, t·w_r) + α·mse(s·w_f, t·w_f)] over the whole batch, i.e.
/// (1/B)·[Σ_retain PS + α·Σ_forget PS] in per-sample terms. Gradients: 1e-3 relative.
#[test]
fn palette_reference_one_ours_step() {
    use i2i_unlearn::models::I2IModel;
    let dir = own_fixture();
    let dev = Device::Cpu;
    let (teacher, case, _) = load(&dir);
    let input = input_of(&case, &case["ours_sample_gammas"]);
    // Our noise levels from (t, u) equal the official draw.
    let t: Vec<i64> = case["ours_t"].to_vec1().unwrap();
    let u: Vec<f32> = case["ours_u"].to_vec1().unwrap();
    let sg: Vec<f32> = case["ours_sample_gammas"].to_vec1().unwrap();
    for ((t, u), want) in t.iter().zip(&u).zip(&sg) {
        let g = teacher.train.training_gamma(*t as usize, *u as f64) as f32;
        assert!((g - want).abs() <= 1e-6 * want, "{g} vs {want}");
    }
    let labels: Vec<f32> = case["labels"].to_vec1().unwrap();
    let pure_input = teacher.noise_input(&input, &input.pixels).unwrap();
    // The teacher's input: pure noise in the hole of forget rows only.
    let pure_rows = Tensor::new(
        labels
            .iter()
            .map(|&l| if l < 0.0 { 1f32 } else { 0.0 })
            .collect::<Vec<_>>(),
        &dev,
    )
    .unwrap();
    let mut mixed = input.clone();
    mixed.cond[3] = pure_rows;
    let t_in = teacher.net_input(&mixed, None).unwrap();
    assert!(i2i_unlearn::util::max_abs_diff(&t_in, &case["ours_teacher_in"]).unwrap() < 1e-5);
    let s_in = teacher.net_input(&input, None).unwrap();
    assert!(i2i_unlearn::util::max_abs_diff(&s_in, &case["ours_student_in"]).unwrap() < 1e-5);

    let guide = teacher.encode(&input, Mode::Infer).unwrap();
    let mis = teacher.encode(&pure_input, Mode::Infer).unwrap();
    let p =
        models::load_pretrained(FamilyName::Palette, dir.to_str().unwrap(), None, &dev).unwrap();
    let mut w = p.weights.clone();
    for (k, v) in candle_core::pickle::read_all(dir.join("palette_student.pth")).unwrap() {
        assert!(w.contains_key(&k), "{k}");
        w.insert(k, v);
    }
    let FamilyConfig::Palette(cfg) = p.config else {
        panic!()
    };
    let student = Palette::new(cfg, &w, true, &dev).unwrap();
    let emb = student.encode(&input, Mode::Train).unwrap();
    let alpha = case["ours_alpha"].to_scalar::<f32>().unwrap() as f64;
    let b = labels.len() as f64;
    let r_w = Tensor::new(
        labels.iter().map(|&l| (l + 1.0) / 2.0).collect::<Vec<_>>(),
        &dev,
    )
    .unwrap();
    let f_w = Tensor::new(
        labels.iter().map(|&l| (1.0 - l) / 2.0).collect::<Vec<_>>(),
        &dev,
    )
    .unwrap();
    let r = (emb.per_sample_mse(&guide).unwrap() * r_w)
        .unwrap()
        .sum_all()
        .unwrap();
    let f = (emb.per_sample_mse(&mis).unwrap() * f_w)
        .unwrap()
        .sum_all()
        .unwrap();
    let loss = ((r + (f * alpha).unwrap()).unwrap() / b).unwrap();
    let got = loss.to_scalar::<f32>().unwrap();
    let want = case["ours_loss"].to_scalar::<f32>().unwrap();
    println!("ours loss {got} vs {want}");
    assert!((got - want).abs() <= 1e-4 * want, "ours loss");
    let grads = loss.backward().unwrap();
    let mut n = 0;
    for (name, var, _) in &student.params().vars {
        let key = format!("ours_grad.{}", name.trim_start_matches("denoise_fn."));
        let Some(want) = case.get(&key) else { continue };
        let g = grads.get(var.as_tensor()).expect("gradient");
        let r = rel(g, want);
        println!("{key}: rel {r:.2e}");
        assert!(r <= 1e-3, "{key}: {r:.3e}");
        n += 1;
    }
    assert_eq!(n, 5, "every reference gradient compared");
}
