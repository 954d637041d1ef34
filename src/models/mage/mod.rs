//! MAGE (Li et al. 2023) over its VQ-GAN tokenizer, as the paper's MAGE fork (branch `i2i`)
//! builds, trains and evaluates it: `family: mage`.
//!
//! - `vqgan.rs`: the tokenizer (frozen in every method); `transformer.rs`: the token embedding,
//!   encoder, decoder and MLM head; `maskgit.rs`: the iterative decoding of the evaluation, kept
//!   apart from the network; `weights.rs`: names, containers, checkpoints, initialisation;
//!   `config.rs`: the official settings.
//! - The mask grid is the token grid. An evaluation mask's hidden cells are the pixel hole: its
//!   pixels are filled with the ImageNet mean before tokenizing, and the token mask is the hole
//!   grown by `inpaint.token_margin` tokens the way the official script grows it.
//! - Training masks: a ratio per batch from the truncated normal, `ceil(N · ratio)` tokens
//!   masked per image, `ceil(N · mask_ratio_min)` of them dropped from the encoder input (drawn
//!   in [`I2IModel::prepare`] so student and teacher drop the same).
//! - The encoder is the token embedding, the blocks and `norm`; the embedding the paper's loss
//!   compares is its output over the kept positions.

mod config;
mod family;
mod maskgit;
mod quality;
mod tokenizer_pretrain;
mod transformer;
mod vqgan;
mod weights;

pub use config::{DdConfig, InpaintConfig, MageConfig, TransformerConfig, VqConfig, IMAGENET_MEAN};
pub use maskgit::MaskGit;
pub use transformer::{keep_all, masked_cross_entropy, Tokens, Transformer};
pub use vqgan::{VqGan, VqLoss};
pub use weights::{
    check_names, expected_shapes, init_weights, load_checkpoint_weights, LAYOUT, VQ_PREFIX,
};

use super::{Embedding, Family, GenerateOptions, I2IModel, ModelInput, Params, Role, Weights};
use crate::masks::{BatchMask, PatchMask};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;

fn role_of(name: &str) -> Role {
    if name.starts_with("token_emb.") || name.starts_with("blocks.") || name.starts_with("norm.") {
        Role::Encoder
    } else if name.starts_with("decoder_embed.")
        || name.starts_with("decoder_blocks.")
        || name.starts_with("decoder_norm.")
        || name == "decoder_pos_embed_learned"
        || name.starts_with("mlm_layer.")
    {
        Role::Decoder
    } else {
        // The tokenizer, and the tensors the official forward never uses.
        Role::Frozen
    }
}

/// MAGE with its tokenizer.
pub struct Mage {
    cfg: MageConfig,
    pub vq: VqGan,
    pub net: Transformer,
    params: Params,
    /// Tokens of images seen before, by a hash of their pixels: the tokenizer is frozen, and
    /// training revisits the same images every epoch (tokenizing dominates a small model's step).
    token_cache: std::sync::Mutex<HashMap<u64, Vec<u32>>>,
}

/// Images cached at most (beyond it, tokens are computed every time).
const TOKEN_CACHE_IMAGES: usize = 200_000;

impl Mage {
    pub fn new(
        cfg: MageConfig,
        weights: &Weights,
        trainable: bool,
        device: &Device,
    ) -> Result<Self> {
        check_names(&cfg, weights)?;
        // Frozen tensors (the tokenizer) stay plain tensors even in a trainable model: built
        // from `Var`s, every tokenizer pass would record its graph and hold all its activations
        // (and im2col buffers) until the pass ends.
        let (vb, params) = super::var_builder(weights, trainable, device, |n| Some(role_of(n)))?;
        Ok(Self {
            vq: VqGan::new(vb.pp("vqgan"), &cfg.vqgan)?,
            net: Transformer::new(vb, &cfg)?,
            cfg,
            params,
            token_cache: Default::default(),
        })
    }

    pub fn mage_config(&self) -> &MageConfig {
        &self.cfg
    }

    /// Token ids `[B, N]` (u32) of images in [0, 1].
    pub fn tokenize(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.vq.encode(&pixels.detach())?.tokens)
    }

    /// [`Mage::tokenize`] through the cache of images seen before (for training batches that
    /// come back every epoch; fresh noise images just miss).
    pub fn tokenize_cached(&self, pixels: &Tensor) -> Result<Tensor> {
        let b = pixels.dim(0)?;
        let n = self.cfg.num_tokens();
        let flat = pixels.flatten_from(1)?.to_vec2::<f32>()?;
        let keys: Vec<u64> = flat
            .iter()
            .map(|row| {
                use std::hash::Hasher;
                let mut h = std::collections::hash_map::DefaultHasher::new();
                for v in row {
                    h.write_u32(v.to_bits());
                }
                h.finish()
            })
            .collect();
        let mut out: Vec<Option<Vec<u32>>> = {
            let cache = self.token_cache.lock().expect("token cache");
            keys.iter().map(|k| cache.get(k).cloned()).collect()
        };
        let missing: Vec<u32> = (0..b as u32)
            .filter(|&i| out[i as usize].is_none())
            .collect();
        if !missing.is_empty() {
            let idx = Tensor::from_vec(missing.clone(), missing.len(), pixels.device())?;
            let fresh = self
                .tokenize(&pixels.index_select(&idx, 0)?)?
                .to_vec2::<u32>()?;
            let mut cache = self.token_cache.lock().expect("token cache");
            for (i, t) in missing.into_iter().zip(fresh) {
                if cache.len() < TOKEN_CACHE_IMAGES {
                    cache.insert(keys[i as usize], t.clone());
                }
                out[i as usize] = Some(t);
            }
        }
        let ids: Vec<u32> = out.into_iter().flat_map(|t| t.expect("filled")).collect();
        Ok(Tensor::from_vec(ids, (b, n), pixels.device())?)
    }

    /// The token mask of an evaluation mask (see [`token_mask`]).
    pub fn token_mask(&self, mask: &PatchMask) -> Vec<bool> {
        token_mask(&self.cfg, mask)
    }

    /// The images with the hole's pixels set to the ImageNet mean (the official evaluation
    /// input).
    pub fn fill_hole(&self, pixels: &Tensor, mask: &BatchMask) -> Result<Tensor> {
        let (_, _, s, _) = pixels.dims4()?;
        let pm = mask.pixel_mask(s, pixels.device())?;
        let fill = Tensor::from_vec(
            IMAGENET_MEAN.iter().map(|&v| v as f32).collect::<Vec<_>>(),
            (1, 3, 1, 1),
            pixels.device(),
        )?
        .broadcast_as(pixels.shape())?
        .contiguous()?;
        crate::masks::paste(pixels, &fill, &pm)
    }

    /// The token batch of a prepared input: cached tokens and kept positions if `prepare` made
    /// them, else the input's pixels tokenized with nothing dropped.
    fn tokens_of(&self, input: &ModelInput) -> Result<Tokens> {
        let masked: Vec<Vec<bool>> = input.mask.masks.iter().map(|m| m.hidden.clone()).collect();
        let (ids, keep) = match input.cond.as_slice() {
            [ids, keep] => (ids.clone(), keep.to_dtype(DType::U32)?.to_vec2::<u32>()?),
            _ => {
                let ids = self.tokenize(&input.pixels)?;
                let (b, n) = ids.dims2()?;
                (ids, keep_all(b, n))
            }
        };
        Ok(Tokens { ids, masked, keep })
    }

    /// Logits `[B, N + 1, vocab]` and the token batch of an input.
    pub fn logits(&self, input: &ModelInput, mode: Mode) -> Result<(Tensor, Tokens)> {
        let tokens = self.tokens_of(input)?;
        let latent = self.net.encode(&tokens, mode)?;
        let logits = self.net.decode(&latent, &tokens, mode)?;
        Ok((logits, tokens))
    }

    /// A truncated-normal draw (rejection sampling: exact).
    fn mask_ratio(&self, rng: &mut ChaCha8Rng) -> f64 {
        let t = &self.cfg.mage;
        loop {
            let z = crate::util::normal_vec(rng, 1)[0] as f64;
            let r = t.mask_ratio_mu + t.mask_ratio_std * z;
            if r >= t.mask_ratio_min && r <= t.mask_ratio_max {
                return r;
            }
        }
    }

    /// MaskGIT-inpaint the hole of `mask`: token ids per image.
    pub fn inpaint_tokens(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rngs: &mut [ChaCha8Rng],
        greedy: bool,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<u32>>> {
        let masked_px = self.fill_hole(pixels, mask)?;
        let ids = self.tokenize(&masked_px)?.to_vec2::<u32>()?;
        let token_masks: Vec<Vec<bool>> = mask.masks.iter().map(|m| self.token_mask(m)).collect();
        MaskGit {
            num_iter: self.cfg.inpaint.num_iter,
            choice_temperature: self.cfg.inpaint.choice_temperature,
            greedy,
        }
        .run(
            &self.net,
            &ids,
            &token_masks,
            rngs,
            pixels.device(),
            on_step,
        )
    }

    /// Decode token ids to pixels (not clamped).
    pub fn decode_ids(&self, ids: &[Vec<u32>], device: &Device) -> Result<Tensor> {
        let (b, n) = (ids.len(), ids[0].len());
        self.vq
            .decode_tokens(&Tensor::from_vec(ids.concat(), (b, n), device)?)
    }
}

/// The token mask of an evaluation mask: the hole grown by `token_margin` tokens per side
/// exactly as the official script grows its pixel boxes (`[⌊start/p⌋ − m, ⌊end/p⌋ + m)` per
/// box, clipped to the grid).
pub fn token_mask(cfg: &MageConfig, mask: &PatchMask) -> Vec<bool> {
    let g = cfg.grid();
    let p = cfg.mage.patch_size;
    let size = cfg.mage.img_size;
    let m = cfg.inpaint.token_margin as isize;
    let mut out = vec![false; g * g];
    let mut mark = |top: usize, bottom: usize, left: usize, right: usize| {
        let r0 = ((top / p) as isize - m).max(0) as usize;
        let r1 = (((bottom / p) as isize + m).max(0) as usize).min(g);
        let c0 = ((left / p) as isize - m).max(0) as usize;
        let c1 = (((right / p) as isize + m).max(0) as usize).min(g);
        for r in r0..r1 {
            for c in c0..c1 {
                out[r * g + c] = true;
            }
        }
    };
    match mask.border {
        Some((num, den)) => {
            let w = crate::masks::border_px(size, num, den);
            mark(0, w, 0, size);
            mark(size - w, size, 0, size);
            mark(0, size, 0, w);
            mark(0, size, size - w, size);
        }
        None => {
            let cell = size / mask.grid;
            for (i, &h) in mask.hidden.iter().enumerate() {
                if h {
                    let (r, c) = (i / mask.grid, i % mask.grid);
                    mark(r * cell, (r + 1) * cell, c * cell, (c + 1) * cell);
                }
            }
        }
    }
    out
}

impl I2IModel for Mage {
    fn image_size(&self) -> usize {
        self.cfg.image_size()
    }
    fn mask_grid(&self) -> usize {
        self.cfg.mask_grid()
    }
    /// A ratio per batch from the truncated normal; per image, `ceil(N · ratio)` tokens chosen by
    /// the image's key.
    fn training_masks(&self, keys: &[u64], rng: &mut ChaCha8Rng) -> Result<BatchMask> {
        let n = self.cfg.num_tokens();
        let ratio = self.mask_ratio(rng);
        let hidden = ((n as f64 * ratio).ceil() as usize).clamp(1, n);
        BatchMask::new(
            keys.iter()
                .map(|&k| PatchMask::random(self.cfg.grid(), hidden, k, 0x6d61_6765))
                .collect(),
        )
    }
    /// Tokenizes once (student and teacher share the tokens) and draws which masked tokens are
    /// dropped from the encoder input: `min(ceil(N · mask_ratio_min), hidden)` per image,
    /// uniformly among its masked tokens.
    fn prepare(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rng: &mut ChaCha8Rng,
    ) -> Result<ModelInput> {
        let ids = self.tokenize_cached(pixels)?;
        let n = self.cfg.num_tokens();
        let drop = self.cfg.num_dropped().min(mask.masks[0].num_hidden());
        let mut keep = Vec::with_capacity(mask.len() * (n + 1 - drop));
        for m in &mask.masks {
            let mut hidden = m.hidden_ids();
            // Partial Fisher-Yates: the first `drop` of a uniform permutation.
            for i in 0..drop {
                let j = rng.random_range(i..hidden.len());
                hidden.swap(i, j);
            }
            let dropped: std::collections::HashSet<u32> = hidden[..drop].iter().copied().collect();
            keep.push(0u32);
            keep.extend(
                (0..n as u32)
                    .filter(|t| !dropped.contains(t))
                    .map(|t| t + 1),
            );
        }
        let keep = Tensor::from_vec(keep, (mask.len(), n + 1 - drop), pixels.device())?;
        Ok(ModelInput {
            pixels: pixels.clone(),
            mask: mask.clone(),
            cond: vec![ids, keep],
        })
    }
    /// Same masks and dropped tokens; the noise image tokenized.
    fn noise_input(&self, input: &ModelInput, noise: &Tensor) -> Result<ModelInput> {
        let mut cond = input.cond.clone();
        if cond.len() == 2 {
            cond[0] = self.tokenize(noise)?;
        }
        Ok(ModelInput {
            pixels: noise.clone(),
            mask: input.mask.clone(),
            cond,
        })
    }
    /// The encoder's output over the class token and the kept tokens.
    fn encode(&self, input: &ModelInput, mode: Mode) -> Result<Embedding> {
        let tokens = self.tokens_of(input)?;
        Ok(Embedding::one(self.net.encode(&tokens, mode)?))
    }
    /// The logits `[B, N + 1, vocab]` (what the official Retain Label compares).
    fn output(&self, input: &ModelInput, mode: Mode) -> Result<Tensor> {
        Ok(self.logits(input, mode)?.0)
    }
    /// Label-smoothed cross-entropy on the masked tokens toward `target`'s tokens.
    fn training_loss(&self, input: &ModelInput, target: &Tensor, mode: Mode) -> Result<Tensor> {
        let (logits, tokens) = self.logits(input, mode)?;
        let gt = if target.id() == input.pixels.id() {
            tokens.ids.clone()
        } else {
            self.tokenize(target)?
        };
        let w = transformer::mask_tensor(&tokens.masked, logits.device())?;
        masked_cross_entropy(
            &logits.narrow(1, 1, self.cfg.num_tokens())?,
            &gt,
            &w,
            self.cfg.codebook_size(),
            self.cfg.mage.label_smoothing,
        )
    }
    fn loss_denominator(&self, input: &ModelInput) -> f64 {
        input.mask.total_hidden() as f64
    }
    /// Noisy Label's forget term as the official code: cross-entropy toward random tokens drawn
    /// from a normal with the batch's token mean and (unbiased) std, rounded and clamped to the
    /// codebook.
    fn random_target_loss(
        &self,
        input: &ModelInput,
        _noise: &Tensor,
        rng: &mut ChaCha8Rng,
        mode: Mode,
    ) -> Result<Tensor> {
        let (logits, tokens) = self.logits(input, mode)?;
        let gt: Vec<f64> = tokens
            .ids
            .flatten_all()?
            .to_vec1::<u32>()?
            .into_iter()
            .map(|v| v as f64)
            .collect();
        let mean = gt.iter().sum::<f64>() / gt.len() as f64;
        let std = (gt.iter().map(|v| (v - mean).powi(2)).sum::<f64>()
            / (gt.len().max(2) - 1) as f64)
            .sqrt();
        let top = (self.cfg.codebook_size() - 1) as f64;
        let z = crate::util::normal_vec(rng, gt.len());
        let noisy: Vec<u32> = z
            .iter()
            .map(|&z| (z as f64 * std + mean).clamp(0.0, top).round() as u32)
            .collect();
        let noisy = Tensor::from_vec(noisy, tokens.ids.shape(), logits.device())?;
        let w = transformer::mask_tensor(&tokens.masked, logits.device())?;
        masked_cross_entropy(
            &logits.narrow(1, 1, self.cfg.num_tokens())?,
            &noisy,
            &w,
            self.cfg.codebook_size(),
            self.cfg.mage.label_smoothing,
        )
    }
    /// MaskGIT inpainting, decoding, then compositing.
    fn generate(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rngs: &mut [ChaCha8Rng],
        opts: &GenerateOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let ids = self.inpaint_tokens(pixels, mask, rngs, self.cfg.inpaint.greedy, on_step)?;
        let out = self.decode_ids(&ids, pixels.device())?;
        crate::masks::composite::composite(pixels, &out, mask, self.cfg.hole_fill(), opts.composite)
    }
    fn describe_generation(&self, opts: &GenerateOptions) -> String {
        let i = &self.cfg.inpaint;
        let sampler = if i.greedy {
            "greedy: argmax tokens, no Gumbel noise (deterministic; the official code samples)"
                .to_string()
        } else {
            format!(
                "sampled: tokens drawn from their logits' categorical, re-masking by confidence + Gumbel noise at temperature {} × (1 − r), one seeded stream per image (as the official code)",
                i.choice_temperature
            )
        };
        let ignored = opts
            .steps
            .map(|n| format!(" (generate.steps {n} ignored: MAGE runs inpaint.num_iter)"))
            .unwrap_or_default();
        format!(
            "generation: {}, MaskGIT {} iterations on the cosine schedule (official testpaint.py), {sampler}, token mask grown {} token(s) beyond the hole{ignored}",
            opts.composite.describe(self.image_size()),
            i.num_iter,
            i.token_margin
        )
    }
    /// One pass: every masked token's argmax, decoded.
    fn predict(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        _rngs: &mut [ChaCha8Rng],
    ) -> Result<Tensor> {
        let masked_px = self.fill_hole(pixels, mask)?;
        let ids = self.tokenize(&masked_px)?;
        let (b, n) = ids.dims2()?;
        let tokens = Tokens {
            ids: ids.clone(),
            masked: mask.masks.iter().map(|m| self.token_mask(m)).collect(),
            keep: keep_all(b, n),
        };
        let latent = self.net.encode(&tokens, Mode::Infer)?;
        let logits = self.net.decode(&latent, &tokens, Mode::Infer)?;
        let pred = logits
            .narrow(1, 1, n)?
            .narrow(2, 0, self.cfg.codebook_size())?
            .argmax(2)?
            .to_dtype(DType::U32)?
            .to_vec2::<u32>()?;
        let known = ids.to_vec2::<u32>()?;
        let ids: Vec<Vec<u32>> = pred
            .into_iter()
            .zip(known)
            .zip(&tokens.masked)
            .map(|((p, k), m)| {
                p.into_iter()
                    .zip(k)
                    .zip(m)
                    .map(|((p, k), &h)| if h { p } else { k })
                    .collect()
            })
            .collect();
        self.decode_ids(&ids, pixels.device())
    }
    fn quality(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rng: &mut ChaCha8Rng,
    ) -> Result<Vec<super::QualityFigure>> {
        quality::figures(self, pixels, mask, rng)
    }
    /// timm's `add_weight_decay` as the official recipe calls it: no decay for 1-D tensors and
    /// biases.
    fn decays(&self, name: &str, var: &Var) -> bool {
        var.rank() >= 2 && !name.ends_with(".bias")
    }
    fn params(&self) -> &Params {
        &self.params
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::masks::MaskSpec;

    fn cfg256() -> MageConfig {
        MageConfig::default()
    }

    /// The official script's token boxes (`testpaint.py`): `[⌊start/16⌋ − 1, ⌊end/16⌋ + 1)` per
    /// pixel box of the hole, for its centre and four-border outpainting geometries.
    fn official(boxes: &[(usize, usize, usize, usize)]) -> Vec<bool> {
        let mut m = vec![false; 256];
        for &(top, h, left, w) in boxes {
            let r0 = (top / 16).saturating_sub(1);
            let r1 = ((top + h) / 16 + 1).min(16);
            let c0 = (left / 16).saturating_sub(1);
            let c1 = ((left + w) / 16 + 1).min(16);
            for r in r0..r1 {
                for c in c0..c1 {
                    m[r * 16 + c] = true;
                }
            }
        }
        m
    }

    #[test]
    fn token_masks_grow_the_hole_as_the_official_evaluation() {
        let cfg = cfg256();
        for k in [4usize, 8] {
            let pm = MaskSpec::Center { k }.render(16, 0).unwrap();
            let s = (16 - k) / 2 * 16;
            assert_eq!(
                token_mask(&cfg, &pm),
                official(&[(s, k * 16, s, k * 16)]),
                "center:{k}"
            );
        }
        for r in 1..=13usize {
            let pm = MaskSpec::Outpaint { r }.render(16, 0).unwrap();
            let b = 8 * r;
            let want = official(&[
                (0, b, 0, 256),
                (256 - b, b, 0, 256),
                (0, 256, 0, b),
                (0, 256, 256 - b, b),
            ]);
            assert_eq!(token_mask(&cfg, &pm), want, "outpaint:{r}");
        }
    }

    pub(crate) fn tiny() -> (MageConfig, Mage) {
        let cfg = <MageConfig as Family>::tiny();
        let w = init_weights(&cfg, 0, &Device::Cpu).unwrap();
        let m = Mage::new(cfg.clone(), &w, true, &Device::Cpu).unwrap();
        (cfg, m)
    }

    /// Training masks: ratio ≥ mask_ratio_min, the same count per image; `prepare` drops
    /// `ceil(N · 0.5)` masked tokens per image, keeps the class token, and the tokens it caches
    /// equal a fresh tokenization.
    #[test]
    fn training_masks_and_prepare_follow_the_official_masking() {
        let (cfg, m) = tiny();
        let n = cfg.num_tokens();
        let mut rng = crate::util::rng("t", 0);
        let mut hidden_counts = vec![];
        for step in 0..50u64 {
            let keys: Vec<u64> = (0..4).map(|i| i + 10 * step).collect();
            let mask = m.training_masks(&keys, &mut rng).unwrap();
            let h = mask.masks[0].num_hidden();
            assert!(h >= n / 2 && h <= n, "{h}");
            hidden_counts.push(h);
        }
        assert!(
            hidden_counts.iter().any(|&h| h != hidden_counts[0]),
            "the ratio varies per batch"
        );
        let x = Tensor::rand(0f32, 1.0, (4, 3, 16, 16), &Device::Cpu).unwrap();
        let keys = [1u64, 2, 3, 4];
        let mask = m.training_masks(&keys, &mut rng).unwrap();
        let input = m.prepare(&x, &mask, &mut rng).unwrap();
        let keep = input.cond[1].to_vec2::<u32>().unwrap();
        for (k, pm) in keep.iter().zip(&mask.masks) {
            assert_eq!(k.len(), n + 1 - cfg.num_dropped());
            assert_eq!(k[0], 0);
            for p in 1..=n as u32 {
                if !k.contains(&p) {
                    assert!(pm.hidden[p as usize - 1], "a dropped token must be masked");
                }
            }
        }
        let fresh = m.tokenize(&x).unwrap().to_vec2::<u32>().unwrap();
        assert_eq!(input.cond[0].to_vec2::<u32>().unwrap(), fresh);
        // The cache answers the second time with the same tokens.
        assert_eq!(
            m.tokenize_cached(&x).unwrap().to_vec2::<u32>().unwrap(),
            fresh
        );
        // Every trainable encoder and decoder tensor gets a gradient from the training loss.
        let loss = m.training_loss(&input, &x, Mode::Train).unwrap();
        let g = loss.backward().unwrap();
        for (name, var, _) in &m.params().vars {
            let gv = g
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {name}"));
            let s = gv
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            // The word-embedding rows of unused labels and the first position may get none.
            if !name.contains("embeddings") {
                assert!(s > 0.0, "zero gradient for {name}");
            }
        }
    }

    /// Sampling with the same per-image streams is deterministic and independent of the batch.
    #[test]
    fn maskgit_sampling_is_deterministic_per_image() {
        let (cfg, m) = tiny();
        let x = Tensor::rand(0f32, 1.0, (3, 3, 16, 16), &Device::Cpu).unwrap();
        let grid = cfg.grid();
        let mask = MaskSpec::Center { k: 4 }.batch(grid, &[0, 1, 2]).unwrap();
        let rngs = |ids: &[u64]| -> Vec<ChaCha8Rng> {
            ids.iter().map(|&i| crate::util::rng("g", i)).collect()
        };
        let all = m
            .inpaint_tokens(&x, &mask, &mut rngs(&[0, 1, 2]), false, &mut |_, _| {})
            .unwrap();
        let again = m
            .inpaint_tokens(&x, &mask, &mut rngs(&[0, 1, 2]), false, &mut |_, _| {})
            .unwrap();
        assert_eq!(all, again);
        let one = m
            .inpaint_tokens(
                &x.narrow(0, 2, 1).unwrap(),
                &mask.head(1),
                &mut rngs(&[2]),
                false,
                &mut |_, _| {},
            )
            .unwrap();
        assert_eq!(
            one[0], all[2],
            "image 2 alone gives what it gave in the batch"
        );
    }
}
