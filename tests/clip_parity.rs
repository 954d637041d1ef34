//! Parity with transformers' CLIPVisionModelWithProjection (5.24) on tiny random configs
//! (quick_gelu and gelu), preprocessing parity with CLIPImageProcessor (PIL backend) on real
//! photographs, and a ViT-H-14-shaped checkpoint (laion/CLIP-ViT-H-14-laion2B-s32B-b79K's names
//! and shapes) loading. Tolerance: max |ours − reference| ≤ 1e-4 · max |reference|.

mod common;
use candle_core::{DType, Device, Tensor};
use i2i_unlearn::metrics::clip::{self, ClipVision, ClipVisionConfig};
use std::collections::HashMap;
use std::path::PathBuf;

fn dir(p: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/clip")
        .join(p)
}

fn rel_err(a: &Tensor, b: &Tensor) -> f32 {
    i2i_unlearn::util::max_rel_diff(a, b, 1e-12).unwrap()
}

fn check(case: &str) {
    let dev = Device::Cpu;
    let cfg = ClipVisionConfig::from_json(
        &std::fs::read_to_string(dir(case).join("config.json")).unwrap(),
    )
    .unwrap();
    let w: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir(case).join("model.safetensors"), &dev).unwrap();
    let model = ClipVision::new(cfg, &w, &dev).unwrap();
    let t = candle_core::safetensors::load(dir(case).join("case.safetensors"), &dev).unwrap();
    let out = model.forward(&t["pixel_values"]).unwrap();
    let mut worst = 0f32;
    for (k, h) in out.hidden_states.iter().enumerate() {
        let e = rel_err(h, &t[&format!("hidden_states_{k}")]);
        assert!(e < 1e-4, "{case}: hidden state {k}: {e}");
        worst = worst.max(e);
    }
    for (name, ours) in [("pooled", &out.pooled), ("image_embeds", &out.image_embeds)] {
        let e = rel_err(ours, &t[name]);
        assert!(e < 1e-4, "{case}: {name}: {e}");
        worst = worst.max(e);
    }
    // Normalised embeddings are unit vectors in the reference's direction.
    let n = model.embed(&t["pixel_values"]).unwrap();
    let r = &t["image_embeds"];
    let rn = r
        .broadcast_div(&r.sqr().unwrap().sum_keepdim(1).unwrap().sqrt().unwrap())
        .unwrap();
    assert!(rel_err(&n, &rn) < 1e-4);
    eprintln!("{case}: worst relative error {worst:.2e}");
}

#[test]
fn tiny_quick_gelu_matches_transformers() {
    check("tiny");
}

#[test]
fn tiny_gelu_matches_transformers() {
    check("tiny_gelu");
}

#[test]
fn preprocessing_matches_clip_image_processor_on_photographs() {
    let Some(data) = common::shared_data() else {
        return common::absent("../shared/data");
    };
    let t = candle_core::safetensors::load(dir("preprocess.safetensors"), &Device::Cpu).unwrap();
    let files = [
        "miniplaces/data/images/val/00000001.jpg",
        "miniplaces/data/images/val/00000002.jpg",
        "tiny-imagenet-200/val/images/val_2.JPEG",
    ];
    for (k, f) in files.iter().enumerate() {
        let img =
            i2i_unlearn::data::folder::decode_rgb(&std::fs::read(data.join(f)).unwrap()).unwrap();
        let ours = clip::preprocess(&img, 224, clip::CLIP_MEAN, clip::CLIP_STD);
        let ours = Tensor::from_vec(ours, (3, 224, 224), &Device::Cpu).unwrap();
        let reference = &t[&format!("pixel_values_{k}")];
        let d = i2i_unlearn::util::max_abs_diff(&ours, reference).unwrap();
        // PIL's 8-bit resize reproduced bit for bit: only float rounding remains.
        assert!(d < 1e-5, "{f}: max abs difference {d}");
    }
}

/// laion/CLIP-ViT-H-14-laion2B-s32B-b79K's vision tower: every name and shape, loaded from a
/// checkpoint file (zeros, f16 on disk: 1.3 GB) holding a text tower too, which is skipped.
#[test]
fn vit_h_14_shaped_checkpoint_loads() {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir("clip-vit-h-14-manifest.json")).unwrap())
            .unwrap();
    let cfg = ClipVisionConfig::from_json(&m["config"].to_string()).unwrap();
    let theirs: Vec<(String, Vec<usize>)> = m["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e[0].as_str().unwrap().to_string(),
                e[1].as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect(),
            )
        })
        .collect();
    let mut ours = clip::expected_shapes(&cfg);
    let mut sorted = theirs.clone();
    ours.sort();
    sorted.sort();
    assert_eq!(ours, sorted, "names and shapes differ from the manifest");
    let dev = Device::Cpu;
    let mut map: HashMap<String, Tensor> = theirs
        .iter()
        .map(|(n, s)| {
            (
                n.clone(),
                Tensor::zeros(s.as_slice(), DType::F16, &dev).unwrap(),
            )
        })
        .collect();
    map.insert(
        "text_projection.weight".into(),
        Tensor::zeros((1024, 1024), DType::F16, &dev).unwrap(),
    );
    map.insert(
        "logit_scale".into(),
        Tensor::zeros((), DType::F16, &dev).unwrap(),
    );
    let d = tempfile::tempdir().unwrap();
    candle_core::safetensors::save(&map, d.path().join("model.safetensors")).unwrap();
    drop(map);
    let w: HashMap<String, Tensor> =
        candle_core::safetensors::load(d.path().join("model.safetensors"), &dev).unwrap();
    let model = ClipVision::new(cfg.clone(), &w, &dev).unwrap();
    assert_eq!(
        (
            model.cfg.hidden_size,
            model.cfg.num_hidden_layers,
            model.cfg.projection_dim
        ),
        (1280, 32, 1024)
    );
    let n: u64 = theirs
        .iter()
        .map(|(_, s)| s.iter().product::<usize>() as u64)
        .sum();
    assert_eq!(n, m["num_parameters"].as_u64().unwrap());
    // A tensor with the wrong shape is named.
    let mut w = w;
    w.insert(
        "visual_projection.weight".into(),
        Tensor::zeros((512, 1280), DType::F16, &dev).unwrap(),
    );
    let e = ClipVision::new(cfg, &w, &dev).err().unwrap().to_string();
    assert!(
        e.contains("visual_projection.weight") && e.contains("[512, 1280]"),
        "{e}"
    );
}
