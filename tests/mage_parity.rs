//! Parity of the MAGE family with the official MAGE code (the paper's fork, branch `i2i`).
//!
//! - `../shared/fixtures/mage` (made by the project with the official code, 256 px, tiny random
//!   weights, real photographs; see its README): tokenizer tokens / latents / decoding, encoder
//!   output, logits, and the greedy 20-iteration MaskGIT decoding.
//! - `tests/fixtures/mage_ref` (made by `tools/reference/mage_reference.py` with other weights, a
//!   32 px config and the training path): see `mage_reference_*` below.
//!
//! Tolerances (the fixtures README's): encoder output and logits 1e-4 relative (max |ours − ref|
//! ≤ 1e-4 · max |ref|); images 1e-3; tokens identical except where two codebook distances tie
//! within float error — the match rate is printed and must be ≥ 99%.

mod common;
use candle_core::{DType, Device, Tensor};
use i2i_unlearn::masks::{BatchMask, MaskSpec};
use i2i_unlearn::models::mage::{keep_all, Mage, Tokens};
use i2i_unlearn::models::{self, FamilyConfig, FamilyName};
use i2i_unlearn::nn::Mode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn shared_fixture() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mage");
    if p.is_dir() {
        Some(p)
    } else {
        common::absent("../shared/fixtures/mage");
        None
    }
}

fn rel(ours: &Tensor, reference: &Tensor) -> f32 {
    i2i_unlearn::util::max_rel_diff(ours, reference, 1e-12).unwrap()
}

fn match_rate(a: &Tensor, b: &Tensor) -> f64 {
    let a = a
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let b = b
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn load(dir: &Path) -> (Mage, HashMap<String, Tensor>) {
    let dev = Device::Cpu;
    let p = models::load_pretrained(FamilyName::Mage, dir.to_str().unwrap(), None, &dev).unwrap();
    let FamilyConfig::Mage(cfg) = p.config else {
        panic!("not a MAGE config")
    };
    let case = candle_core::safetensors::load(dir.join("case.safetensors"), &dev).unwrap();
    (Mage::new(cfg, &p.weights, false, &dev).unwrap(), case)
}

fn mask_rows(t: &Tensor) -> Vec<Vec<bool>> {
    t.to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v > 0.5).collect())
        .collect()
}

#[test]
fn mage_shared_fixture_tokenizer_encoder_logits_and_greedy_decoding() {
    let Some(dir) = shared_fixture() else { return };
    let (m, case) = load(&dir);
    let dev = Device::Cpu;

    // Tokenizer.
    let q = m.vq.encode(&case["images_masked"]).unwrap();
    let rate = match_rate(&q.tokens, &case["vq_tokens"]);
    println!("tokenizer token match rate {:.4}", rate);
    assert!(rate >= 0.99, "token match rate {rate}");
    let ref_tokens = case["vq_tokens"].to_dtype(DType::U32).unwrap();
    let zq = m.vq.lookup(&ref_tokens).unwrap();
    let e = rel(&zq, &case["vq_zq"]);
    assert!(e < 1e-6, "z_q of the reference tokens: {e}");
    let dec = m.vq.decoder.forward(&case["vq_zq"]).unwrap();
    let e = rel(&dec, &case["vq_decoded"]);
    println!("decoding rel err {e:.2e}");
    assert!(e < 1e-3, "decoding: {e}");

    // The evaluation's token mask from our `center:8` hole (128 px at 256).
    let grid = m.mage_config().grid();
    let mask = "center:8"
        .parse::<MaskSpec>()
        .unwrap()
        .batch(grid, &[0, 1])
        .unwrap();
    let want = mask_rows(&case["token_all_mask"]);
    for (pm, w) in mask.masks.iter().zip(&want) {
        assert_eq!(&m.token_mask(pm), w, "token mask grown by one token");
    }
    // The evaluation input: hole filled with the ImageNet mean.
    let filled = m.fill_hole(&case["images"], &mask).unwrap();
    let e = i2i_unlearn::util::max_abs_diff(&filled, &case["images_masked"]).unwrap();
    assert!(e < 1e-6, "masked input: {e}");

    // Encoder and logits on the reference tokens.
    let tokens = Tokens {
        ids: ref_tokens.clone(),
        masked: want.clone(),
        keep: keep_all(2, grid * grid),
    };
    let enc = m.net.encode(&tokens, Mode::Infer).unwrap();
    let e = rel(&enc, &case["encoder_out"]);
    println!("encoder rel err {e:.2e}");
    assert!(e < 1e-4, "encoder: {e}");
    let logits = m.net.decode(&enc, &tokens, Mode::Infer).unwrap();
    let lc = logits.narrow(2, 0, 1024).unwrap();
    let e = rel(&lc, &case["logits_codebook"]);
    println!("logits rel err {e:.2e}");
    assert!(e < 1e-4, "logits: {e}");
    // The same through the training path with nothing dropped and the grad-enabled ops.
    let enc_t = m.net.encode(&tokens, Mode::Train).unwrap();
    assert!(rel(&enc_t, &case["encoder_out"]) < 1e-4);

    // Greedy MaskGIT from the pixels: our own tokenization of the filled image.
    let mut rngs: Vec<_> = (0..2).map(|i| i2i_unlearn::util::rng("t", i)).collect();
    let mut steps = 0;
    let ids = m
        .inpaint_tokens(&case["images"], &mask, &mut rngs, true, &mut |_, _| {
            steps += 1
        })
        .unwrap();
    assert_eq!(
        steps, 20,
        "one callback per iteration, skipped ones included"
    );
    let ours = Tensor::from_vec(ids.concat(), (2, grid * grid), &dev).unwrap();
    let rate = match_rate(&ours, &case["greedy_tokens"]);
    println!("greedy MaskGIT token match rate {rate:.4}");
    assert!(rate >= 0.99, "greedy token match rate {rate}");
    let img =
        m.vq.decode_tokens(&case["greedy_tokens"].to_dtype(DType::U32).unwrap())
            .unwrap();
    let e = rel(&img, &case["greedy_image"]);
    println!("greedy image rel err {e:.2e}");
    assert!(e < 1e-3, "greedy image: {e}");
}

#[test]
fn mage_loader_names_what_is_missing() {
    let Some(dir) = shared_fixture() else { return };
    // A folder with the model but without its tokenizer: the loader says so.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    std::fs::copy(dir.join("mage_tiny.pth"), tmp.path().join("mage_tiny.pth")).unwrap();
    let err = match models::load_pretrained(
        FamilyName::Mage,
        tmp.path().to_str().unwrap(),
        None,
        &Device::Cpu,
    ) {
        Ok(_) => panic!("loaded without a tokenizer"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("vqgan"), "{err}");
    let _ = BatchMask::new;
}

fn own_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mage_ref")
}

fn input_of(
    m: &Mage,
    pixels: &Tensor,
    tokens: &Tensor,
    all_mask: &Tensor,
    drop_mask: &Tensor,
) -> i2i_unlearn::models::ModelInput {
    let grid = m.mage_config().grid();
    let masked = mask_rows(all_mask);
    let dropped = mask_rows(drop_mask);
    let b = masked.len();
    let mut keep = Vec::new();
    for d in &dropped {
        keep.push(0u32);
        keep.extend((0..d.len()).filter(|&i| !d[i]).map(|i| i as u32 + 1));
    }
    let t = keep.len() / b;
    let mask = BatchMask::new(
        masked
            .iter()
            .map(|h| i2i_unlearn::masks::PatchMask {
                grid,
                hidden: h.clone(),
                border: None,
            })
            .collect(),
    )
    .unwrap();
    i2i_unlearn::models::ModelInput {
        pixels: pixels.clone(),
        mask,
        cond: vec![
            tokens.to_dtype(DType::U32).unwrap(),
            Tensor::from_vec(keep, (b, t), &Device::Cpu).unwrap(),
        ],
    }
}

/// Rows `idx` of a prepared input (pixels, masks and the cached tokens / kept positions).
fn rows(input: &i2i_unlearn::models::ModelInput, idx: &[u32]) -> i2i_unlearn::models::ModelInput {
    let i = Tensor::new(idx, &Device::Cpu).unwrap();
    i2i_unlearn::models::ModelInput {
        pixels: input.pixels.index_select(&i, 0).unwrap(),
        mask: BatchMask::new(
            idx.iter()
                .map(|&k| input.mask.masks[k as usize].clone())
                .collect(),
        )
        .unwrap(),
        cond: input
            .cond
            .iter()
            .map(|c| c.index_select(&i, 0).unwrap())
            .collect(),
    }
}

fn grad_check(
    student: &Mage,
    grads: &candle_core::backprop::GradStore,
    case: &HashMap<String, Tensor>,
    prefix: &str,
    tol: f32,
) {
    use i2i_unlearn::models::I2IModel;
    let mut checked = 0;
    for (name, var, _) in &student.params().vars {
        let key = format!("{prefix}.{name}");
        let Some(want) = case.get(&key) else { continue };
        let got = grads.get(var.as_tensor()).expect("a gradient");
        let e = rel(got, want);
        println!("{key}: rel err {e:.2e}");
        assert!(e < tol, "{key}: {e}");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} gradients compared");
}

#[test]
fn mage_reference_inference_path_matches_the_official_code() {
    let (m, case) = load(&own_fixture());
    let dev = Device::Cpu;
    let grid = m.mage_config().grid();
    let q = m.vq.encode(&case["images_masked"]).unwrap();
    let e = rel(&q.z, &case["vq_h"]);
    assert!(e < 1e-4, "tokenizer encoder: {e}");
    let rate = match_rate(&q.tokens, &case["vq_tokens"]);
    println!("token match rate {rate:.4}");
    assert!(rate >= 0.99);
    assert!(
        rel(
            &m.vq.decoder.forward(&case["vq_zq"]).unwrap(),
            &case["vq_decoded"]
        ) < 1e-3
    );

    let mask = "center:4"
        .parse::<MaskSpec>()
        .unwrap()
        .batch(grid, &[0, 1, 2])
        .unwrap();
    let want = mask_rows(&case["token_all_mask"]);
    for (pm, w) in mask.masks.iter().zip(&want) {
        assert_eq!(&m.token_mask(pm), w);
    }
    let tokens = Tokens {
        ids: case["vq_tokens"].to_dtype(DType::U32).unwrap(),
        masked: want,
        keep: keep_all(3, grid * grid),
    };
    let enc = m.net.encode(&tokens, Mode::Infer).unwrap();
    assert!(rel(&enc, &case["encoder_out"]) < 1e-4);
    let logits = m.net.decode(&enc, &tokens, Mode::Infer).unwrap();
    let e = rel(&logits.narrow(2, 0, 64).unwrap(), &case["logits_codebook"]);
    assert!(e < 1e-4, "logits {e}");

    let mut rngs: Vec<_> = (0..3).map(|i| i2i_unlearn::util::rng("t", i)).collect();
    let ids = m
        .inpaint_tokens(&case["images"], &mask, &mut rngs, true, &mut |_, _| {})
        .unwrap();
    let ours = Tensor::from_vec(ids.concat(), (3, grid * grid), &dev).unwrap();
    let rate = match_rate(&ours, &case["greedy_tokens"]);
    println!("greedy token match rate {rate:.4}");
    assert!(rate >= 0.99);
    let img =
        m.vq.decode_tokens(&case["greedy_tokens"].to_dtype(DType::U32).unwrap())
            .unwrap();
    assert!(rel(&img, &case["greedy_image"]) < 1e-3);
}

/// The training path (token dropping), one "ours" step as `engine_unlearn.train_one_epoch`
/// computes it (`compute_loss`: per-sample MSE weighted by 1 ± l over the mixed batch) and one
/// Max Loss step (`forward_weighted_loss`: both terms over the batch's masked-token count), with
/// the gradients of encoder (and for Max Loss, decoder) tensors. Gradients: 1e-3 relative.
#[test]
fn mage_reference_training_path_and_unlearning_steps_match_the_official_code() {
    use i2i_unlearn::models::I2IModel;
    let dir = own_fixture();
    let dev = Device::Cpu;
    let p = models::load_pretrained(FamilyName::Mage, dir.to_str().unwrap(), None, &dev).unwrap();
    assert!(p.layout.contains("vqgan.*"), "{}", p.layout);
    let FamilyConfig::Mage(cfg) = p.config.clone() else {
        panic!()
    };
    let case = candle_core::safetensors::load(dir.join("case.safetensors"), &dev).unwrap();
    let teacher = Mage::new(cfg.clone(), &p.weights, false, &dev).unwrap();
    let input = input_of(
        &teacher,
        &case["images"],
        &case["train_tokens"],
        &case["all_mask_raw"],
        &case["drop_mask_raw"],
    );
    // Our own tokens of the images equal the reference's.
    assert!(
        match_rate(
            &teacher.tokenize(&case["images"]).unwrap(),
            &case["train_tokens"]
        ) >= 0.99
    );
    let emb = teacher.encode(&input, Mode::Train).unwrap();
    let e = rel(&emb.0[0], &case["train_encoder_out"]);
    println!("training-path encoder rel err {e:.2e}");
    assert!(e < 1e-4);
    let logits = teacher.output(&input, Mode::Train).unwrap();
    assert!(
        rel(
            &logits.narrow(2, 0, 64).unwrap(),
            &case["train_logits_codebook"]
        ) < 1e-4
    );

    let labels = [-1f64, 1.0, 1.0];
    let noise_input = teacher.noise_input(&input, &case["noise_images"]).unwrap();
    let mis_guide = teacher.encode(&noise_input, Mode::Infer).unwrap();
    assert!(rel(&mis_guide.0[0], &case["ours_mis_guide"]) < 1e-4);
    let guide = teacher.encode(&input, Mode::Infer).unwrap();
    for (prefix, swap) in [("ours", false), ("ours_b", true)] {
        let mut w = p.weights.clone();
        if swap {
            for n in ["norm.weight", "norm.bias"] {
                w.insert(n.into(), case[&format!("ours_b_student.{n}")].clone());
            }
        }
        let student = Mage::new(cfg.clone(), &w, true, &dev).unwrap();
        let latent = student.encode(&input, Mode::Train).unwrap();
        let l = Tensor::new(&labels.map(|v| v as f32), &dev).unwrap();
        let r = (latent.per_sample_mse(&guide).unwrap() * (&l + 1.0).unwrap())
            .unwrap()
            .mean_all()
            .unwrap();
        let f = (latent.per_sample_mse(&mis_guide).unwrap() * (l.affine(-1.0, 1.0).unwrap()))
            .unwrap()
            .mean_all()
            .unwrap();
        let loss = (&r + (&f * 0.25).unwrap()).unwrap();
        let got = loss.to_scalar::<f32>().unwrap();
        let want = case[&format!("{prefix}_loss")].to_scalar::<f32>().unwrap();
        println!("{prefix} loss {got} vs {want}");
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1e-6),
            "{prefix} loss"
        );
        grad_check(
            &student,
            &loss.backward().unwrap(),
            &case,
            &format!("{prefix}_grad"),
            1e-3,
        );
    }

    // Max Loss: retain − α · forget, both summed over their masked tokens and divided by all
    // masked tokens of the batch — in our terms (R/B)·CE_R − α·(F/B)·CE_F with equal masks.
    let student = Mage::new(cfg, &p.weights, true, &dev).unwrap();
    let retain = rows(&input, &[1, 2]);
    let forget = rows(&input, &[0]);
    let ce_r = student
        .training_loss(&retain, &retain.pixels, Mode::Train)
        .unwrap();
    let ce_f = student
        .training_loss(&forget, &forget.pixels, Mode::Train)
        .unwrap();
    let loss = ((&ce_r * (2.0 / 3.0)).unwrap() - (&ce_f * (0.25 / 3.0)).unwrap()).unwrap();
    let got = loss.to_scalar::<f32>().unwrap();
    let want = case["maxloss_loss"].to_scalar::<f32>().unwrap();
    println!("max loss {got} vs {want}");
    assert!((got - want).abs() <= 1e-4 * want.abs(), "max loss");
    grad_check(
        &student,
        &loss.backward().unwrap(),
        &case,
        "maxloss_grad",
        1e-3,
    );
}
