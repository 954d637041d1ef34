//! Masked autoencoder (He et al. 2022) with the architecture and weight names of transformers'
//! `ViTMAEForPreTraining`: `vit.embeddings.*`, `vit.encoder.layer.N.*`, `vit.layernorm.*`,
//! `decoder.*`. The quickstart's tiny model and `facebook/vit-mae-large` are the same code with a
//! different [`MaeConfig`] (deserialisable from the upstream `config.json`).
//!
//! Masking is given explicitly (a [`BatchMask`]): visible patches are kept in ascending patch order,
//! which is what transformers produces for `noise = idx / N` on visible and `1 + idx / N` on hidden
//! patches, so hidden states compare one to one.

use super::{FamilyConfig, I2IModel, Params, Role, Weights};
use crate::config::locate::Seg;
use crate::masks::{BatchMask, PatchMask};
use crate::nn::{init, Activation, LayerNorm, Linear, Mode, SelfAttention};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use candle_nn::VarBuilder;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
        if v.is_null() {
            return Ok(Self::default()).and_then(|c| c.check().map(|_| c));
        }
        let obj = v.as_object().ok_or_else(|| {
            (
                vec![Seg::Key("config")],
                "must be a mapping of config.json fields".to_string(),
            )
        })?;
        for k in obj.keys() {
            if !CONFIG_FIELDS.contains(&k.as_str()) {
                let key: &'static str = Box::leak(k.clone().into_boxed_str());
                return Err((
                    vec![Seg::Key("config"), Seg::Key(key)],
                    format!(
                        "unknown MAE config field `{k}`; valid: {}",
                        CONFIG_FIELDS.join(", ")
                    ),
                ));
            }
        }
        let cfg: Self = serde_json::from_value(v.clone())
            .map_err(|e| (vec![Seg::Key("config")], e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Read an upstream `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(text).context("parsing MAE config.json")?;
        cfg.check().map_err(|(_, m)| anyhow::anyhow!(m))?;
        Ok(cfg)
    }

    fn check(&self) -> std::result::Result<(), (Vec<Seg>, String)> {
        let e = |k: &'static str, m: String| Err((vec![Seg::Key("config"), Seg::Key(k)], m));
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
    fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size * self.num_channels
    }
}

/// One pre-norm ViT layer (`ViTMAELayer`): attention, then MLP, each with a residual.
struct Layer {
    attention: SelfAttention,
    layernorm_before: LayerNorm,
    layernorm_after: LayerNorm,
    intermediate: Linear,
    output: Linear,
    act: Activation,
}

impl Layer {
    fn load(vb: VarBuilder, h: usize, inter: usize, heads: usize, cfg: &MaeConfig) -> Result<Self> {
        let att = vb.pp("attention");
        let a = att.pp("attention");
        Ok(Self {
            attention: SelfAttention {
                q: Linear::load(a.pp("query"), h, h, cfg.qkv_bias)?,
                k: Linear::load(a.pp("key"), h, h, cfg.qkv_bias)?,
                v: Linear::load(a.pp("value"), h, h, cfg.qkv_bias)?,
                out: Linear::load(att.pp("output").pp("dense"), h, h, true)?,
                heads,
            },
            layernorm_before: LayerNorm::load(vb.pp("layernorm_before"), h, cfg.layer_norm_eps)?,
            layernorm_after: LayerNorm::load(vb.pp("layernorm_after"), h, cfg.layer_norm_eps)?,
            intermediate: Linear::load(vb.pp("intermediate").pp("dense"), h, inter, true)?,
            output: Linear::load(vb.pp("output").pp("dense"), inter, h, true)?,
            act: Activation::from_hf(&cfg.hidden_act)?,
        })
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let h = (self
            .attention
            .forward(&self.layernorm_before.forward(x, mode)?, mode)?
            + x)?;
        let m = self.act.forward(
            &self
                .intermediate
                .forward(&self.layernorm_after.forward(&h, mode)?)?,
        )?;
        Ok((self.output.forward(&m)? + h)?)
    }
}

/// `ViTMAEForPreTraining`.
pub struct Mae {
    cfg: MaeConfig,
    family_cfg: FamilyConfig,
    patch_weight: Tensor,
    patch_bias: Tensor,
    cls_token: Tensor,
    position_embeddings: Tensor,
    layers: Vec<Layer>,
    layernorm: LayerNorm,
    decoder_embed: Linear,
    mask_token: Tensor,
    decoder_pos_embed: Tensor,
    decoder_layers: Vec<Layer>,
    decoder_norm: LayerNorm,
    decoder_pred: Linear,
    mean: Tensor,
    std: Tensor,
    params: Params,
}

/// What a full forward pass produces, for parity tests and inspection.
pub struct MaeOutput {
    /// Embedding output, then each encoder layer's output (before the final LayerNorm).
    pub hidden_states: Vec<Tensor>,
    /// After `vit.layernorm`: the encoder embedding.
    pub last_hidden_state: Tensor,
    /// Decoder predictions per patch, `[B, N, p·p·C]` in (p, q, c) order (transformers' logits).
    pub logits: Tensor,
}

fn role_of(name: &str) -> Role {
    if name == "vit.embeddings.position_embeddings" || name == "decoder.decoder_pos_embed" {
        Role::Frozen
    } else if name.starts_with("vit.") {
        Role::Encoder
    } else {
        Role::Decoder
    }
}

impl Mae {
    pub fn new(
        cfg: MaeConfig,
        weights: &Weights,
        trainable: bool,
        device: &Device,
    ) -> Result<Self> {
        let (vb, params) = if trainable {
            let varmap = candle_nn::VarMap::new();
            let mut vars = Vec::new();
            {
                let mut data = varmap.data().lock().expect("varmap lock");
                for (name, t) in weights {
                    let var = Var::from_tensor(&t.to_dtype(DType::F32)?.to_device(device)?)?;
                    data.insert(name.clone(), var.clone());
                    vars.push((name.clone(), var, role_of(name)));
                }
            }
            (
                VarBuilder::from_varmap(&varmap, DType::F32, device),
                Params { vars },
            )
        } else {
            let map: HashMap<String, Tensor> = weights
                .iter()
                .map(|(k, v)| Ok((k.clone(), v.to_dtype(DType::F32)?.to_device(device)?)))
                .collect::<Result<_>>()?;
            (
                VarBuilder::from_tensors(map, DType::F32, device),
                Params::default(),
            )
        };
        Self::load(cfg, vb, params, weights, device)
    }

    fn load(
        cfg: MaeConfig,
        vb: VarBuilder,
        params: Params,
        weights: &Weights,
        device: &Device,
    ) -> Result<Self> {
        check_names(&cfg, weights)?;
        let (h, hd, n, p) = (
            cfg.hidden_size,
            cfg.decoder_hidden_size,
            cfg.num_patches(),
            cfg.patch_size,
        );
        let v = vb.pp("vit");
        let emb = v.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                Layer::load(
                    v.pp("encoder").pp("layer").pp(i),
                    h,
                    cfg.intermediate_size,
                    cfg.num_attention_heads,
                    &cfg,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let d = vb.pp("decoder");
        let decoder_layers = (0..cfg.decoder_num_hidden_layers)
            .map(|i| {
                Layer::load(
                    d.pp("decoder_layers").pp(i),
                    hd,
                    cfg.decoder_intermediate_size,
                    cfg.decoder_num_attention_heads,
                    &cfg,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let mean = Tensor::from_vec(
            cfg.image_mean.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            (1, 3, 1, 1),
            device,
        )?;
        let std = Tensor::from_vec(
            cfg.image_std.iter().map(|&x| x as f32).collect::<Vec<_>>(),
            (1, 3, 1, 1),
            device,
        )?;
        Ok(Self {
            patch_weight: emb
                .pp("patch_embeddings")
                .pp("projection")
                .get((h, cfg.num_channels, p, p), "weight")?,
            patch_bias: emb.pp("patch_embeddings").pp("projection").get(h, "bias")?,
            cls_token: emb.get((1, 1, h), "cls_token")?,
            position_embeddings: emb.get((1, n + 1, h), "position_embeddings")?,
            layers,
            layernorm: LayerNorm::load(v.pp("layernorm"), h, cfg.layer_norm_eps)?,
            decoder_embed: Linear::load(d.pp("decoder_embed"), h, hd, true)?,
            mask_token: d.get((1, 1, hd), "mask_token")?,
            decoder_pos_embed: d.get((1, n + 1, hd), "decoder_pos_embed")?,
            decoder_layers,
            decoder_norm: LayerNorm::load(d.pp("decoder_norm"), hd, cfg.layer_norm_eps)?,
            decoder_pred: Linear::load(d.pp("decoder_pred"), hd, cfg.patch_dim(), true)?,
            mean,
            std,
            family_cfg: FamilyConfig::Mae(cfg.clone()),
            cfg,
            params,
        })
    }

    pub fn mae_config(&self) -> &MaeConfig {
        &self.cfg
    }

    /// [0, 1] pixels → the model's normalised input.
    pub fn normalize(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(pixels.broadcast_sub(&self.mean)?.broadcast_div(&self.std)?)
    }

    /// `[B, C, H, W]` → `[B, N, p·p·C]`, patches in row-major order, (p, q, c) inside a patch.
    pub fn patchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let (g, p) = (self.cfg.grid(), self.cfg.patch_size);
        Ok(x.reshape(vec![b, c, g, p, g, p])?
            .permute(vec![0, 2, 4, 3, 5, 1])?
            .reshape((b, g * g, p * p * c))?)
    }

    /// Inverse of [`Mae::patchify`].
    pub fn unpatchify(&self, x: &Tensor) -> Result<Tensor> {
        let (b, _, _) = x.dims3()?;
        let (g, p, c) = (self.cfg.grid(), self.cfg.patch_size, self.cfg.num_channels);
        Ok(x.reshape(vec![b, g, g, p, p, c])?
            .permute(vec![0, 5, 1, 3, 2, 4])?
            .reshape((b, c, g * p, g * p))?)
    }

    /// Patch embedding as one matmul (the conv has kernel = stride = patch size), plus positions.
    fn embed_patches(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        let (g, p, h) = (self.cfg.grid(), self.cfg.patch_size, self.cfg.hidden_size);
        let cols = x
            .reshape(vec![b, c, g, p, g, p])?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .reshape((b * g * g, c * p * p))?;
        let w = self.patch_weight.reshape((h, c * p * p))?;
        let e = cols
            .matmul(&w.t()?)?
            .broadcast_add(&self.patch_bias)?
            .reshape((b, g * g, h))?;
        let pos = self.position_embeddings.narrow(1, 1, g * g)?;
        Ok(e.broadcast_add(&pos)?)
    }

    /// Encoder on the visible patches: hidden states and the final normalised embedding.
    pub fn encode_detailed(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        mode: Mode,
    ) -> Result<(Vec<Tensor>, Tensor)> {
        let x = self.normalize(pixels)?;
        let (b, _, _, _) = x.dims4()?;
        let h = self.cfg.hidden_size;
        let e = self.embed_patches(&x)?;
        let keep = mask.num_visible();
        let ids = mask
            .visible_ids(x.device())?
            .unsqueeze(2)?
            .broadcast_as((b, keep, h))?
            .contiguous()?;
        let visible = e.contiguous()?.gather(&ids, 1)?;
        let cls = (&self.cls_token + self.position_embeddings.narrow(1, 0, 1)?)?
            .broadcast_as((b, 1, h))?;
        let mut hs = Tensor::cat(&[&cls, &visible], 1)?;
        let mut states = vec![hs.clone()];
        for layer in &self.layers {
            hs = layer.forward(&hs, mode)?;
            states.push(hs.clone());
        }
        let last = self.layernorm.forward(&hs, mode)?;
        Ok((states, last))
    }

    /// Decoder logits `[B, N, p·p·C]` from the encoder embedding.
    pub fn decode_logits(&self, latent: &Tensor, mask: &BatchMask, mode: Mode) -> Result<Tensor> {
        let (b, t, _) = latent.dims3()?;
        let (n, hd) = (self.cfg.num_patches(), self.cfg.decoder_hidden_size);
        let x = self.decoder_embed.forward(latent)?;
        let tokens = x.narrow(1, 1, t - 1)?;
        let mask_tokens = self.mask_token.broadcast_as((b, n + 1 - t, hd))?;
        let x_ = Tensor::cat(&[&tokens, &mask_tokens], 1)?;
        let restore = mask
            .ids_restore(x.device())?
            .unsqueeze(2)?
            .broadcast_as((b, n, hd))?
            .contiguous()?;
        let x_ = x_.contiguous()?.gather(&restore, 1)?;
        let mut hs =
            Tensor::cat(&[&x.narrow(1, 0, 1)?, &x_], 1)?.broadcast_add(&self.decoder_pos_embed)?;
        for layer in &self.decoder_layers {
            hs = layer.forward(&hs, mode)?;
        }
        let hs = self.decoder_norm.forward(&hs, mode)?;
        let logits = self.decoder_pred.forward(&hs)?;
        Ok(logits.narrow(1, 1, n)?)
    }

    /// The whole forward pass (transformers' `ViTMAEForPreTraining.forward` with a given mask).
    pub fn forward_detailed(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        mode: Mode,
    ) -> Result<MaeOutput> {
        let (hidden_states, last) = self.encode_detailed(pixels, mask, mode)?;
        let logits = self.decode_logits(&last, mask, mode)?;
        Ok(MaeOutput {
            hidden_states,
            last_hidden_state: last,
            logits,
        })
    }

    /// The per-patch regression target (normalised pixels; per-patch standardised if
    /// `norm_pix_loss`, with the unbiased variance as transformers computes it).
    fn target_patches(&self, target: &Tensor) -> Result<Tensor> {
        let t = self.patchify(&self.normalize(target)?)?;
        if !self.cfg.norm_pix_loss {
            return Ok(t);
        }
        let n = t.dim(D::Minus1)? as f64;
        let mean = t.mean_keepdim(D::Minus1)?;
        let c = t.broadcast_sub(&mean)?;
        let var = (c.sqr()?.sum_keepdim(D::Minus1)? / (n - 1.0))?;
        Ok(c.broadcast_div(&(var + 1e-6)?.sqrt()?)?)
    }

    /// MSE over the hidden patches (transformers' `forward_loss`).
    pub fn patch_loss(&self, logits: &Tensor, target: &Tensor, mask: &BatchMask) -> Result<Tensor> {
        let t = self.target_patches(target)?;
        let per_patch = (logits - t)?.sqr()?.mean(D::Minus1)?;
        let m = mask.patch_mask(logits.device())?;
        Ok(((per_patch * &m)?.sum_all()? / m.sum_all()?.to_scalar::<f32>()? as f64)?)
    }

    /// Logits → image on the [0, 1] scale. With `norm_pix_loss`, patches are un-standardised with
    /// the statistics of `reference`'s patches (what transformers' examples do to visualise).
    pub fn logits_to_pixels(&self, logits: &Tensor, reference: Option<&Tensor>) -> Result<Tensor> {
        let logits = if self.cfg.norm_pix_loss {
            let r = reference
                .context("norm_pix_loss models need the reference image to un-normalise")?;
            let t = self.patchify(&self.normalize(r)?)?;
            let n = t.dim(D::Minus1)? as f64;
            let mean = t.mean_keepdim(D::Minus1)?;
            let var = (t.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n - 1.0))?;
            logits
                .broadcast_mul(&(var + 1e-6)?.sqrt()?)?
                .broadcast_add(&mean)?
        } else {
            logits.clone()
        };
        let x = self.unpatchify(&logits)?;
        Ok(x.broadcast_mul(&self.std)?.broadcast_add(&self.mean)?)
    }

    /// Random MAE masks: each image hides `round_down(N · ratio)` patches chosen uniformly.
    pub fn random_masks(
        &self,
        batch: usize,
        ratio: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<BatchMask> {
        let n = self.cfg.num_patches();
        let keep = ((n as f64) * (1.0 - ratio)) as usize;
        let keep = keep.clamp(1, n - 1);
        let masks = (0..batch)
            .map(|_| {
                let mut idx: Vec<usize> = (0..n).collect();
                idx.shuffle(rng);
                let mut hidden = vec![true; n];
                for &i in &idx[..keep] {
                    hidden[i] = false;
                }
                PatchMask {
                    grid: self.cfg.grid(),
                    hidden,
                }
            })
            .collect();
        BatchMask::new(masks)
    }
}

impl I2IModel for Mae {
    fn config(&self) -> &FamilyConfig {
        &self.family_cfg
    }
    fn image_size(&self) -> usize {
        self.cfg.image_size
    }
    fn encode(&self, pixels: &Tensor, mask: &BatchMask, mode: Mode) -> Result<Tensor> {
        Ok(self.encode_detailed(pixels, mask, mode)?.1)
    }
    fn decode(&self, embedding: &Tensor, mask: &BatchMask, mode: Mode) -> Result<Tensor> {
        let logits = self.decode_logits(embedding, mask, mode)?;
        anyhow::ensure!(
            !self.cfg.norm_pix_loss,
            "this MAE predicts per-patch standardised pixels (norm_pix_loss); use inpaint_with_reference"
        );
        self.logits_to_pixels(&logits, None)
    }
    fn reconstruction_loss(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        target: &Tensor,
        mode: Mode,
    ) -> Result<Tensor> {
        let emb = self.encode(pixels, mask, mode)?;
        let logits = self.decode_logits(&emb, mask, mode)?;
        self.patch_loss(&logits, target, mask)
    }
    fn pretrain_loss(
        &self,
        pixels: &Tensor,
        mask_ratio: f64,
        rng: &mut ChaCha8Rng,
    ) -> Result<Tensor> {
        let mask = self.random_masks(pixels.dim(0)?, mask_ratio, rng)?;
        self.reconstruction_loss(pixels, &mask, pixels, Mode::Train)
    }
    /// With `norm_pix_loss`, hidden patches are un-standardised with the statistics of the input's
    /// own patches, as transformers' examples do (the hidden patches' true statistics are used:
    /// a visualisation convention, not blind inpainting).
    fn predict(&self, pixels: &Tensor, mask: &BatchMask) -> Result<Tensor> {
        let emb = self.encode(pixels, mask, Mode::Infer)?;
        let logits = self.decode_logits(&emb, mask, Mode::Infer)?;
        self.logits_to_pixels(&logits, Some(pixels))
    }
    fn params(&self) -> &Params {
        &self.params
    }
}

/// An MAE checkpoint: its config (with the preprocessor's normalisation) and checked weights.
pub fn load_checkpoint(
    ck: &super::checkpoint::Checkpoint,
    device: &Device,
) -> Result<(MaeConfig, Weights)> {
    let text = std::fs::read_to_string(&ck.config)
        .with_context(|| format!("reading {}", ck.config.display()))?;
    let mut cfg = MaeConfig::from_json(&text)
        .with_context(|| format!("{} ({})", ck.config.display(), ck.origin))?;
    if let Some((mean, std)) = super::checkpoint::normalisation(ck.preprocessor.as_deref())? {
        cfg.image_mean = mean;
        cfg.image_std = std;
    }
    let mut weights = super::checkpoint::load_tensors(&ck.weights, device)?;
    check_names(&cfg, &weights)
        .with_context(|| format!("checkpoint {} ({})", ck.origin, ck.weights.display()))?;
    // Keep only what the model uses (checkpoints may carry extra buffers).
    let wanted: std::collections::HashSet<String> =
        expected_shapes(&cfg).into_iter().map(|(n, _)| n).collect();
    weights.retain(|k, _| wanted.contains(k));
    Ok((cfg, weights))
}

/// Every expected tensor name with its shape, in transformers' naming.
pub fn expected_shapes(cfg: &MaeConfig) -> Vec<(String, Vec<usize>)> {
    let (h, hd, n, p, c) = (
        cfg.hidden_size,
        cfg.decoder_hidden_size,
        cfg.num_patches(),
        cfg.patch_size,
        cfg.num_channels,
    );
    let mut v: Vec<(String, Vec<usize>)> = vec![
        ("vit.embeddings.cls_token".into(), vec![1, 1, h]),
        (
            "vit.embeddings.position_embeddings".into(),
            vec![1, n + 1, h],
        ),
        (
            "vit.embeddings.patch_embeddings.projection.weight".into(),
            vec![h, c, p, p],
        ),
        (
            "vit.embeddings.patch_embeddings.projection.bias".into(),
            vec![h],
        ),
        ("vit.layernorm.weight".into(), vec![h]),
        ("vit.layernorm.bias".into(), vec![h]),
        ("decoder.mask_token".into(), vec![1, 1, hd]),
        ("decoder.decoder_pos_embed".into(), vec![1, n + 1, hd]),
        ("decoder.decoder_embed.weight".into(), vec![hd, h]),
        ("decoder.decoder_embed.bias".into(), vec![hd]),
        ("decoder.decoder_norm.weight".into(), vec![hd]),
        ("decoder.decoder_norm.bias".into(), vec![hd]),
        ("decoder.decoder_pred.weight".into(), vec![p * p * c, hd]),
        ("decoder.decoder_pred.bias".into(), vec![p * p * c]),
    ];
    let layer = |prefix: String, d: usize, inter: usize, v: &mut Vec<(String, Vec<usize>)>| {
        for (name, shape) in [
            ("attention.attention.query.weight", vec![d, d]),
            ("attention.attention.key.weight", vec![d, d]),
            ("attention.attention.value.weight", vec![d, d]),
            ("attention.output.dense.weight", vec![d, d]),
            ("attention.output.dense.bias", vec![d]),
            ("intermediate.dense.weight", vec![inter, d]),
            ("intermediate.dense.bias", vec![inter]),
            ("output.dense.weight", vec![d, inter]),
            ("output.dense.bias", vec![d]),
            ("layernorm_before.weight", vec![d]),
            ("layernorm_before.bias", vec![d]),
            ("layernorm_after.weight", vec![d]),
            ("layernorm_after.bias", vec![d]),
        ] {
            v.push((format!("{prefix}.{name}"), shape));
        }
        if cfg.qkv_bias {
            for q in ["query", "key", "value"] {
                v.push((format!("{prefix}.attention.attention.{q}.bias"), vec![d]));
            }
        }
    };
    for i in 0..cfg.num_hidden_layers {
        layer(
            format!("vit.encoder.layer.{i}"),
            h,
            cfg.intermediate_size,
            &mut v,
        );
    }
    for i in 0..cfg.decoder_num_hidden_layers {
        layer(
            format!("decoder.decoder_layers.{i}"),
            hd,
            cfg.decoder_intermediate_size,
            &mut v,
        );
    }
    v.sort();
    v
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
