//! The family-neutral model interface: what unlearning methods, the trainers and the evaluation
//! need from an image-to-image family, and nothing family-shaped.
//!
//! - A batch is prepared once per step ([`I2IModel::prepare`]): images, masks, and whatever
//!   randomness the family's forward pass draws (a diffusion timestep and its noise; MAGE's token
//!   drop). Student and teacher then see the same [`ModelInput`].
//! - The encoder's output is an [`Embedding`]: one tensor (MAE, MAGE) or a list (Palette's 13
//!   feature maps); the paper's loss sums the MSEs of its tensors.
//! - Generation is the family's own ([`I2IModel::generate`]): one pass for MAE, MaskGIT
//!   iterations for MAGE, ancestral sampling for diffusion; randomness comes from one seeded
//!   stream per image, so outputs do not depend on the batch size.
//! - Training masks, the mask grid, weight decay and the training loss are the family's.

use crate::masks::{BatchMask, Composite};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::{Tensor, Var};
use rand_chacha::ChaCha8Rng;

/// Which part of the model a parameter belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Encoder,
    Decoder,
    /// Buffers stored with the weights but never trained (fixed position embeddings).
    Frozen,
}

/// Which parameters a method (or a pre-training) trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Nothing (the original model).
    None,
    /// The encoder only; decoder and original model frozen.
    Encoder,
    /// Encoder and decoder.
    Full,
}

/// The parameters a scope trains, with the family's weight-decay decision.
pub fn trainable(model: &dyn I2IModel, scope: Scope) -> Vec<crate::train::TrainVar> {
    let roles: &[Role] = match scope {
        Scope::None => &[],
        Scope::Encoder => &[Role::Encoder],
        Scope::Full => &[Role::Encoder, Role::Decoder],
    };
    model
        .params()
        .with_roles(roles)
        .into_iter()
        .map(|(n, v)| {
            let d = model.decays(&n, &v);
            (n, v, d)
        })
        .collect()
}

/// Named parameters, sorted by name (candle's VarMap order is a HashMap's).
pub type Weights = crate::weights::Tensors;

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

/// One batch as a family's network sees it in a training step.
#[derive(Clone, Debug)]
pub struct ModelInput {
    /// `[B, 3, S, S]` in [0, 1].
    pub pixels: Tensor,
    pub mask: BatchMask,
    /// Randomness the family draws once per batch and shares between student and teacher
    /// (diffusion: noise levels and noise); empty for families without any.
    pub cond: Vec<Tensor>,
}

impl ModelInput {
    pub fn plain(pixels: &Tensor, mask: &BatchMask) -> Self {
        Self {
            pixels: pixels.clone(),
            mask: mask.clone(),
            cond: vec![],
        }
    }
    pub fn len(&self) -> usize {
        self.mask.len()
    }
    pub fn is_empty(&self) -> bool {
        self.mask.is_empty()
    }
    /// Batches of images joined into one (pixels, masks and per-step randomness along the
    /// batch).
    pub fn concat(parts: &[ModelInput]) -> Result<Self> {
        anyhow::ensure!(!parts.is_empty(), "no batch to join");
        let cat = |ts: Vec<&Tensor>| Tensor::cat(&ts, 0);
        Ok(Self {
            pixels: cat(parts.iter().map(|p| &p.pixels).collect())?,
            mask: BatchMask {
                masks: parts.iter().flat_map(|p| p.mask.masks.clone()).collect(),
            },
            cond: (0..parts[0].cond.len())
                .map(|i| cat(parts.iter().map(|p| &p.cond[i]).collect()))
                .collect::<candle_core::Result<_>>()?,
        })
    }
    /// Images `start .. start + len` (pixels, masks, and the per-step randomness, which is
    /// batch-first in every family).
    pub fn slice(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            pixels: self.pixels.narrow(0, start, len)?,
            mask: self.mask.slice(start, len),
            cond: self
                .cond
                .iter()
                .map(|t| t.narrow(0, start, len))
                .collect::<candle_core::Result<_>>()?,
        })
    }
}

/// An encoder embedding: the tensors the paper's loss compares.
#[derive(Clone, Debug)]
pub struct Embedding(pub Vec<Tensor>);

impl Embedding {
    pub fn one(t: Tensor) -> Self {
        Self(vec![t])
    }
    /// Σ over tensors of the mean squared difference (the paper's ‖·‖², summed over Palette's
    /// maps as the official code does).
    pub fn mse(&self, other: &Embedding) -> Result<Tensor> {
        anyhow::ensure!(
            self.0.len() == other.0.len() && !self.0.is_empty(),
            "embeddings with {} and {} tensors cannot be compared",
            self.0.len(),
            other.0.len()
        );
        let mut total: Option<Tensor> = None;
        for (a, b) in self.0.iter().zip(&other.0) {
            let m = crate::nn::mse(a, b)?;
            total = Some(match total {
                None => m,
                Some(t) => (t + m)?,
            });
        }
        Ok(total.expect("non-empty"))
    }
    /// Per-sample squared error, mean over each tensor's non-batch elements, summed over
    /// tensors: `[B]`.
    pub fn per_sample_mse(&self, other: &Embedding) -> Result<Tensor> {
        let mut total: Option<Tensor> = None;
        for (a, b) in self.0.iter().zip(&other.0) {
            let d = crate::nn::per_sample_mse(a, b)?;
            total = Some(match total {
                None => d,
                Some(t) => (t + d)?,
            });
        }
        total.ok_or_else(|| anyhow::anyhow!("empty embedding"))
    }
    /// The rows `idx` of every tensor.
    pub fn select(&self, idx: &Tensor) -> Result<Embedding> {
        Ok(Embedding(
            self.0
                .iter()
                .map(|t| t.contiguous()?.index_select(idx, 0))
                .collect::<candle_core::Result<_>>()?,
        ))
    }
    /// Concatenate two embeddings along the batch.
    pub fn cat(a: &Embedding, b: &Embedding) -> Result<Embedding> {
        Ok(Embedding(
            a.0.iter()
                .zip(&b.0)
                .map(|(x, y)| Tensor::cat(&[x, y], 0))
                .collect::<candle_core::Result<_>>()?,
        ))
    }
    pub fn detach(&self) -> Embedding {
        Embedding(self.0.iter().map(|t| t.detach()).collect())
    }
}

/// How to generate (`generate:` in the experiment file).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateOptions {
    /// Sampling steps where the family has steps (`None`: the family's default; ignored by
    /// one-pass families such as MAE).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// `paste` (default) or `blur` (the official VQ-GAN evaluation's compositing).
    pub composite: Composite,
}

impl GenerateOptions {
    /// For protocol strings of one-pass families (families that sample say more).
    pub fn describe(&self, size: usize) -> String {
        let mut s = format!("generation: one pass, {}", self.composite.describe(size));
        if let Some(n) = self.steps {
            s.push_str(&format!(" (generate.steps {n} ignored: one pass)"));
        }
        s
    }
}

/// One figure of a quality gate: it passes at `value <= limit`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct QualityFigure {
    pub name: String,
    pub value: f64,
    /// The largest value that passes; `None` for a diagnostic that explains the others.
    pub limit: Option<f64>,
    /// How it was computed, in a phrase.
    pub rule: String,
}

impl QualityFigure {
    pub fn passed(&self) -> bool {
        self.limit.is_none_or(|l| self.value <= l)
    }
}

/// The operations unlearning, training and evaluation need from a family.
pub trait I2IModel: Send + Sync {
    /// Image side in pixels.
    fn image_size(&self) -> usize;
    /// Cells per side of the grid masks are drawn on (patches, tokens, or pixels).
    fn mask_grid(&self) -> usize;
    /// The family's random training masks for a batch: one key per image (its stable id mixed
    /// with the seed and step), `rng` for draws shared by the batch (e.g. a masking ratio).
    fn training_masks(&self, keys: &[u64], rng: &mut ChaCha8Rng) -> Result<BatchMask>;
    /// A batch with the family's per-step randomness drawn from `rng`.
    fn prepare(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        _rng: &mut ChaCha8Rng,
    ) -> Result<ModelInput> {
        Ok(ModelInput::plain(pixels, mask))
    }
    /// The input whose teacher embedding is the forget target of "ours": the same masks and
    /// per-step randomness, with the images replaced by `noise` (`[B, 3, S, S]`).
    fn noise_input(&self, input: &ModelInput, noise: &Tensor) -> Result<ModelInput> {
        Ok(ModelInput {
            pixels: noise.clone(),
            mask: input.mask.clone(),
            cond: input.cond.clone(),
        })
    }
    /// The encoder's embedding `E(T(x))`.
    fn encode(&self, input: &ModelInput, mode: Mode) -> Result<Embedding>;
    /// The network's one-pass output (MAE: the decoder's per-patch pixel prediction; MAGE: the
    /// logits; diffusion: the noise prediction) — the level Retain Label compares.
    fn output(&self, input: &ModelInput, mode: Mode) -> Result<Tensor>;
    /// The family's training loss, the hidden region of `input` predicted toward `target`'s
    /// (`[B, 3, S, S]` in [0, 1]).
    fn training_loss(&self, input: &ModelInput, target: &Tensor, mode: Mode) -> Result<Tensor>;
    /// The training loss of every image of `input` on its own, toward its own pixels (what the
    /// membership audit thresholds). By default one image at a time; a family whose batch rows do
    /// not interact computes them in one pass, every value the one-image loss up to float rounding.
    fn per_image_loss(&self, input: &ModelInput, mode: Mode) -> Result<Vec<f64>> {
        (0..input.len())
            .map(|i| {
                let one = input.slice(i, 1)?;
                let loss = self.training_loss(&one, &one.pixels, mode)?;
                Ok(loss.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
            })
            .collect()
    }
    /// What `training_loss` divides its sum by for `input` (hidden patches, masked tokens, or
    /// elements), so that the losses of a batch's shards combine into the whole batch's:
    /// `Σ_s (d_s / d) · loss_s`.
    fn loss_denominator(&self, input: &ModelInput) -> f64;
    /// The training loss toward a random target (Noisy Label's forget term): by default toward
    /// the noise image `noise`; MAGE overrides with random tokens.
    fn random_target_loss(
        &self,
        input: &ModelInput,
        noise: &Tensor,
        _rng: &mut ChaCha8Rng,
        mode: Mode,
    ) -> Result<Tensor> {
        self.training_loss(input, noise, mode)
    }
    /// Inpaint / outpaint `pixels` (`[B, 3, S, S]` in [0, 1]) under `mask`: the family's whole
    /// generation, composited into the known pixels, clamped to [0, 1]. `rngs` has one stream per
    /// image; `on_step` is called after every sampling step.
    fn generate(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rngs: &mut [ChaCha8Rng],
        opts: &GenerateOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor>;
    /// How `generate` runs with `opts`, for protocol strings (families with a sampler name its
    /// steps and any deviation from the official sampler).
    fn describe_generation(&self, opts: &GenerateOptions) -> String {
        opts.describe(self.image_size())
    }
    /// The raw prediction `[B, 3, S, S]` of a single pass (not composited), for inspection;
    /// `rngs` (one stream per image) for a family whose pass draws noise.
    fn predict(&self, pixels: &Tensor, mask: &BatchMask, rngs: &mut [ChaCha8Rng])
        -> Result<Tensor>;
    /// Family figures of the model's quality on held-out `pixels` under `mask` (MAGE: its
    /// tokenizer's reconstruction error and its masked-token cross-entropy), each with the limit
    /// it must stay under; none by default.
    fn quality(
        &self,
        _pixels: &Tensor,
        _mask: &BatchMask,
        _rng: &mut ChaCha8Rng,
    ) -> Result<Vec<QualityFigure>> {
        Ok(vec![])
    }
    /// [`I2IModel::generate`] with the encoder's maps from index `keep` on taken from the
    /// pure-noise input that Ours trains the forget images toward, the maps below `keep` from
    /// the real input (an inference-only probe of what the decoder reads); `None` for a family
    /// whose decoder does not read several encoder maps.
    fn generate_noise_maps(
        &self,
        _pixels: &Tensor,
        _mask: &BatchMask,
        _rngs: &mut [ChaCha8Rng],
        _opts: &GenerateOptions,
        _keep: usize,
    ) -> Option<Result<Tensor>> {
        None
    }
    /// Whether a parameter gets weight decay (the family's own rule, as its official recipe).
    fn decays(&self, name: &str, var: &Var) -> bool;
    /// Parameters (empty for a frozen model).
    fn params(&self) -> &Params;
}
