//! Parity of our InceptionV3, preprocessing and metric maths with pytorch-fid 0.3.0,
//! torch-fidelity 0.4.0, clean-fid and the paper's Inception Score code, with the same
//! (generated, non-official) weights on the same real images. Fixtures:
//! tests/fixtures/inception, written by tools/reference/inception_reference.py; the weights come
//! from a formula both sides compute (see that README).
//!
//! Tolerances: features per image |ours − ref| ≤ 1e-4 · max |ref| (f32 vs f32 with different
//! operation orders: measured f32-vs-f64 spread of the reference itself is 8.5e-6); FID, IS
//! within 1e-3 relative of the Python tools; Fréchet distance of the same .npz within 1e-6.

mod common;
use candle_core::{Device, Tensor};
use i2i_unlearn::metrics::inception::formula::formula_tensor;
use i2i_unlearn::metrics::inception::{state_dict_shapes, InceptionExtractor, Variant};
use i2i_unlearn::metrics::preprocess::ResizeMode;
use i2i_unlearn::metrics::{fid, is, kid, np_random::RandomState};
use i2i_unlearn::resample::bicubic_pil;
use std::collections::HashMap;
use std::path::PathBuf;

fn state_dict(v: Variant) -> HashMap<String, Tensor> {
    i2i_unlearn::metrics::inception::formula::state_dict(v).unwrap()
}

fn fixture(f: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inception")
        .join(f)
}

fn values() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("values.json")).unwrap()).unwrap()
}

fn images(set: &str) -> Option<Vec<image::RgbImage>> {
    let data = common::shared_data()?;
    let v = values();
    let files: Vec<String> = v[set]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect();
    Some(
        files
            .iter()
            .map(|f| {
                let p = if f.starts_with('/') {
                    PathBuf::from(f)
                } else {
                    data.join(f)
                };
                let p = if p.exists() {
                    p
                } else {
                    data.join(f.split("data/").last().unwrap())
                };
                i2i_unlearn::data::folder::decode_rgb(
                    &std::fs::read(&p).unwrap_or_else(|_| panic!("{}", p.display())),
                )
                .unwrap()
            })
            .collect(),
    )
}

fn case() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture("case.safetensors"), &Device::Cpu).unwrap()
}

/// Per image: max |a − b| ≤ tol · max |b|.
fn close_rows(ours: &[f32], reference: &Tensor, tol: f32, what: &str) {
    let r = reference.to_vec2::<f32>().unwrap();
    let d = r[0].len();
    assert_eq!(ours.len(), r.len() * d, "{what}: sizes");
    for (i, row) in r.iter().enumerate() {
        let scale = row.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        let diff = row
            .iter()
            .zip(&ours[i * d..(i + 1) * d])
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            diff <= tol * scale,
            "{what}: image {i}: max diff {diff} vs scale {scale}"
        );
    }
}

/// A stored tensor's values, flattened.
fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn formula_weights_match_the_reference() {
    let v = values();
    let spot =
        candle_core::safetensors::load(fixture("weights_spot.safetensors"), &Device::Cpu).unwrap();
    let shapes = state_dict_shapes(Variant::Fid);
    assert_eq!(shapes.len(), 472, "float tensors of the FID InceptionV3");
    for (name, shape) in &shapes {
        let ours = formula_tensor(name, shape);
        let s = spot[name].to_vec1::<f32>().unwrap();
        assert_eq!(&ours[..s.len()], &s[..], "{name}: first values");
        let sums = &v["weights_checksums"][name];
        let (sum, abs): (f64, f64) = ours.iter().fold((0.0, 0.0), |(a, b), &x| {
            (a + x as f64, b + (x as f64).abs())
        });
        assert!(
            rel(sum, sums[0].as_f64().unwrap()) < 1e-9
                || (sum - sums[0].as_f64().unwrap()).abs() < 1e-9,
            "{name}: sum"
        );
        assert!(
            rel(abs, sums[1].as_f64().unwrap()) < 1e-9,
            "{name}: sum of |x|"
        );
    }
}

#[test]
fn numpy_random_state_is_reproduced() {
    let v = values();
    let mut r = RandomState::new(2020);
    let words: Vec<u64> = (0..8).map(|_| r.next_u32() as u64).collect();
    let want: Vec<u64> = v["np_randomstate_2020_first_uint32"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert_eq!(words, want);
    for n in [10usize, 80, 1000] {
        let want: Vec<usize> = v[format!("np_randomstate_2020_permutation_{n}")]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(
            RandomState::new(2020).permutation(n),
            want,
            "permutation({n})"
        );
    }
}

#[test]
fn frechet_distance_of_the_same_npz_files_matches_pytorch_fid() {
    let v = values();
    let a = fid::Stats::load_npz(&fixture("stats_a.npz")).unwrap();
    let b = fid::Stats::load_npz(&fixture("stats_b.npz")).unwrap();
    let ours = fid::frechet_distance(&a, &b).unwrap();
    let want = v["fid_npz_64"].as_f64().unwrap();
    assert!(rel(ours, want) < 1e-6, "{ours} vs {want}");
    // Round trip through our writer.
    let d = tempfile::tempdir().unwrap();
    a.save_npz(&d.path().join("a.npz")).unwrap();
    let a2 = fid::Stats::load_npz(&d.path().join("a.npz")).unwrap();
    assert_eq!(a.mu, a2.mu);
    assert_eq!(a.sigma, a2.sigma);
    // The same from the stored 64-d features (our streamed statistics).
    let c = case();
    let fa = flat(&c["pf_feat64_A40"]);
    let fb = flat(&c["pf_feat64_B40"]);
    let s = fid::frechet_distance(
        &fid::Stats::from_rows(&fa, 64).unwrap(),
        &fid::Stats::from_rows(&fb, 64).unwrap(),
    )
    .unwrap();
    assert!(
        rel(s, v["fid_64_pytorch_fid"].as_f64().unwrap()) < 1e-5,
        "{s}"
    );
}

#[test]
fn metric_maths_from_stored_features() {
    let v = values();
    let c = case();
    // FID at 2048 from the stored features. N = 40 < d: both covariances are singular and the
    // last digits are round-off of the null space in every route (scipy's sqrtm and the
    // reference's eigen route differ by 1.2e-6 themselves).
    let fa = flat(&c["pf_feat2048_A"]);
    let fb = flat(&c["pf_feat2048_B"]);
    let f = fid::frechet_distance(
        &fid::Stats::from_rows(&fa, 2048).unwrap(),
        &fid::Stats::from_rows(&fb, 2048).unwrap(),
    )
    .unwrap();
    assert!(rel(f, v["fid_2048_eigh"].as_f64().unwrap()) < 1e-6, "{f}");
    assert!(
        rel(f, v["fid_2048_pytorch_fid"].as_f64().unwrap()) < 1e-5,
        "{f}"
    );
    // IS maths: 2 splits, no shuffle, on the stored torch-fidelity logits.
    let l = flat(&c["tf_logits_unbiased_A"]);
    let (m, s) = is::inception_score(&l, 1008, 2, None).unwrap();
    let want = &v["isc_from_tf_logits_unbiased_A_splits2_noshuffle"];
    assert!(
        rel(m, want[0].as_f64().unwrap()) < 1e-9 && rel(s, want[1].as_f64().unwrap()) < 1e-7,
        "{m} {s}"
    );
    // KID from the stored features, f64: within 1e-5 of the kernel scale (~2000).
    let (k, _) = kid::kid(&fa, &fb, 2048, 100, 40, 2020).unwrap();
    let want = v["kid_from_pf_feat2048_float64"][0].as_f64().unwrap();
    assert!((k - want).abs() < 1e-5 * 2000.0, "KID {k} vs {want}");
}

#[test]
fn pytorch_fid_mode_features_and_fid_match() {
    let (Some(a), Some(b)) = (images("set_A"), images("set_B")) else {
        return common::absent("../shared/data");
    };
    let v = values();
    let c = case();
    let sd = state_dict(Variant::Fid);
    let ex = InceptionExtractor::from_state_dict(
        &sd,
        Variant::Fid,
        ResizeMode::PytorchFid,
        2048,
        "formula",
        &Device::Cpu,
    )
    .unwrap();
    let fa = ex.run_rgb(&a).unwrap().features;
    let fb = ex.run_rgb(&b).unwrap().features;
    close_rows(&fa, &c["pf_feat2048_A"], 1e-4, "pool3 A");
    close_rows(&fb, &c["pf_feat2048_B"], 1e-4, "pool3 B");
    let f = fid::frechet_distance(
        &fid::Stats::from_rows(&fa, 2048).unwrap(),
        &fid::Stats::from_rows(&fb, 2048).unwrap(),
    )
    .unwrap();
    let want = v["fid_2048_pytorch_fid"].as_f64().unwrap();
    eprintln!(
        "FID ours {f} vs pytorch-fid {want}: relative {:.2e}",
        rel(f, want)
    );
    assert!(rel(f, want) < 1e-3);
    // On a CPU a batch runs as one shard per thread: the features must not depend on how many.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    let f1 = one.install(|| ex.run_rgb(&a[..7]).unwrap().features);
    let f3 = three.install(|| ex.run_rgb(&a[..7]).unwrap().features);
    assert!(
        f1 == f3 && f1[..] == fa[..f1.len()],
        "features depend on the thread count"
    );
    for (dims, key) in [
        (64, "pf_feat64_A"),
        (192, "pf_feat192_A"),
        (768, "pf_feat768_A"),
    ] {
        let ex = InceptionExtractor::from_state_dict(
            &sd,
            Variant::Fid,
            ResizeMode::PytorchFid,
            dims,
            "formula",
            &Device::Cpu,
        )
        .unwrap();
        close_rows(&ex.run_rgb(&a[..8]).unwrap().features, &c[key], 1e-4, key);
    }
}

#[test]
fn torch_fidelity_and_clean_modes_match() {
    let (Some(a), Some(b)) = (images("set_A"), images("set_B")) else {
        return common::absent("../shared/data");
    };
    let v = values();
    let c = case();
    let sd = state_dict(Variant::Fid);
    let tf = InceptionExtractor::from_state_dict(
        &sd,
        Variant::Fid,
        ResizeMode::TorchFidelity,
        2048,
        "formula",
        &Device::Cpu,
    )
    .unwrap();
    let out = tf.run_rgb(&a[..8]).unwrap();
    close_rows(
        &out.features,
        &c["tf_feat2048_A"],
        1e-4,
        "torch-fidelity pool3",
    );
    close_rows(
        out.logits_unbiased.as_ref().unwrap(),
        &c["tf_logits_unbiased_A"],
        1e-4,
        "logits_unbiased",
    );
    // Inception Score over A then B with torch-fidelity's shuffle.
    let all: Vec<image::RgbImage> = a.iter().chain(b.iter()).cloned().collect();
    let logits = tf.run_rgb(&all).unwrap().logits_unbiased.unwrap();
    let perm = RandomState::new(2020).permutation(80);
    let (m, s) = is::inception_score(&logits, 1008, 10, Some(&perm)).unwrap();
    let (wm, ws) = (
        v["isc_mean"].as_f64().unwrap(),
        v["isc_std"].as_f64().unwrap(),
    );
    eprintln!("IS ours {m} ± {s} vs torch-fidelity {wm} ± {ws}");
    assert!(rel(m, wm) < 1e-3 && rel(s, ws) < 1e-2);
    // clean-fid: the PIL float32 bicubic resize, then the network on (x − 128)/128.
    let r = c.get("clean_resized_A0").cloned().unwrap_or_else(|| {
        candle_core::safetensors::load(fixture("clean_resize.safetensors"), &Device::Cpu).unwrap()
            ["clean_resized_A0"]
            .clone()
    });
    let img = &a[0];
    let (w, h) = (img.width() as usize, img.height() as usize);
    let want = flat(&r);
    for ch in 0..3 {
        let plane: Vec<f32> = img.pixels().map(|p| p[ch] as f32).collect();
        let ours = bicubic_pil(&plane, h, w, 299, 299);
        let d = ours
            .iter()
            .zip(&want[ch * 299 * 299..(ch + 1) * 299 * 299])
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(d < 1e-3, "clean resize channel {ch}: max diff {d}");
    }
    let clean = InceptionExtractor::from_state_dict(
        &sd,
        Variant::Fid,
        ResizeMode::Clean,
        2048,
        "formula",
        &Device::Cpu,
    )
    .unwrap();
    close_rows(
        &clean.run_rgb(&a[..8]).unwrap().features,
        &c["clean_feat2048_A"],
        1e-4,
        "clean pool3",
    );
}

/// The paper's Inception Score as its official evaluation computes it
/// (tools/reference/paper_is_reference.py, which says where each step comes from): PIL bilinear to
/// 256 × 256, CIFAR mean/std, torch bilinear to 299, torchvision's InceptionV3 without
/// transform_input, softmax of the biased logits, contiguous splits of N // 10.
#[test]
fn paper_inception_score_matches_the_official_evaluation() {
    let (Some(a), Some(b)) = (images("set_A"), images("set_B")) else {
        return common::absent("../shared/data");
    };
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("paper_is_v2.json")).unwrap())
            .unwrap();
    let p =
        candle_core::safetensors::load(fixture("paper_is_v2.safetensors"), &Device::Cpu).unwrap();
    // The input of the first image: a window and the whole tensor's sums.
    let x = ResizeMode::PaperIs.prepare(&a[0], 299);
    let window: Vec<f32> = (0..3)
        .flat_map(|c| {
            let x = &x;
            (100..164).flat_map(move |y| (100..164).map(move |xx| x[(c * 299 + y) * 299 + xx]))
        })
        .collect();
    let want = flat(&p["input0_window"]);
    let d = window
        .iter()
        .zip(&want)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(d < 1e-4, "paper IS input: max abs diff {d}");
    let sums = flat(&p["input0_sums"]);
    let ours: f64 = x.iter().map(|&v| v as f64).sum();
    assert!(rel(ours, sums[0] as f64) < 1e-4, "{ours} vs {}", sums[0]);
    let sd = state_dict(Variant::ImageNet);
    let ex = InceptionExtractor::from_state_dict(
        &sd,
        Variant::ImageNet,
        ResizeMode::PaperIs,
        2048,
        "formula",
        &Device::Cpu,
    )
    .unwrap();
    let all: Vec<image::RgbImage> = a.iter().chain(b.iter()).cloned().collect();
    let logits = ex.run_rgb(&all).unwrap().logits.unwrap();
    let want = flat(&p["logits"]);
    let d = logits
        .iter()
        .zip(&want)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(d < 5e-3, "paper logits: max abs diff {d}");
    let (m, s) = is::inception_score_with(&logits, 1000, 10, None, is::Splits::Floor).unwrap();
    let (wm, ws) = (
        v["is_mean"].as_f64().unwrap(),
        v["is_std"].as_f64().unwrap(),
    );
    eprintln!("paper IS ours {m} ± {s} vs {wm} ± {ws}");
    assert!(rel(m, wm) < 1e-3 && rel(s, ws) < 1e-2);
}

/// The staged network gives the same features and logits on both backends (the channels-last CPU
/// kernels, and candle tensors as every other device runs them).
#[test]
fn cpu_and_candle_backends_agree() {
    use i2i_unlearn::metrics::inception::InceptionV3;
    let dev = Device::Cpu;
    for variant in [Variant::Fid, Variant::ImageNet] {
        let sd = state_dict(variant);
        let a = InceptionV3::with_backend(&sd, variant, &dev, false).unwrap();
        let b = InceptionV3::with_backend(&sd, variant, &dev, true).unwrap();
        let x = Tensor::rand(-1f32, 1.0, (2, 3, 299, 299), &dev).unwrap();
        for dims in [64, 2048] {
            let (oa, ob) = (a.forward(&x, dims).unwrap(), b.forward(&x, dims).unwrap());
            let d = i2i_unlearn::util::max_rel_diff(&oa.features, &ob.features, 1e-3).unwrap();
            assert!(d < 1e-4, "{variant:?} {dims}: features differ by {d}");
            if dims == 2048 {
                let d = i2i_unlearn::util::max_rel_diff(
                    oa.logits.as_ref().unwrap(),
                    ob.logits.as_ref().unwrap(),
                    1e-3,
                )
                .unwrap();
                assert!(d < 1e-4, "{variant:?}: logits differ by {d}");
            }
        }
    }
}
