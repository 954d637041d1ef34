//! MAGE weights: expected names and shapes (those of the official checkpoints: the tokenizer under
//! `vqgan.*` as in `mage-vitb-1600.pth`), checkpoint folders, the official containers, and fresh
//! initialisation for models pre-trained here.

use super::transformer::Transformer;
use super::vqgan::VqGan;
use super::MageConfig;
use crate::models::Weights;
use crate::nn::init;
use crate::weights::checkpoint::{file_name, read_container, Checkpoint, Layout};
use crate::weights::shapes;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

/// File names of a MAGE checkpoint folder: `config.json` (this family's config layout), the
/// transformer (`{"model": state_dict}`; official `mage-vitb-1600.pth`) and, optionally, the
/// tokenizer (`{"state_dict": ...}`; official `vqgan_jax_strongaug.ckpt`) — optional because
/// the official MAGE checkpoint also holds the tokenizer under `vqgan.*`.
pub const LAYOUT: Layout = Layout {
    weights: &["mage-vitb-1600.pth", "mage*.pth", "*.pth"],
    companion: &["vqgan_jax_strongaug.ckpt", "vqgan*.ckpt", "*.ckpt"],
};

/// Prefix of the tokenizer's names inside the model's weights.
pub const VQ_PREFIX: &str = "vqgan.";

/// Parameters the official checkpoint holds but the official forward never uses.
fn unused_shapes(cfg: &MageConfig) -> Vec<(String, Vec<usize>)> {
    let t = &cfg.mage;
    let (d, dd, n, p) = (
        t.embed_dim,
        t.decoder_embed_dim,
        cfg.num_tokens(),
        t.patch_size,
    );
    vec![
        ("patch_embed.proj.weight".into(), vec![d, 3, p, p]),
        ("patch_embed.proj.bias".into(), vec![d]),
        ("cls_token".into(), vec![1, 1, d]),
        ("pos_embed".into(), vec![1, n + 1, d]),
        ("mask_token".into(), vec![1, 1, dd]),
        ("decoder_pos_embed".into(), vec![1, n + 1, dd]),
        ("decoder_pred.weight".into(), vec![p * p * 3, dd]),
        ("decoder_pred.bias".into(), vec![p * p * 3]),
    ]
}

/// Every expected tensor with its shape (found by building the modules once on a recording
/// backend, so the names are written in one place: the module constructors).
pub fn expected_shapes(cfg: &MageConfig) -> Result<BTreeMap<String, Vec<usize>>> {
    let mut out = shapes::record(|vb| {
        VqGan::new(vb.pp("vqgan"), &cfg.vqgan)?;
        Transformer::new(vb, cfg)?;
        Ok(())
    })?;
    out.extend(unused_shapes(cfg));
    Ok(out)
}

/// Check names and shapes; extra tensors are allowed (and dropped by the loader).
pub fn check_names(cfg: &MageConfig, weights: &Weights) -> Result<()> {
    check_against(&expected_shapes(cfg)?, weights)
}

/// [`check_names`] against expected shapes already listed.
fn check_against(want: &BTreeMap<String, Vec<usize>>, weights: &Weights) -> Result<()> {
    shapes::check_against(want, weights, |missing| {
        if missing.iter().all(|k| k.starts_with(VQ_PREFIX)) {
            " (the tokenizer: put its vqgan*.ckpt beside the model, or use a checkpoint that holds `vqgan.*`)"
        } else {
            ""
        }
    })
}

/// The weights of a checkpoint: the model file, with the tokenizer file (if any) under
/// `vqgan.*` (replacing a copy inside the model file); checked and reduced to the expected
/// names. Returns the weights and a note on where the tokenizer came from.
pub fn load_checkpoint_weights(
    cfg: &MageConfig,
    ck: &Checkpoint,
    device: &Device,
) -> Result<(Weights, String)> {
    let mut w = read_container(&ck.weights, device)
        .with_context(|| format!("reading {}", ck.weights.display()))?;
    let note = if let Some(vq) = &ck.companion {
        let t = read_container(vq, device).with_context(|| format!("reading {}", vq.display()))?;
        w.retain(|k, _| !k.starts_with(VQ_PREFIX));
        for (k, v) in t {
            w.insert(format!("{VQ_PREFIX}{k}"), v);
        }
        format!(
            "MAGE from {}, tokenizer from {}",
            file_name(&ck.weights),
            file_name(vq)
        )
    } else {
        format!(
            "MAGE and its tokenizer (vqgan.*) from {}",
            file_name(&ck.weights)
        )
    };
    let want = expected_shapes(cfg)?;
    check_against(&want, &w).with_context(|| format!("checkpoint {}", ck.origin))?;
    w.retain(|k, _| want.contains_key(k));
    Ok((w, note))
}

/// Fresh weights as the official `initialize_weights` (xavier-uniform linears, zero biases, unit
/// norms, N(0, 0.02) embeddings and tokens, fixed sin-cos position tables) and, for the
/// tokenizer, torch's default convolution init and the taming codebook init U(−1/n, 1/n).
pub fn init_weights(cfg: &MageConfig, seed: u64, device: &Device) -> Result<Weights> {
    let shapes = expected_shapes(cfg)?;
    let mut rng = crate::util::rng("mage-init", seed);
    let g = cfg.grid();
    let mut out = Weights::new();
    for (name, shape) in shapes {
        let leaf = name.rsplit('.').next().unwrap_or(&name);
        let is_norm = name.contains("norm") || name.contains("LayerNorm") || name.contains(".ln.");
        let t = if name == "pos_embed" || name == "decoder_pos_embed" {
            init::sincos_2d(shape[2], g, true, device)?
        } else if name.ends_with("quantize.embedding.weight") {
            let a = 1.0 / cfg.vqgan.n_embed as f64;
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| ((rand::Rng::random::<f64>(&mut rng) * 2.0 - 1.0) * a) as f32)
                .collect();
            Tensor::from_vec(v, shape.as_slice(), device)?
        } else if is_norm && leaf == "weight" {
            Tensor::ones(shape.as_slice(), DType::F32, device)?
        } else if leaf == "bias" {
            Tensor::zeros(shape.as_slice(), DType::F32, device)?
        } else if name.contains("embeddings")
            || name == "cls_token"
            || name == "mask_token"
            || name == "decoder_pos_embed_learned"
        {
            init::normal(&mut rng, &shape, 0.02, device)?
        } else if shape.len() == 4 {
            // torch's Conv2d default: U(±1/√fan_in) (kaiming-uniform with a = √5).
            let fan_in: usize = shape[1..].iter().product();
            let a = 1.0 / (fan_in as f64).sqrt();
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| ((rand::Rng::random::<f64>(&mut rng) * 2.0 - 1.0) * a) as f32)
                .collect();
            Tensor::from_vec(v, shape.as_slice(), device)?
        } else {
            init::xavier_uniform(&mut rng, &shape, device)?
        };
        out.insert(name, t);
    }
    Ok(out)
}
