//! The experiment file's model entry (`models:`): the family, its architecture or checkpoint
//! (`config:` / `weights:`), and the original model's pre-training (`pretrain:`); and the strict
//! parsers every family's config uses.

use super::{FamilyConfig, FamilyName};
use crate::locate::Seg;
use crate::weights::checkpoint;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;

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
    /// `@revision`) or a folder with `config.json` and the family's weights files; or, for
    /// composite checkpoints, the files themselves (`{model: …, tokenizer: …}`, each a path, a
    /// URL with `#sha256=`, or `hub:owner/name/file`) with the architecture in `config`.
    #[serde(default)]
    pub weights: Option<WeightsSource>,
    /// How the original model is obtained when no checkpoint is given: pre-trained here on the
    /// dataset's training images (cached by content hash, so a re-run skips it).
    #[serde(default)]
    pub pretrain: PretrainSpec,
    /// The results of `pretrain` committed as files (`{original: FILE#sha256=…, oracle:
    /// FILE#sha256=…}`): loaded, their hash checked, instead of pre-training here. Each file's
    /// README says which settings and data made it; the pre-training is paid for once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pretrained: Option<PretrainedFiles>,
}

/// `pretrained:` of a model entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PretrainedFiles {
    /// The original model (pre-trained on every class).
    #[serde(default)]
    pub original: Option<checkpoint::FileRef>,
    /// The retrain oracle (pre-trained without the forget classes).
    #[serde(default)]
    pub oracle: Option<checkpoint::FileRef>,
}

crate::train::with_optimiser! {
/// Pre-training of the original model on all classes of the dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSpec {
    pub steps: usize,
    pub batch_size: usize,
    /// Share of batches masked with `task_masks` instead of the family's random training masks,
    /// so the original model has practised an evaluation task (0 = the family's plain
    /// pre-training).
    pub task_mask_share: f64,
    /// The masks of those batches, in rotation (independent of the grid's `masks:`, so that
    /// changing the evaluation masks keeps the original model).
    pub task_masks: Vec<crate::masks::MaskSpec>,
    pub seed: u64,
    /// Split each batch into this many equal shards whose gradients are computed at the same
    /// time, one per thread, and summed: the whole batch's gradient up to float rounding, and
    /// the same weights whatever the thread count. On small models this keeps both cores busy,
    /// where splitting every op over threads leaves one mostly idle. 1 = the whole batch at once.
    #[serde(skip_serializing_if = "is_one")]
    pub data_parallel: usize,
    /// The tokenizer's own pre-training, first (families with a tokenizer: MAGE).
    #[serde(skip_serializing_if = "TokenizerPretrain::is_default")]
    pub tokenizer: TokenizerPretrain,
}
}

crate::train::with_optimiser! {
/// Pre-training of a family's tokenizer before the model itself (MAGE's VQ tokenizer; ignored by
/// families without one): reconstruction MSE + codebook + commitment losses, the codebook
/// started from encoder outputs and unused entries re-seated on encoder outputs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerPretrain {
    pub steps: usize,
    pub batch_size: usize,
    /// Every this many steps, codebook entries no image of those steps used are moved onto
    /// random encoder outputs of the current batch (0 = never).
    pub restart_every: usize,
    /// Train on random square crops of this side (a multiple of the token size; 0 = whole
    /// images): the tokenizer is convolutional, and crops cut the cost of a step.
    pub crop: usize,
}
}

impl Default for TokenizerPretrain {
    fn default() -> Self {
        Self {
            steps: 400,
            batch_size: 32,
            restart_every: 50,
            crop: 0,
            lr: 2e-3,
            min_lr: 1e-5,
            warmup_steps: 20,
            weight_decay: 0.0,
            betas: [0.9, 0.99],
            grad_clip: 1.0,
        }
    }
}

impl TokenizerPretrain {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
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
            task_mask_share: 0.0,
            task_masks: vec![],
            seed: 0,
            data_parallel: 1,
            tokenizer: TokenizerPretrain::default(),
        }
    }
}

/// Pre-training keys leave `data_parallel: 1` out, so the weights cached before the field existed keep
/// their key.
fn is_one(n: &usize) -> bool {
    *n == 1
}

impl PretrainSpec {
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.steps == 0 {
            return Err(("steps", "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err(("batch_size", "must be at least 1".into()));
        }
        if self.data_parallel == 0 || self.batch_size % self.data_parallel != 0 {
            return Err((
                "data_parallel",
                format!(
                    "must be at least 1 and divide batch_size {}, got {}",
                    self.batch_size, self.data_parallel
                ),
            ));
        }
        self.validate_optim()?;
        if !(0.0..=1.0).contains(&self.task_mask_share) {
            return Err(("task_mask_share", "must be in [0, 1]".into()));
        }
        if self.tokenizer.steps == 0 || self.tokenizer.batch_size == 0 {
            return Err((
                "tokenizer",
                "steps and batch_size must be at least 1".into(),
            ));
        }
        self.tokenizer
            .validate_optim()
            .map_err(|(k, m)| ("tokenizer", format!("{k}: {m}")))?;
        if self.task_mask_share > 0.0 && self.task_masks.is_empty() {
            return Err((
                "task_masks",
                "task_mask_share > 0 needs the masks to practise, e.g. `task_masks: [center:4]`"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Check that the experiment file's `config:` is a mapping whose keys are all in `fields`:
/// `not_a_mapping` otherwise, or "unknown {what} `key`; valid: …" naming the key's YAML path.
fn check_config_keys(
    v: &serde_json::Value,
    fields: &[&str],
    what: &str,
    not_a_mapping: &str,
) -> std::result::Result<(), (Vec<Seg>, String)> {
    let obj = v
        .as_object()
        .ok_or_else(|| (vec![Seg::Key("config")], not_a_mapping.to_string()))?;
    for k in obj.keys() {
        if !fields.contains(&k.as_str()) {
            let key: &'static str = Box::leak(k.clone().into_boxed_str());
            return Err((
                vec![Seg::Key("config"), Seg::Key(key)],
                format!("unknown {what} `{k}`; valid: {}", fields.join(", ")),
            ));
        }
    }
    Ok(())
}

/// Parse a family's `config:` strictly: the family's defaults when it is absent, its keys checked
/// against `fields` (see [`check_config_keys`]), then the family's own `check`; errors carry the
/// YAML sub-path.
pub(crate) fn parse_config<T: serde::de::DeserializeOwned + Default>(
    v: &serde_json::Value,
    fields: &[&str],
    what: &str,
    not_a_mapping: &str,
    check: impl Fn(&T) -> std::result::Result<(), (Vec<Seg>, String)>,
) -> std::result::Result<T, (Vec<Seg>, String)> {
    if v.is_null() {
        let c = T::default();
        check(&c)?;
        return Ok(c);
    }
    check_config_keys(v, fields, what, not_a_mapping)?;
    let cfg: T =
        serde_json::from_value(v.clone()).map_err(|e| (vec![Seg::Key("config")], e.to_string()))?;
    check(&cfg)?;
    Ok(cfg)
}

/// Read a family's `config.json` with `parse` (its strict parser) after dropping, at every level,
/// the keys its config does not know (a reference script's notes, the official config's extra
/// fields); the experiment file's `config:` stays strict.
pub(crate) fn parse_config_json<T: Serialize + Default>(
    text: &str,
    parse: impl Fn(&serde_json::Value) -> std::result::Result<T, (Vec<Seg>, String)>,
) -> Result<T> {
    let mut v: serde_json::Value = serde_json::from_str(text).context("parsing config.json")?;
    let known = serde_json::to_value(T::default()).expect("serialisable");
    keep_known(&mut v, &known);
    parse(&v).map_err(|(p, m)| anyhow::anyhow!("{}: {m}", crate::locate::path_string(&p)))
}

/// Drop the keys of `v` that `known` (a serialised default) does not have, recursively: upstream
/// `config.json` files carry keys a family's config does not read.
fn keep_known(v: &mut serde_json::Value, known: &serde_json::Value) {
    if let (Some(o), Some(k)) = (v.as_object_mut(), known.as_object()) {
        o.retain(|key, _| k.contains_key(key));
        for (key, val) in o.iter_mut() {
            keep_known(val, &k[key]);
        }
    }
}

/// Where a checkpoint comes from (`weights:`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum WeightsSource {
    /// A hub id or a checkpoint folder.
    Checkpoint(String),
    /// The weights files themselves.
    Files(CheckpointFiles),
}

impl<'de> Deserialize<'de> for WeightsSource {
    /// By shape, so that a bad file entry reports its own error (an untagged enum would only say
    /// that no variant matched).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(WeightsSource::Checkpoint(s)),
            v @ serde_json::Value::Object(_) => serde_json::from_value(v)
                .map(WeightsSource::Files)
                .map_err(D::Error::custom),
            _ => Err(D::Error::custom(
                "`weights` is a hub id or a folder, or the files `{model: …, tokenizer: …}`",
            )),
        }
    }
}

/// A checkpoint given as files (MAGE: the model and its tokenizer).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointFiles {
    /// The model's weights (MAGE: `mage-vitb-1600.pth`).
    pub model: checkpoint::FileRef,
    /// A second file (MAGE: `vqgan_jax_strongaug.ckpt`; without it the tokenizer is read from
    /// the model file's `vqgan.*`).
    #[serde(default)]
    pub tokenizer: Option<checkpoint::FileRef>,
}

impl ModelSpec {
    /// Resolve relative file paths of `weights` against the experiment file's folder.
    pub fn resolve_relative(&mut self, base: &Path) {
        if let Some(WeightsSource::Files(f)) = &mut self.weights {
            f.model.resolve_relative(base);
            if let Some(t) = f.tokenizer.as_mut() {
                t.resolve_relative(base);
            }
        }
        if let Some(p) = &mut self.pretrained {
            for f in [p.original.as_mut(), p.oracle.as_mut()]
                .into_iter()
                .flatten()
            {
                f.resolve_relative(base);
            }
        }
    }

    /// Parse `config` strictly for the family; errors carry the YAML sub-path. `None` when the
    /// architecture comes from a checkpoint (`weights`).
    pub fn family_config(&self) -> std::result::Result<Option<FamilyConfig>, (Vec<Seg>, String)> {
        if let Some(WeightsSource::Files(_)) = &self.weights {
            if !self.family.file_list() {
                return Err((
                    vec![Seg::Key("weights")],
                    format!(
                        "{} checkpoints are a hub id or a folder, not a file list",
                        self.family.as_str()
                    ),
                ));
            }
            if self.config.is_null() {
                return Err((
                    vec![Seg::Key("config")],
                    "`weights` as files needs the architecture in `config` (the official settings' fields)".into(),
                ));
            }
        } else if self.weights.is_some() {
            if !self.config.is_null() {
                return Err((
                    vec![Seg::Key("config")],
                    "give either `config` (pre-train the original model here) or `weights` (start from a checkpoint), not both".into(),
                ));
            }
            return Ok(None);
        }
        self.family.parse(&self.config).map(Some)
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
        let spec = match self.weights.as_ref().expect("weights when no config") {
            WeightsSource::Checkpoint(s) => s,
            WeightsSource::Files(_) => unreachable!("file lists come with a config"),
        };
        let ck = super::resolve_checkpoint(self.family, spec, hub)
            .with_context(|| format!("model `{}`", self.name))?;
        Ok((self.family.checkpoint_config(&ck)?, Some(ck)))
    }

    /// The architecture and the checkpoint (if `weights` names one), fetching what is missing;
    /// refused before anything is allocated when the architecture is too large (see
    /// [`super::size`]).
    pub fn resolve(
        &self,
        hub: Option<&crate::hub::Hub>,
    ) -> Result<(FamilyConfig, Option<checkpoint::Checkpoint>)> {
        let (cfg, ck) = self.resolve_unsized(hub)?;
        super::size::check(&cfg, &format!("model `{}`", self.name))?;
        Ok((cfg, ck))
    }

    fn resolve_unsized(
        &self,
        hub: Option<&crate::hub::Hub>,
    ) -> Result<(FamilyConfig, Option<checkpoint::Checkpoint>)> {
        if let Some(WeightsSource::Files(f)) = &self.weights {
            let cfg = self
                .family_config()
                .map_err(|(_, m)| crate::error::user(m))?
                .expect("file lists come with a config");
            let hub_cfg = match hub {
                Some(h) => h.cfg.clone(),
                None => crate::hub::HubConfig::from_env(),
            };
            let ck = checkpoint::from_files(&f.model, f.tokenizer.as_ref(), hub, &hub_cfg)
                .with_context(|| format!("model `{}`", self.name))?;
            return Ok((cfg, Some(ck)));
        }
        self.resolve_config(hub)
    }
}
