//! MAE weights: the expected names and shapes (transformers' naming), checkpoint loading and
//! checking, and fresh initialisation.

use super::MaeConfig;
use crate::models::Weights;
use crate::nn::init;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

/// The architecture of an MAE checkpoint: its `config.json` with the preprocessor's
/// normalisation.
pub fn checkpoint_config(ck: &crate::weights::checkpoint::Checkpoint) -> Result<MaeConfig> {
    let text = std::fs::read_to_string(&ck.config)
        .with_context(|| format!("reading {}", ck.config.display()))?;
    let mut cfg =
        MaeConfig::from_json(&text).map_err(|e| crate::models::family::bad_config(ck, &e))?;
    if let Some((mean, std)) =
        crate::weights::checkpoint::normalisation(ck.preprocessor.as_deref())?
    {
        cfg.image_mean = mean;
        cfg.image_std = std;
    }
    Ok(cfg)
}

/// The two key layouts of ViTMAE checkpoints: the hub's (transformers 4, and the 2022 checkpoints
/// `facebook/vit-mae-*`: the decoder's blocks as `decoder.decoder_layers.N.*`) and what the
/// `save_pretrained` of transformers 5 writes (`decoder.decoder_encoder.layer.N.*`).
pub const HUB_LAYOUT: &str = "hub layout (decoder.decoder_layers.N)";
pub const TF5_LAYOUT: &str =
    "transformers 5 layout (decoder.decoder_encoder.layer.N), read as the hub layout";

/// Rename a transformers 5 checkpoint's decoder blocks to the hub layout; says which was found.
pub fn normalise_layout(weights: &mut Weights) -> &'static str {
    const NEW: &str = "decoder.decoder_encoder.layer.";
    const OLD: &str = "decoder.decoder_layers.";
    if !weights.keys().any(|k| k.starts_with(NEW)) {
        return HUB_LAYOUT;
    }
    let renamed: Vec<(String, String)> = weights
        .keys()
        .filter(|k| k.starts_with(NEW))
        .map(|k| (k.clone(), format!("{OLD}{}", &k[NEW.len()..])))
        .collect();
    for (from, to) in renamed {
        let t = weights.remove(&from).expect("listed key");
        weights.insert(to, t);
    }
    TF5_LAYOUT
}

/// The weights of an MAE checkpoint in either layout, checked against `cfg` (extra buffers
/// dropped), and which layout it had.
pub fn load_checkpoint_weights(
    cfg: &MaeConfig,
    ck: &crate::weights::checkpoint::Checkpoint,
    device: &Device,
) -> Result<(Weights, &'static str)> {
    let mut weights = crate::weights::checkpoint::load_tensors(&ck.weights, device)?;
    let layout = normalise_layout(&mut weights);
    check_names(cfg, &weights)
        .with_context(|| format!("checkpoint {} ({})", ck.origin, ck.weights.display()))?;
    let wanted: std::collections::HashSet<String> =
        expected_shapes(cfg).into_iter().map(|(n, _)| n).collect();
    weights.retain(|k, _| wanted.contains(k));
    Ok((weights, layout))
}

/// An MAE checkpoint: its config (with the preprocessor's normalisation) and checked weights.
pub fn load_checkpoint(
    ck: &crate::weights::checkpoint::Checkpoint,
    device: &Device,
) -> Result<(MaeConfig, Weights)> {
    let cfg = checkpoint_config(ck)?;
    let (weights, _) = load_checkpoint_weights(&cfg, ck, device)?;
    Ok((cfg, weights))
}

/// Every expected tensor name with its shape, in transformers' naming, sorted by name: recorded
/// by building the modules once on a recording backend, so the names are written in one place
/// (the constructors in `mod.rs`).
pub fn expected_shapes(cfg: &MaeConfig) -> Vec<(String, Vec<usize>)> {
    crate::weights::shapes::record(|vb| {
        super::Mae::load(cfg.clone(), vb, Default::default(), &Device::Cpu).map(|_| ())
    })
    .expect("the MAE constructors ask a recording backend for names only")
    .into_iter()
    .collect()
}

/// Check that `weights` has every tensor with the right shape; name the first problem.
pub fn check_names(cfg: &MaeConfig, weights: &Weights) -> Result<()> {
    for (name, shape) in expected_shapes(cfg) {
        match weights.get(&name) {
            None => {
                anyhow::bail!("MAE weights: missing tensor `{name}` (expected shape {shape:?})")
            }
            Some(t) if t.dims() != shape.as_slice() => anyhow::bail!(
                "MAE weights: tensor `{name}` has shape {:?}, the config needs {shape:?}",
                t.dims()
            ),
            _ => {}
        }
    }
    Ok(())
}

/// Fresh weights, as the original MAE initialises them: xavier-uniform linears and patch
/// projection, zero biases, unit LayerNorms, N(0, 0.02) class and mask tokens, fixed sin-cos
/// position embeddings.
pub fn init_weights(cfg: &MaeConfig, seed: u64, device: &Device) -> Result<Weights> {
    let mut rng = crate::util::rng("mae-init", seed);
    let mut w = Weights::new();
    for (name, shape) in expected_shapes(cfg) {
        let t = if name.ends_with("position_embeddings") {
            init::sincos_2d(cfg.hidden_size, cfg.grid(), true, device)?
        } else if name.ends_with("decoder_pos_embed") {
            init::sincos_2d(cfg.decoder_hidden_size, cfg.grid(), true, device)?
        } else if name.ends_with("cls_token") || name.ends_with("mask_token") {
            init::normal(&mut rng, &shape, 0.02, device)?
        } else if name.contains("layernorm") || name.contains("_norm") {
            if name.ends_with("weight") {
                Tensor::ones(shape.as_slice(), DType::F32, device)?
            } else {
                Tensor::zeros(shape.as_slice(), DType::F32, device)?
            }
        } else if name.ends_with("bias") {
            Tensor::zeros(shape.as_slice(), DType::F32, device)?
        } else {
            init::xavier_uniform(&mut rng, &shape, device)?
        };
        w.insert(name, t);
    }
    Ok(w)
}
