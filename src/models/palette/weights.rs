//! Palette weights: expected names and shapes (those of the official `16_Network.pth`: the UNet
//! under `denoise_fn.`, beside the schedule buffers), checkpoint folders, and fresh
//! initialisation for networks pre-trained here.

use super::diffusion::Schedule;
use super::unet::UNet;
use super::PaletteConfig;
use crate::models::Weights;
use crate::weights::checkpoint::{file_name, read_container, Checkpoint, Layout};
use crate::weights::shapes;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

/// File names of a Palette checkpoint folder: `config.json` (this family's layout) and the
/// network's state dict as Palette saves it (`16_Network.pth`; `*_Network_ema.pth` files are
/// other checkpoints of the same run).
pub const LAYOUT: Layout = Layout {
    weights: &["16_Network.pth", "*_Network.pth", "*.pth"],
    companion: &[],
};

/// Prefix of the UNet's names in the network's state dict.
pub const PREFIX: &str = "denoise_fn.";

/// Every UNet tensor with its shape, under `denoise_fn.`.
pub fn expected_shapes(cfg: &PaletteConfig) -> Result<BTreeMap<String, Vec<usize>>> {
    shapes::record(|vb| {
        UNet::new(vb.pp("denoise_fn"), cfg)?;
        Ok(())
    })
}

pub fn check_names(cfg: &PaletteConfig, weights: &Weights) -> Result<()> {
    check_against(&expected_shapes(cfg)?, weights)
}

fn check_against(want: &BTreeMap<String, Vec<usize>>, weights: &Weights) -> Result<()> {
    shapes::check_against(want, weights, |_| {
        " (a Palette network's state dict holds the UNet under `denoise_fn.`)"
    })
}

/// The weights of a checkpoint, checked and reduced to the UNet's names. The schedule buffer
/// `gammas` saved beside it (the schedule of the phase the network last ran) must be the
/// config's train or test schedule: a mismatch means the config is not the checkpoint's.
pub fn load_checkpoint_weights(
    cfg: &PaletteConfig,
    ck: &Checkpoint,
    device: &Device,
) -> Result<(Weights, String)> {
    let mut w = read_container(&ck.weights, device)
        .with_context(|| format!("reading {}", ck.weights.display()))?;
    let mut note = format!("Palette network from {}", file_name(&ck.weights));
    if let Some(g) = w.get("gammas") {
        let saved: Vec<f32> = g.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let matches = |s: &super::config::BetaSchedule| {
            let ours = Schedule::new(s);
            ours.len() == saved.len()
                && ours
                    .gammas
                    .iter()
                    .zip(&saved)
                    .all(|(a, b)| ((*a as f32) - b).abs() <= 1e-6 * (1.0 + b.abs()))
        };
        if matches(&cfg.beta_schedule.test) {
            note.push_str(" (its schedule buffers are the test schedule's)");
        } else if matches(&cfg.beta_schedule.train) {
            note.push_str(" (its schedule buffers are the train schedule's)");
        } else {
            anyhow::bail!(
                "checkpoint {}: its `gammas` buffer ({} steps) is neither the config's train nor its test β schedule — is config.json this checkpoint's?",
                ck.origin,
                saved.len()
            );
        }
    }
    let want = expected_shapes(cfg)?;
    check_against(&want, &w).with_context(|| format!("checkpoint {}", ck.origin))?;
    w.retain(|k, _| want.contains_key(k));
    Ok((w, note))
}

/// Fresh weights: torch's defaults (U(±1/√fan_in) for convolutions and linears, weights and
/// biases alike), unit GroupNorms, and zeros for the convolutions the official constructor
/// zeroes (`zero_module`: every residual block's last convolution, every attention `proj_out`,
/// the output convolution). Palette's `init_weights('kaiming')` pass is not reproduced: the
/// zeroed convolutions make a fresh network the identity-plus-residual it is meant to start as.
pub fn init_weights(cfg: &PaletteConfig, seed: u64, device: &Device) -> Result<Weights> {
    let mut rng = crate::util::rng("palette-init", seed);
    let mut out = Weights::new();
    let all = expected_shapes(cfg)?;
    for (name, shape) in &all {
        let (name, shape) = (name.clone(), shape.clone());
        let n: usize = shape.iter().product();
        let zeroed = name.contains(".out_layers.3.")
            || name.contains(".proj_out.")
            || name.starts_with("denoise_fn.out.2.");
        let is_norm = name.contains("layers.0.") && !name.contains("emb_layers")
            || name.contains(".norm.")
            || name.starts_with("denoise_fn.out.0.");
        let t = if zeroed {
            Tensor::zeros(shape.as_slice(), DType::F32, device)?
        } else if is_norm {
            if name.ends_with(".weight") {
                Tensor::ones(shape.as_slice(), DType::F32, device)?
            } else {
                Tensor::zeros(shape.as_slice(), DType::F32, device)?
            }
        } else {
            let fan_in = fan_in_of(&name, &shape, &all);
            let a = 1.0 / (fan_in as f64).sqrt();
            let v: Vec<f32> = (0..n)
                .map(|_| ((rand::Rng::random::<f64>(&mut rng) * 2.0 - 1.0) * a) as f32)
                .collect();
            Tensor::from_vec(v, shape.as_slice(), device)?
        };
        out.insert(name, t);
    }
    Ok(out)
}

/// The fan-in torch's default init uses for a weight, and for a bias its layer's weight's.
fn fan_in_of(name: &str, shape: &[usize], all: &BTreeMap<String, Vec<usize>>) -> usize {
    if shape.len() >= 2 {
        return shape[1..].iter().product();
    }
    let weight = format!("{}weight", name.trim_end_matches("bias"));
    all.get(&weight)
        .map(|s| s[1..].iter().product::<usize>().max(1))
        .unwrap_or(shape[0].max(1))
}
