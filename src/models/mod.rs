//! Image-to-image model families. A family is one file implementing [`I2IModel`]; the YAML names it
//! (`family: mae`) and [`FamilyConfig`] / [`build`] are the registry.
//!
//! Every family exposes the same seams the unlearning methods need: an encoder embedding of a
//! masked image (what the paper's loss compares), a decoder, its own training loss, generation,
//! and its parameters split into encoder / decoder / frozen.

pub mod checkpoint;
pub mod clip;
pub mod mae;
pub mod torch_legacy;

use crate::config::locate::Seg;
use crate::masks::BatchMask;
use crate::nn::Mode;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Model families known to the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FamilyName {
    /// Masked autoencoder, transformers' `ViTMAEForPreTraining`.
    Mae,
}

/// A model entry of the experiment file.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    pub name: String,
    pub family: FamilyName,
    /// The architecture, with the field names of the family's upstream `config.json`; the
    /// original model is then pre-trained here (see `pretrain`).
    #[serde(default)]
    pub config: serde_json::Value,
    /// A checkpoint to start from instead: a hub id (`facebook/vit-mae-large`, optionally
    /// `@revision`) or a folder with `config.json` and `model.safetensors` / `pytorch_model.bin`.
    #[serde(default)]
    pub weights: Option<String>,
    /// How the original model is obtained when no checkpoint is given: pre-trained here on the
    /// dataset's training images (cached by content hash, so a re-run skips it).
    #[serde(default)]
    pub pretrain: PretrainSpec,
}

/// Pre-training of the original model on all classes of the dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSpec {
    pub steps: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub grad_clip: f64,
    /// Share of patches hidden by the random pre-training masks.
    pub mask_ratio: f64,
    /// Share of batches masked with the experiment's own masks (`masks:`) instead of random ones,
    /// so the original model has practised the evaluation task (0 = plain MAE pre-training).
    pub task_mask_share: f64,
    pub seed: u64,
}

impl Default for PretrainSpec {
    fn default() -> Self {
        Self {
            steps: 1500,
            batch_size: 64,
            lr: 1.5e-3,
            min_lr: 1e-5,
            warmup_steps: 100,
            weight_decay: 0.05,
            betas: [0.9, 0.95],
            grad_clip: 1.0,
            mask_ratio: 0.75,
            task_mask_share: 0.0,
            seed: 0,
        }
    }
}

impl PretrainSpec {
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.steps == 0 {
            return Err(("steps", "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(("batch_size", "must be at least 1".into()));
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(("lr", "must be a positive number".into()));
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return Err(("mask_ratio", "must be in (0, 1)".into()));
        }
        if !(0.0..=1.0).contains(&self.task_mask_share) {
            return Err(("task_mask_share", "must be in [0, 1]".into()));
        }
        Ok(())
    }
}

/// A family's parsed architecture config.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum FamilyConfig {
    Mae(mae::MaeConfig),
}

impl FamilyConfig {
    /// Patches per image side.
    pub fn grid(&self) -> usize {
        match self {
            FamilyConfig::Mae(c) => c.image_size / c.patch_size,
        }
    }
    /// The resolution the model takes, if fixed.
    pub fn image_size(&self) -> Option<usize> {
        match self {
            FamilyConfig::Mae(c) => Some(c.image_size),
        }
    }
}

impl ModelSpec {
    /// Parse `config` strictly for the family; errors carry the YAML sub-path. `None` when the
    /// architecture comes from a checkpoint (`weights`).
    pub fn family_config(&self) -> std::result::Result<Option<FamilyConfig>, (Vec<Seg>, String)> {
        if self.weights.is_some() {
            if !self.config.is_null() {
                return Err((
                    vec![Seg::Key("config")],
                    "give either `config` (pre-train the original model here) or `weights` (start from a checkpoint), not both".into(),
                ));
            }
            return Ok(None);
        }
        match self.family {
            FamilyName::Mae => {
                mae::MaeConfig::from_yaml_value(&self.config).map(|c| Some(FamilyConfig::Mae(c)))
            }
        }
    }

    /// The architecture, reading the checkpoint's config when `weights` names one.
    pub fn resolve_config(
        &self,
        hub: Option<&crate::hub::Hub>,
    ) -> Result<(FamilyConfig, Option<checkpoint::Checkpoint>)> {
        if let Some(c) = self
            .family_config()
            .map_err(|(_, m)| crate::error::user(m))?
        {
            return Ok((c, None));
        }
        let spec = self.weights.as_deref().expect("weights when no config");
        let ck =
            checkpoint::resolve(spec, hub).with_context(|| format!("model `{}`", self.name))?;
        let cfg = match self.family {
            FamilyName::Mae => {
                let text = std::fs::read_to_string(&ck.config)
                    .with_context(|| format!("reading {}", ck.config.display()))?;
                let mut c = mae::MaeConfig::from_json(&text)
                    .with_context(|| format!("{} ({})", ck.config.display(), ck.origin))?;
                if let Some((mean, std)) = checkpoint::normalisation(ck.preprocessor.as_deref())? {
                    c.image_mean = mean;
                    c.image_std = std;
                }
                FamilyConfig::Mae(c)
            }
        };
        Ok((cfg, Some(ck)))
    }
}

/// Which part of the model a parameter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Encoder,
    Decoder,
    /// Buffers stored with the weights but never trained (fixed position embeddings).
    Frozen,
}

/// Named parameters, sorted by name (candle's VarMap order is a HashMap's).
pub type Weights = BTreeMap<String, Tensor>;

/// A model's trainable variables, by name and role.
#[derive(Clone, Default)]
pub struct Params {
    pub vars: Vec<(String, Var, Role)>,
}

impl Params {
    pub fn with_roles(&self, roles: &[Role]) -> Vec<(String, Var)> {
        self.vars
            .iter()
            .filter(|(_, _, r)| roles.contains(r))
            .map(|(n, v, _)| (n.clone(), v.clone()))
            .collect()
    }
    /// Current values, detached.
    pub fn weights(&self) -> Weights {
        self.vars
            .iter()
            .map(|(n, v, _)| (n.clone(), v.as_detached_tensor()))
            .collect()
    }
}

/// The operations the unlearning methods, the trainer and the evaluation need from a family.
pub trait I2IModel {
    fn config(&self) -> &FamilyConfig;
    /// Image side in pixels.
    fn image_size(&self) -> usize;
    /// The encoder's embedding of the masked images: `E(T(x))`, the quantity the paper's loss
    /// compares. `pixels` are `[B, 3, S, S]` in [0, 1].
    fn encode(&self, pixels: &Tensor, mask: &BatchMask, mode: Mode) -> Result<Tensor>;
    /// Decode an embedding from [`I2IModel::encode`] into a full image prediction `[B, 3, S, S]` on
    /// the [0, 1] pixel scale (not clamped, not pasted).
    fn decode(&self, embedding: &Tensor, mask: &BatchMask, mode: Mode) -> Result<Tensor>;
    /// The family's own training loss for predicting `target`'s hidden region from `pixels`'
    /// visible region (for MAE: MSE on the hidden patches in normalised pixel space).
    fn reconstruction_loss(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        target: &Tensor,
        mode: Mode,
    ) -> Result<Tensor>;
    /// The family's pre-training loss on a batch, random masks hiding `mask_ratio` of the patches
    /// (drawn from `rng`).
    fn pretrain_loss(
        &self,
        pixels: &Tensor,
        mask_ratio: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor>;
    /// The raw prediction for the whole image `[B, 3, S, S]` on the [0, 1] scale (not pasted,
    /// not clamped), for metrics that need it.
    fn predict(&self, pixels: &Tensor, mask: &BatchMask) -> Result<Tensor> {
        let emb = self.encode(pixels, mask, Mode::Infer)?;
        self.decode(&emb, mask, Mode::Infer)
    }
    /// Inpaint / outpaint: the prediction pasted into the known pixels, clamped to [0, 1].
    fn generate(&self, pixels: &Tensor, mask: &BatchMask) -> Result<Tensor> {
        let pred = self.predict(pixels, mask)?;
        let pm = mask.pixel_mask(self.image_size(), pixels.device())?;
        Ok(crate::masks::paste(pixels, &pred, &pm)?.clamp(0f32, 1f32)?)
    }
    /// Parameters (empty for a frozen model).
    fn params(&self) -> &Params;
}

/// Fresh weights for a family config, deterministic for `seed`.
pub fn init_weights(cfg: &FamilyConfig, seed: u64, device: &Device) -> Result<Weights> {
    match cfg {
        FamilyConfig::Mae(c) => mae::init_weights(c, seed, device),
    }
}

/// Build a model. `trainable`: parameters become candle `Var`s (gradients flow); otherwise the
/// weights are plain tensors (a frozen teacher).
pub fn build(
    cfg: &FamilyConfig,
    weights: &Weights,
    trainable: bool,
    device: &Device,
) -> Result<Box<dyn I2IModel>> {
    match cfg {
        FamilyConfig::Mae(c) => Ok(Box::new(mae::Mae::new(
            c.clone(),
            weights,
            trainable,
            device,
        )?)),
    }
}

/// Save weights as safetensors, atomically (temporary sibling, then rename).
pub fn save_weights(weights: &Weights, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .and_then(|s| s.to_str())
            .unwrap_or("weights"),
        std::process::id()
    ));
    let map: std::collections::HashMap<String, Tensor> = weights
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    candle_core::safetensors::save(&map, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

/// Load every tensor of a safetensors file as f32.
pub fn load_weights(path: &Path, device: &Device) -> Result<Weights> {
    let map = candle_core::safetensors::load(path, device)
        .with_context(|| format!("reading weights {}", path.display()))?;
    map.into_iter()
        .map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?)))
        .collect()
}
