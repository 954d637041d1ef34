//! Image-to-image model families. A family is one folder implementing [`I2IModel`] (see
//! [`model`]) whose config implements [`Family`]; `family.rs` holds the registry (one line per
//! family) and `spec.rs` the experiment file's model entry. The functions here resolve and load
//! checkpoints through the registry.

pub mod family;
pub mod mae;
pub mod mage;
pub mod model;
pub mod palette;
pub mod sharded;
pub mod size;
pub mod spec;
pub mod vars;

pub use family::{Family, FamilyConfig, FamilyName, PreStage, TrainImages};
pub use model::{
    trainable, Embedding, GenerateOptions, I2IModel, ModelInput, Params, QualityFigure, Role,
    Scope, Weights,
};
pub use sharded::generate_in_shards;
pub(crate) use spec::{parse_config, parse_config_json};
pub use spec::{CheckpointFiles, ModelSpec, PretrainSpec, TokenizerPretrain, WeightsSource};
pub use vars::var_builder;

use crate::weights::checkpoint;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use std::path::Path;

/// A checkpoint of `family` (a folder or a hub id) resolved to local files.
pub fn resolve_checkpoint(
    family: FamilyName,
    spec: &str,
    hub: Option<&crate::hub::Hub>,
) -> Result<checkpoint::Checkpoint> {
    checkpoint::resolve_layout(spec, hub, family.layout())
}

/// A checkpoint of `family` named by a hub id or a folder, loaded through the registry.
pub struct Pretrained {
    pub config: FamilyConfig,
    pub weights: Weights,
    pub checkpoint: checkpoint::Checkpoint,
    /// The key layout the weights were found in.
    pub layout: String,
}

/// A checkpoint of `family` named by a hub id or a folder: its architecture, checked weights,
/// where it came from and its layout.
pub fn load_pretrained(
    family: FamilyName,
    spec: &str,
    hub: Option<&crate::hub::Hub>,
    device: &Device,
) -> Result<Pretrained> {
    load_resolved(family, resolve_checkpoint(family, spec, hub)?, device)
}

/// [`load_pretrained`] of a checkpoint already resolved.
pub fn load_resolved(
    family: FamilyName,
    ck: checkpoint::Checkpoint,
    device: &Device,
) -> Result<Pretrained> {
    let config = family.checkpoint_config(&ck)?;
    size::check(&config, &format!("checkpoint {}", ck.origin))?;
    let (weights, layout) = config.load_checkpoint(&ck, device)?;
    Ok(Pretrained {
        config,
        weights,
        checkpoint: ck,
        layout,
    })
}

/// Whether `t` holds only finite values.
pub fn is_finite(t: &Tensor) -> Result<bool> {
    // 0 · x is 0 for a finite x and NaN for NaN and ±∞; the sum is NaN if any element is.
    let s = (t * 0.0)?
        .sum_all()?
        .to_dtype(DType::F64)?
        .to_scalar::<f64>()?;
    Ok(s == 0.0)
}

/// Fail, naming the first tensor (by name) that holds NaN or infinite values.
pub fn check_finite(weights: &Weights) -> Result<()> {
    for (name, t) in weights {
        if !is_finite(t)? {
            anyhow::bail!("tensor `{name}` holds NaN or infinite values");
        }
    }
    Ok(())
}

/// Save weights as safetensors, atomically.
pub fn save_weights(weights: &Weights, path: &Path) -> Result<()> {
    let map: std::collections::HashMap<String, Tensor> = weights
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    crate::util::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&map, tmp)
            .with_context(|| format!("writing {}", tmp.display()))
    })
}

/// Load every tensor of a safetensors file as f32; non-finite values are an error naming the
/// file and the tensor.
pub fn load_weights(path: &Path, device: &Device) -> Result<Weights> {
    let map = candle_core::safetensors::load(path, device)
        .with_context(|| format!("reading weights {}", path.display()))?;
    let w: Weights = map
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    check_finite(&w).with_context(|| format!("weights {}", path.display()))?;
    Ok(w)
}
