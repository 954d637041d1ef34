//! Masked autoencoder (He et al. 2022) with the architecture and weight names of transformers'
//! `ViTMAEForPreTraining`: `vit.embeddings.*`, `vit.encoder.layer.N.*`, `vit.layernorm.*`,
//! `decoder.*`. The quickstart's tiny model and `facebook/vit-mae-large` are the same code with a
//! different [`MaeConfig`] (deserialisable from the upstream `config.json`).
//!
//! Masking is given explicitly (a [`BatchMask`]): visible patches are kept in ascending patch order,
//! which is what transformers produces for `noise = idx / N` on visible and `1 + idx / N` on hidden
//! patches, so hidden states compare one to one.
//!
//! `config.rs`: the architecture; `weights.rs`: names, shapes, checkpoints, initialisation.

mod config;
mod family;
mod weights;

pub use config::{MaeConfig, CONFIG_FIELDS};
pub use weights::{
    check_names, checkpoint_config, expected_shapes, init_weights, load_checkpoint,
    load_checkpoint_weights, normalise_layout, HUB_LAYOUT, TF5_LAYOUT,
};

use super::{Embedding, Family, GenerateOptions, I2IModel, ModelInput, Params, Role, Weights};
use crate::masks::{BatchMask, PatchMask};
use crate::nn::{Activation, LayerNorm, Linear, Mode, SelfAttention};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var, D};
use candle_nn::VarBuilder;
use rand_chacha::ChaCha8Rng;

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
            attention: SelfAttention::new(
                Linear::load_as_stored(a.pp("query"), h, h, cfg.qkv_bias)?,
                Linear::load_as_stored(a.pp("key"), h, h, cfg.qkv_bias)?,
                Linear::load_as_stored(a.pp("value"), h, h, cfg.qkv_bias)?,
                Linear::load(att.pp("output").pp("dense"), h, h, true)?,
                heads,
            ),
            layernorm_before: LayerNorm::load(vb.pp("layernorm_before"), h, cfg.layer_norm_eps)?,
            layernorm_after: LayerNorm::load(vb.pp("layernorm_after"), h, cfg.layer_norm_eps)?,
            intermediate: Linear::load(vb.pp("intermediate").pp("dense"), h, inter, true)?,
            output: Linear::load(vb.pp("output").pp("dense"), inter, h, true)?,
            act: Activation::from_hf(&cfg.hidden_act)?,
        })
    }

    /// `[B, T, H]` → `[B, T, H]`, the tokens handled as `[B·T, H]` rows inside (see
    /// `nn::Linear::forward`).
    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x = x.reshape((b * t, d))?;
        let h = (self.attention.forward_rows(
            &self.layernorm_before.forward(&x, mode)?,
            b,
            t,
            mode,
        )? + x)?;
        let m = self.act.forward(
            &self
                .intermediate
                .forward(&self.layernorm_after.forward(&h, mode)?)?,
        )?;
        Ok((self.output.forward(&m)? + h)?.reshape((b, t, d))?)
    }
}

/// `ViTMAEForPreTraining`.
pub struct Mae {
    cfg: MaeConfig,
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
        check_names(&cfg, weights)?;
        let (vb, params) = super::var_builder(weights, trainable, device, |n| Some(role_of(n)))?;
        Self::load(cfg, vb, params, device)
    }

    /// The modules, each asking `vb` for its weights under transformers' names (the one place
    /// those names are written: [`expected_shapes`] records them from here).
    pub(crate) fn load(
        cfg: MaeConfig,
        vb: VarBuilder,
        params: Params,
        device: &Device,
    ) -> Result<Self> {
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
        let (errors, m) = self.hidden_patch_errors(logits, target, mask)?;
        Ok((errors.sum_all()? / m.sum_all()?.to_scalar::<f32>()? as f64)?)
    }

    /// Each patch's mean squared error, zero where the patch is visible, `[B, N]`; and the
    /// hidden-patch mask `[B, N]`.
    fn hidden_patch_errors(
        &self,
        logits: &Tensor,
        target: &Tensor,
        mask: &BatchMask,
    ) -> Result<(Tensor, Tensor)> {
        let t = self.target_patches(target)?;
        let per_patch = (logits - t)?.sqr()?.mean(D::Minus1)?;
        let m = mask.patch_mask(logits.device())?;
        Ok(((per_patch * &m)?, m))
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

    /// MAE's random masking (transformers' `random_masking`): each image keeps
    /// `int(N · (1 − mask_ratio))` patches, chosen uniformly; the choice is a function of the
    /// image's key, so it does not depend on the batch it is in.
    pub fn random_masks(&self, keys: &[u64]) -> Result<BatchMask> {
        let n = self.cfg.num_patches();
        let keep = ((n as f64) * (1.0 - self.cfg.mask_ratio)) as usize;
        let keep = keep.clamp(1, n - 1);
        // The kept patches are the complement of a uniform random hidden subset.
        let masks = keys
            .iter()
            .map(|&key| {
                let mut m = PatchMask::random(self.cfg.grid(), keep, key, 0x6d61_6521);
                m.hidden.iter_mut().for_each(|h| *h = !*h);
                m
            })
            .collect();
        BatchMask::new(masks)
    }

    /// The prediction as pixels (see [`Mae::logits_to_pixels`]).
    fn predict_pixels(&self, pixels: &Tensor, mask: &BatchMask) -> Result<Tensor> {
        let input = ModelInput::plain(pixels, mask);
        let logits = self.output(&input, Mode::Infer)?;
        self.logits_to_pixels(&logits, Some(pixels))
    }
}

impl I2IModel for Mae {
    fn image_size(&self) -> usize {
        self.cfg.image_size()
    }
    fn mask_grid(&self) -> usize {
        self.cfg.mask_grid()
    }
    fn training_masks(&self, keys: &[u64], _rng: &mut ChaCha8Rng) -> Result<BatchMask> {
        self.random_masks(keys)
    }
    /// The final LayerNorm's output over the class token and the visible patches.
    fn encode(&self, input: &ModelInput, mode: Mode) -> Result<Embedding> {
        Ok(Embedding::one(
            self.encode_detailed(&input.pixels, &input.mask, mode)?.1,
        ))
    }
    /// Decoder logits `[B, N, p·p·C]`: every patch's prediction in normalised pixel space.
    fn output(&self, input: &ModelInput, mode: Mode) -> Result<Tensor> {
        let emb = self.encode_detailed(&input.pixels, &input.mask, mode)?.1;
        self.decode_logits(&emb, &input.mask, mode)
    }
    /// MSE on the hidden patches (transformers' `forward_loss`).
    fn training_loss(&self, input: &ModelInput, target: &Tensor, mode: Mode) -> Result<Tensor> {
        let logits = self.output(input, mode)?;
        self.patch_loss(&logits, target, &input.mask)
    }
    /// One pass over the batch: each row's loss is `patch_loss` of that image alone (rows do not
    /// interact in the network; the sum over an image's patches and the scaling by its hidden
    /// count are the one-image ones), up to the rounding of the batch's matrix products.
    fn per_image_loss(&self, input: &ModelInput, mode: Mode) -> Result<Vec<f64>> {
        let logits = self.output(input, mode)?;
        let (errors, _) = self.hidden_patch_errors(&logits, &input.pixels, &input.mask)?;
        let sums = errors.sum(D::Minus1)?;
        let hidden = input.mask.masks[0].num_hidden() as f32;
        Ok((sums / hidden as f64)?
            .to_dtype(candle_core::DType::F64)?
            .to_vec1::<f64>()?)
    }
    fn loss_denominator(&self, input: &ModelInput) -> f64 {
        input.mask.total_hidden() as f64
    }
    /// One decoder pass; with `norm_pix_loss`, hidden patches are un-standardised with the
    /// statistics of the input's own patches, as transformers' examples do (a visualisation
    /// convention, not blind inpainting).
    fn generate(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        _rngs: &mut [ChaCha8Rng],
        opts: &GenerateOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let pred = self.predict_pixels(pixels, mask)?;
        on_step(1, 1);
        crate::masks::composite::composite(
            pixels,
            &pred,
            mask,
            self.cfg.hole_fill(),
            opts.composite,
        )
    }
    fn predict(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        _rngs: &mut [ChaCha8Rng],
    ) -> Result<Tensor> {
        self.predict_pixels(pixels, mask)
    }
    /// As the MAE recipe (timm's `add_weight_decay` with MAE's skip list): matrices decay;
    /// biases, norms, the class and mask tokens and the position embeddings do not.
    fn decays(&self, name: &str, var: &Var) -> bool {
        var.rank() >= 2
            && !name.ends_with("cls_token")
            && !name.ends_with("mask_token")
            && !name.ends_with("position_embeddings")
            && !name.ends_with("decoder_pos_embed")
    }
    fn params(&self) -> &Params {
        &self.params
    }
}
