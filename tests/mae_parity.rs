//! Parity with transformers' ViTMAEForPreTraining (5.24) on tiny random configs: the same weights,
//! the same real input and the same masks (given to transformers through its `noise` argument)
//! must give the same encoder hidden states, decoder predictions and loss.
//!
//! Tolerance: max |ours − reference| ≤ 1e-4 · max |reference| per tensor ("1e-4 relative").
//! Fixtures: tests/fixtures/mae, written by tools/reference/mae_reference.py.

use candle_core::{DType, Device, Tensor};
use i2i_unlearn::masks::{BatchMask, PatchMask};
use i2i_unlearn::models::mae::{self, Mae};
use i2i_unlearn::nn::Mode;
use i2i_unlearn::weights::checkpoint;
use std::collections::HashMap;
use std::path::PathBuf;

fn fixture(case: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/mae")
        .join(case)
}

fn rel_err(ours: &Tensor, reference: &Tensor) -> f32 {
    i2i_unlearn::util::max_rel_diff(ours, reference, 1e-12).unwrap()
}

fn mask_from(t: &Tensor, grid: usize) -> BatchMask {
    let rows = t.to_dtype(DType::F32).unwrap().to_vec2::<f32>().unwrap();
    BatchMask::new(
        rows.into_iter()
            .map(|r| PatchMask {
                grid,
                hidden: r.into_iter().map(|v| v > 0.5).collect(),
                border: None,
            })
            .collect(),
    )
    .unwrap()
}

fn check_case(case: &str) {
    let dev = Device::Cpu;
    let dir = fixture(case);
    let ck = checkpoint::resolve(dir.to_str().unwrap(), None).unwrap();
    let (cfg, weights) = mae::load_checkpoint(&ck, &dev).unwrap();
    let t: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("case.safetensors"), &dev).unwrap();
    let unit = &t["pixel_values_unit"];
    for trainable in [false, true] {
        let model = Mae::new(cfg.clone(), &weights, trainable, &dev).unwrap();
        // Our normalisation reproduces the processor's.
        assert!(rel_err(&model.normalize(unit).unwrap(), &t["pixel_values"]) < 1e-6);
        let mode = if trainable { Mode::Train } else { Mode::Infer };
        for m in ["center", "random"] {
            let mask = mask_from(&t[&format!("{m}_mask")], cfg.grid());
            let out = model.forward_detailed(unit, &mask, mode).unwrap();
            let mut worst = 0f32;
            for (k, h) in out.hidden_states.iter().enumerate() {
                let e = rel_err(h, &t[&format!("{m}_encoder_hidden_states_{k}")]);
                assert!(e < 1e-4, "{case}/{m}: hidden state {k}: {e}");
                worst = worst.max(e);
            }
            let e = rel_err(
                &out.last_hidden_state,
                &t[&format!("{m}_encoder_last_hidden_state")],
            );
            assert!(e < 1e-4, "{case}/{m}: last hidden state: {e}");
            let e = rel_err(&out.logits, &t[&format!("{m}_logits")]);
            assert!(e < 1e-4, "{case}/{m}: logits: {e}");
            worst = worst.max(e);
            let loss = model.patch_loss(&out.logits, unit, &mask).unwrap();
            let e = rel_err(&loss, &t[&format!("{m}_loss")]);
            assert!(e < 1e-4, "{case}/{m}: loss: {e}");
            if cfg.norm_pix_loss {
                // transformers' un-normalisation (reference patch statistics), in normalised units.
                let px = model.logits_to_pixels(&out.logits, Some(unit)).unwrap();
                let normed = model.normalize(&px).unwrap();
                let e = rel_err(
                    &normed,
                    &t[&format!("{m}_reconstruction_unnormalised_image")],
                );
                assert!(e < 1e-4, "{case}/{m}: un-normalised reconstruction: {e}");
            } else {
                let e = rel_err(
                    &model.unpatchify(&out.logits).unwrap(),
                    &t[&format!("{m}_logits_unpatchified")],
                );
                assert!(e < 1e-4, "{case}/{m}: unpatchify: {e}");
            }
            eprintln!("{case}/{m} ({mode:?}): worst relative error {worst:.2e}");
        }
    }
}

#[test]
fn tiny_matches_transformers() {
    check_case("tiny");
}

#[test]
fn tiny_norm_pix_loss_matches_transformers() {
    check_case("tiny_normpix");
}

#[test]
fn mismatched_weights_name_the_tensor() {
    let dev = Device::Cpu;
    let ck = checkpoint::resolve(fixture("tiny").to_str().unwrap(), None).unwrap();
    let (cfg, mut w) = mae::load_checkpoint(&ck, &dev).unwrap();
    let mut bad = cfg.clone();
    bad.hidden_size = 48;
    let e = mae::check_names(&bad, &w).unwrap_err().to_string();
    assert!(
        e.contains("decoder.decoder_embed.weight` has shape [24, 32], the config needs [24, 48]"),
        "{e}"
    );
    w.remove("decoder.decoder_pred.bias");
    let e = mae::check_names(&cfg, &w).unwrap_err().to_string();
    assert!(
        e.contains("missing tensor `decoder.decoder_pred.bias`"),
        "{e}"
    );
}

/// A checkpoint with vit-mae-large's real names and shapes (random values, f16 on disk to keep
/// the file at 0.6 GB) loads, and inpaints a 224 px image.
#[test]
fn full_size_vit_mae_large_checkpoint_loads() {
    let dev = Device::Cpu;
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("vit-mae-large-manifest.json")).unwrap(),
    )
    .unwrap();
    let cfg_json = manifest["config"].to_string();
    let cfg = mae::MaeConfig::from_json(&cfg_json).unwrap();
    assert_eq!(
        (cfg.hidden_size, cfg.num_hidden_layers, cfg.image_size),
        (1024, 24, 224)
    );
    let names: Vec<(String, Vec<usize>)> = manifest["tensors"]
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
    // Our expected names are exactly the checkpoint's.
    let mut ours: Vec<(String, Vec<usize>)> = mae::expected_shapes(&cfg);
    let mut theirs = names.clone();
    ours.sort();
    theirs.sort();
    assert_eq!(ours, theirs);
    let d = tempfile::tempdir().unwrap();
    let mut map = HashMap::new();
    for (i, (n, shape)) in names.iter().enumerate() {
        let count: usize = shape.iter().product();
        let is_norm_weight = n.contains("norm") && n.ends_with("weight");
        let (base, std) = if is_norm_weight {
            (1f32, 1e-3f32)
        } else {
            (0f32, 0.02f32)
        };
        let t = Tensor::randn(base, std, count, &dev)
            .unwrap()
            .reshape(shape.as_slice())
            .unwrap();
        let _ = i;
        map.insert(n.clone(), t.to_dtype(DType::F16).unwrap());
    }
    candle_core::safetensors::save(&map, d.path().join("model.safetensors")).unwrap();
    drop(map);
    std::fs::write(d.path().join("config.json"), cfg_json).unwrap();
    let ck = checkpoint::resolve(d.path().to_str().unwrap(), None).unwrap();
    let (cfg, w) = mae::load_checkpoint(&ck, &dev).unwrap();
    let n_params: usize = w.values().map(|t| t.elem_count()).sum();
    assert_eq!(
        n_params as u64,
        manifest["num_parameters"]
            .as_u64()
            .unwrap_or(n_params as u64)
    );
    let model = Mae::new(cfg, &w, false, &dev).unwrap();
    let x = Tensor::rand(0f32, 1.0, (1, 3, 224, 224), &dev).unwrap();
    let mask = i2i_unlearn::masks::MaskSpec::Center { k: 8 }
        .batch(14, &[0])
        .unwrap();
    let mut rngs = vec![i2i_unlearn::util::rng("g", 0)];
    let y = i2i_unlearn::models::I2IModel::generate(
        &model,
        &x,
        &mask,
        &mut rngs,
        &Default::default(),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(y.dims(), &[1, 3, 224, 224]);
}

/// A checkpoint written by the `save_pretrained` of the current transformers (5.x names the
/// decoder's blocks `decoder.decoder_encoder.layer.N`) loads, says so, and gives the same weights
/// and outputs as the hub-layout copy of the same model (tools/reference/mae_reference.py).
#[test]
fn transformers_5_layout_loads_like_the_hub_layout() {
    let dev = Device::Cpu;
    let tf5 = checkpoint::resolve(fixture("tiny_tf5").to_str().unwrap(), None).unwrap();
    let hub = checkpoint::resolve(fixture("tiny").to_str().unwrap(), None).unwrap();
    let cfg = mae::checkpoint_config(&tf5).unwrap();
    let (w5, layout5) = mae::load_checkpoint_weights(&cfg, &tf5, &dev).unwrap();
    let (w4, layout4) = mae::load_checkpoint_weights(&cfg, &hub, &dev).unwrap();
    assert_eq!(layout5, mae::TF5_LAYOUT);
    assert_eq!(layout4, mae::HUB_LAYOUT);
    assert_eq!(w5.keys().collect::<Vec<_>>(), w4.keys().collect::<Vec<_>>());
    for (k, t) in &w4 {
        assert_eq!(
            i2i_unlearn::util::max_abs_diff(t, &w5[k]).unwrap(),
            0.0,
            "{k}"
        );
    }
}
