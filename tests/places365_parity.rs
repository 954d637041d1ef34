//! The Places365 ResNet-50 extractor against torchvision's `resnet50(num_classes=365)` run by
//! tools/reference/places365_reference.py: same formula weights, the same eight real photographs
//! (decoded by PIL, stored in the fixture), the official preprocessing, features, logits and the
//! official Inception Score.

use candle_core::{Device, Tensor};
use i2i_unlearn::metrics::places365::{formula_state_dict, Places365Extractor};
use i2i_unlearn::metrics::Extractor;

fn fixture() -> (std::collections::HashMap<String, Tensor>, serde_json::Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/places365");
    let t = candle_core::safetensors::load(dir.join("case.safetensors"), &Device::Cpu).unwrap();
    let v =
        serde_json::from_str(&std::fs::read_to_string(dir.join("values.json")).unwrap()).unwrap();
    (t, v)
}

fn images(t: &Tensor) -> Vec<image::RgbImage> {
    let (n, h, w, _) = t.dims4().unwrap();
    let raw: Vec<u8> = t.flatten_all().unwrap().to_vec1().unwrap();
    raw.chunks(h * w * 3)
        .take(n)
        .map(|c| image::RgbImage::from_raw(w as u32, h as u32, c.to_vec()).unwrap())
        .collect()
}

/// Largest |a − b| over max(|b|) (relative to the reference's scale).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())) as f64;
    let d = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    d / scale
}

fn extractor() -> Places365Extractor {
    let sd = formula_state_dict()
        .unwrap()
        .into_iter()
        // as in the official container, under nn.DataParallel's prefix
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    Places365Extractor::from_state_dict(sd, "formula", &Device::Cpu).unwrap()
}

#[test]
fn preprocessing_equals_torchvision() {
    let (t, _) = fixture();
    let imgs = images(&t["images"]);
    let ours = Places365Extractor::prepare(&imgs[0]);
    let theirs: Vec<f32> = t["prepared0"].flatten_all().unwrap().to_vec1().unwrap();
    let e = rel_err(&ours, &theirs);
    println!("prepared: max error {e:.2e} of the largest value");
    assert!(e < 1e-5, "prepared input differs: {e:.2e}");
}

#[test]
fn features_logits_and_score_equal_torchvision() {
    let (t, v) = fixture();
    let imgs = images(&t["images"]);
    let ex = extractor();
    // Through the Extractor interface: images in [0, 1] (exact 8-bit values).
    let x: Vec<f32> = imgs
        .iter()
        .flat_map(|im| (0..3).flat_map(move |c| im.pixels().map(move |p| p[c] as f32 / 255.0)))
        .collect();
    let x = Tensor::from_vec(x, (imgs.len(), 3, 128, 128), &Device::Cpu).unwrap();
    let out = ex.forward(&x).unwrap();
    let f: Vec<f32> = out.features.flatten_all().unwrap().to_vec1().unwrap();
    let l: Vec<f32> = out
        .logits
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let fr: Vec<f32> = t["features"].flatten_all().unwrap().to_vec1().unwrap();
    let lr: Vec<f32> = t["logits"].flatten_all().unwrap().to_vec1().unwrap();
    let (ef, el) = (rel_err(&f, &fr), rel_err(&l, &lr));
    println!("features: {ef:.2e}, logits: {el:.2e} (max error over the largest value)");
    assert!(ef < 1e-4 && el < 1e-4, "features {ef:.2e}, logits {el:.2e}");
    let (mean, std) = i2i_unlearn::metrics::is::inception_score_with(
        &l,
        365,
        2,
        None,
        i2i_unlearn::metrics::is::Splits::Floor,
    )
    .unwrap();
    let (rm, rs) = (
        v["is_mean"].as_f64().unwrap(),
        v["is_std"].as_f64().unwrap(),
    );
    println!("IS {mean} ± {std}; torchvision {rm} ± {rs}");
    assert!((mean - rm).abs() < 1e-4 * rm && (std - rs).abs() < 1e-3 * rs.max(1e-3));
    assert_eq!(ex.is_rule(), i2i_unlearn::metrics::IsRule::Paper);
    assert!(ex.protocol().contains("centre crop 224"));
}
