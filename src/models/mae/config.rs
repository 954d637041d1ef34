//! `MaeConfig`: transformers' `ViTMAEConfig` fields, read from the experiment file or an upstream
//! `config.json`, and checked.

use crate::locate::Seg;
use crate::nn::Activation;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// transformers' `ViTMAEConfig` (field names and defaults), plus the image normalisation of its
/// `preprocessor_config.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaeConfig {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
    pub image_size: usize,
    pub patch_size: usize,
    pub num_channels: usize,
    pub qkv_bias: bool,
    pub decoder_num_attention_heads: usize,
    pub decoder_hidden_size: usize,
    pub decoder_num_hidden_layers: usize,
    pub decoder_intermediate_size: usize,
    /// Share of patches hidden by MAE's random masking: the family's training masks (pre-training
    /// and, by default, unlearning), as transformers uses it.
    pub mask_ratio: f64,
    pub norm_pix_loss: bool,
    /// Per-channel normalisation of the input (`ViTImageProcessor`'s image_mean / image_std).
    pub image_mean: [f64; 3],
    pub image_std: [f64; 3],
}

impl Default for MaeConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: "gelu".into(),
            layer_norm_eps: 1e-12,
            image_size: 224,
            patch_size: 16,
            num_channels: 3,
            qkv_bias: true,
            decoder_num_attention_heads: 16,
            decoder_hidden_size: 512,
            decoder_num_hidden_layers: 8,
            decoder_intermediate_size: 2048,
            mask_ratio: 0.75,
            norm_pix_loss: false,
            image_mean: [0.485, 0.456, 0.406],
            image_std: [0.229, 0.224, 0.225],
        }
    }
}

/// Fields accepted in the experiment file's `config:` for `family: mae`.
pub const CONFIG_FIELDS: &[&str] = &[
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "layer_norm_eps",
    "image_size",
    "patch_size",
    "num_channels",
    "qkv_bias",
    "decoder_num_attention_heads",
    "decoder_hidden_size",
    "decoder_num_hidden_layers",
    "decoder_intermediate_size",
    "mask_ratio",
    "norm_pix_loss",
    "image_mean",
    "image_std",
];

impl MaeConfig {
    /// Parse the YAML `config:` strictly (unknown keys are errors; a `config.json` read through
    /// [`MaeConfig::from_json`] may carry extra fields).
    pub fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)> {
        crate::models::parse_config(
            v,
            CONFIG_FIELDS,
            "MAE config field",
            "must be a mapping of config.json fields",
            Self::check,
        )
    }

    /// Read an upstream `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).context("parsing MAE config.json")?;
        cfg.check().map_err(|(_, m)| anyhow::anyhow!(m))?;
        Ok(cfg)
    }

    fn check(&self) -> std::result::Result<(), (Vec<Seg>, String)> {
        let e = |k: &'static str, m: String| Err((vec![Seg::Key("config"), Seg::Key(k)], m));
        for (k, v) in [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("hidden_size", self.hidden_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("intermediate_size", self.intermediate_size),
            ("decoder_hidden_size", self.decoder_hidden_size),
            ("decoder_num_hidden_layers", self.decoder_num_hidden_layers),
            (
                "decoder_num_attention_heads",
                self.decoder_num_attention_heads,
            ),
            ("decoder_intermediate_size", self.decoder_intermediate_size),
        ] {
            if v == 0 {
                return e(k, "must be at least 1".into());
            }
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            return e(
                "layer_norm_eps",
                format!("must be a positive number, got {}", self.layer_norm_eps),
            );
        }
        if self.image_std.iter().any(|s| !(*s > 0.0 && s.is_finite()))
            || self.image_mean.iter().any(|m| !m.is_finite())
        {
            return e(
                "image_std",
                "image_mean must be finite and image_std positive".into(),
            );
        }
        if self.patch_size == 0 || self.image_size % self.patch_size != 0 {
            return e(
                "patch_size",
                format!(
                    "image_size {} must be a multiple of patch_size {}",
                    self.image_size, self.patch_size
                ),
            );
        }
        if self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return e(
                "num_attention_heads",
                format!(
                    "hidden_size {} must be divisible by num_attention_heads {}",
                    self.hidden_size, self.num_attention_heads
                ),
            );
        }
        if self.decoder_num_attention_heads == 0
            || self.decoder_hidden_size % self.decoder_num_attention_heads != 0
        {
            return e(
                "decoder_num_attention_heads",
                format!(
                    "decoder_hidden_size {} must be divisible by decoder_num_attention_heads {}",
                    self.decoder_hidden_size, self.decoder_num_attention_heads
                ),
            );
        }
        if self.hidden_size % 4 != 0 || self.decoder_hidden_size % 4 != 0 {
            return e(
                "hidden_size",
                "hidden sizes must be multiples of 4 (sin-cos position embeddings)".into(),
            );
        }
        if let Err(m) = Activation::from_hf(&self.hidden_act) {
            return e("hidden_act", m.to_string());
        }
        if !(self.mask_ratio > 0.0 && self.mask_ratio < 1.0) {
            return e(
                "mask_ratio",
                format!("must be in (0, 1), got {}", self.mask_ratio),
            );
        }
        if self.num_channels != 3 {
            return e("num_channels", "only RGB (3 channels) is supported".into());
        }
        Ok(())
    }

    pub fn grid(&self) -> usize {
        self.image_size / self.patch_size
    }
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
    pub(super) fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * self.num_channels
    }
}
