//! Runs an unlearning method: samples retain / forget batches (epoch-shuffled, seeded), masks them
//! with the cell's mask, computes the method's loss, and updates only the parameters of the
//! method's [`Scope`] (AdamW, warm-up + cosine, clipping, gradient accumulation).

use super::{Ctx, Loss, Method, Scope, StepBatch};
use crate::config::UnlearnSpec;
use crate::data::ImageSet;
use crate::masks::MaskSpec;
use crate::models::{I2IModel, Role};
use crate::train::{accumulate, AdamW, OptimSpec};
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Epoch-shuffled sampling without replacement within an epoch.
pub struct Sampler {
    order: Vec<usize>,
    pos: usize,
}

impl Sampler {
    pub fn new(n: usize) -> Self {
        Self {
            order: (0..n).collect(),
            pos: n,
        }
    }
    pub fn next(&mut self, b: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
        let mut out = Vec::with_capacity(b);
        while out.len() < b {
            if self.pos == self.order.len() {
                self.order.shuffle(rng);
                self.pos = 0;
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }
}

/// What an unlearning run did.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct UnlearnLog {
    pub steps: usize,
    pub trained_params: usize,
    pub first_loss: f64,
    pub last_loss: f64,
    pub last_retain_term: f64,
    pub last_forget_term: f64,
    pub seconds: f64,
}

/// Inputs of one unlearning run.
pub struct UnlearnJob<'a> {
    pub spec: &'a UnlearnSpec,
    pub retain: &'a ImageSet,
    pub forget: &'a ImageSet,
    pub mask: MaskSpec,
    pub seed: u64,
}

/// The parameters a scope trains.
pub fn trainable(model: &dyn I2IModel, scope: Scope) -> Vec<(String, candle_core::Var)> {
    match scope {
        Scope::None => vec![],
        Scope::Encoder => model.params().with_roles(&[Role::Encoder]),
        Scope::Full => model.params().with_roles(&[Role::Encoder, Role::Decoder]),
    }
}

/// Mask keys for a batch: image id mixed with the seed and (for training) the step, so random masks
/// differ across steps but are reproducible.
pub fn mask_keys(ids: &[u64], seed: u64, step: Option<usize>) -> Vec<u64> {
    ids.iter()
        .map(|&id| crate::util::mix(&[id, seed, step.map(|s| s as u64 + 1).unwrap_or(0)]))
        .collect()
}

/// Run `method` on `ctx.student`. `on_step` is called after every step (progress bars).
pub fn run(
    method: &dyn Method,
    ctx: &Ctx,
    job: &UnlearnJob,
    mut on_step: impl FnMut(usize, &Loss),
) -> Result<UnlearnLog> {
    let start = std::time::Instant::now();
    let vars = trainable(ctx.student, method.scope());
    anyhow::ensure!(
        !vars.is_empty(),
        "method `{}` has nothing to train",
        method.name().as_str()
    );
    let s = job.spec;
    let mut opt = AdamW::new(
        vars.clone(),
        OptimSpec {
            lr: s.lr,
            min_lr: s.min_lr,
            warmup_steps: s.warmup_steps,
            total_steps: s.steps,
            weight_decay: s.weight_decay,
            betas: s.betas,
            eps: 1e-8,
            grad_clip: s.grad_clip,
        },
    )?;
    let mut rng = crate::util::rng(&format!("unlearn-{}", method.name().as_str()), job.seed);
    // A stream of its own, so that turning augmentation on leaves the batches and the method's
    // randomness as they were.
    let mut aug_rng = crate::util::rng("unlearn-augment", job.seed);
    let mut rs = Sampler::new(job.retain.len());
    let mut fs = Sampler::new(job.forget.len());
    let grid = ctx.student.config().grid();
    let mut log = UnlearnLog {
        trained_params: vars.iter().map(|(_, v)| v.elem_count()).sum(),
        ..Default::default()
    };
    for step in 0..s.steps {
        let mut acc: Option<GradStore> = None;
        let mut last = None;
        for _ in 0..s.grad_accum {
            let mut r = job.retain.select(&rs.next(s.retain_batch, &mut rng))?;
            let mut f = job.forget.select(&fs.next(s.forget_batch, &mut rng))?;
            if let Some(a) = &s.augment {
                r.pixels = a.apply(&r.pixels, &mut aug_rng)?;
                f.pixels = a.apply(&f.pixels, &mut aug_rng)?;
            }
            let rm = job
                .mask
                .batch(grid, &mask_keys(&r.ids, job.seed, Some(step)))?;
            let fm = job
                .mask
                .batch(grid, &mask_keys(&f.ids, job.seed, Some(step)))?;
            let batch = StepBatch {
                retain: &r.pixels,
                retain_mask: &rm,
                forget: &f.pixels,
                forget_mask: &fm,
            };
            let loss = method.loss(ctx, &batch, &mut rng)?;
            let scaled = if s.grad_accum > 1 {
                (&loss.total / s.grad_accum as f64)?
            } else {
                loss.total.clone()
            };
            let g = scaled.backward()?;
            match acc.as_mut() {
                None => acc = Some(g),
                Some(a) => accumulate(a, &g, &vars)?,
            }
            last = Some(loss);
        }
        let loss = last.expect("grad_accum ≥ 1");
        let total = scalar(&loss.total)?;
        anyhow::ensure!(
            total.is_finite(),
            "loss is {total} at step {step}: unlearning diverged (lower unlearn.lr or alpha)"
        );
        if step == 0 {
            log.first_loss = total;
        }
        opt.step(acc.as_ref().expect("accumulated"))?;
        log.last_loss = total;
        log.last_retain_term = scalar(&loss.retain)?;
        log.last_forget_term = scalar(&loss.forget)?;
        on_step(step, &loss);
    }
    log.steps = s.steps;
    log.seconds = start.elapsed().as_secs_f64();
    Ok(log)
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}
