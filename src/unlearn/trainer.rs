//! Runs an unlearning method: samples retain / forget batches (epoch-shuffled, seeded), masks them
//! (`unlearn.mask`: the family's training masks by default), prepares them once for student and
//! teacher, computes the method's loss, and updates only the parameters of the method's [`Scope`]
//! (AdamW with the family's weight-decay rule, warm-up + cosine, clipping, gradient accumulation).

use super::{
    scalar_stats, Ctx, Loss, Method, NoiseStats, Split, StepBatch, UnlearnMask, UnlearnSpec,
};
use crate::data::ImageSet;
use crate::masks::{BatchMask, MaskSpec};
use crate::models::I2IModel;
use crate::parallel::Shards;
use crate::train::{accumulate, AdamW, Sampler, TrainVar};
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;

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
    /// The masks the steps used (`family`, `task: center:4`, or a mask spec).
    #[serde(default)]
    pub masks: String,
    /// `controllable`: the budget, the boundary solutions, both objectives at the end and their
    /// trace with the multiplier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<super::constrained::ConstraintLog>,
    /// The stored unlearned model's key and the SHA-256 of the original it was trained from
    /// (compared when a stored model is reused).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub original_sha256: String,
    /// Σ of the learning rate over the steps: how far the recipe can move the weights (the
    /// official Palette run: about 0.5–0.8).
    #[serde(default)]
    pub lr_sum: f64,
    /// How many times the steps go over the forget and the retain training images.
    #[serde(default)]
    pub forget_passes: f64,
    #[serde(default)]
    pub retain_passes: f64,
    /// Ours: per encoder map, the share of the forget gap closed on a fixed forget batch (1 −
    /// gap after / gap before).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub map_closure: Vec<f64>,
}

impl UnlearnLog {
    /// `Σ lr 0.0074, 6.0 passes over D_F, 5.4 over D_R` for the log.
    pub fn movement(&self) -> String {
        let closure = if self.map_closure.is_empty() {
            String::new()
        } else {
            let v: Vec<String> = self
                .map_closure
                .iter()
                .map(|c| format!("{:.0}", 100.0 * c))
                .collect();
            format!(", forget gap closed per map (%): {}", v.join(" "))
        };
        format!(
            "Σ lr {:.3e}, {:.1} passes over D_F, {:.1} over D_R{closure}",
            self.lr_sum, self.forget_passes, self.retain_passes
        )
    }
}

/// Inputs of one unlearning run.
pub struct UnlearnJob<'a> {
    pub spec: &'a UnlearnSpec,
    pub retain: &'a ImageSet,
    pub forget: &'a ImageSet,
    /// The evaluation mask, used when `spec.mask` is `task`.
    pub eval_mask: Option<MaskSpec>,
    pub seed: u64,
}

pub use crate::masks::mask_keys;
pub use crate::models::trainable;

/// Masks of one step's retain and forget images. Family masks are drawn for the whole batch at
/// once (a family may draw one masking ratio per batch, as MAGE does).
pub fn step_masks(
    model: &dyn I2IModel,
    how: UnlearnMask,
    eval_mask: Option<MaskSpec>,
    retain_keys: &[u64],
    forget_keys: &[u64],
    rng: &mut ChaCha8Rng,
) -> Result<(BatchMask, BatchMask)> {
    let grid = model.mask_grid();
    let fixed = |m: MaskSpec| -> Result<(BatchMask, BatchMask)> {
        Ok((m.batch(grid, retain_keys)?, m.batch(grid, forget_keys)?))
    };
    match how {
        UnlearnMask::Family => {
            let keys: Vec<u64> = retain_keys.iter().chain(forget_keys).copied().collect();
            let all = model.training_masks(&keys, rng)?;
            Ok(all.split_at(retain_keys.len()))
        }
        UnlearnMask::Task => fixed(eval_mask.ok_or_else(|| {
            anyhow::anyhow!("unlearn.mask: task needs the cell's evaluation mask")
        })?),
        UnlearnMask::Fixed(m) => fixed(m),
    }
}

/// The batches of an unlearning run, with the random streams they are drawn from: the method's
/// own stream `rng` (which also samples the batches), and streams of their own for augmentation,
/// masks and the family's per-step randomness, so that turning augmentation on (or another
/// family's mask draws) leaves the batches and the method's randomness as they were.
pub struct Stream {
    pub rng: ChaCha8Rng,
    aug_rng: ChaCha8Rng,
    mask_rng: ChaCha8Rng,
    prep_rng: ChaCha8Rng,
    rs: Sampler,
    fs: Sampler,
}

impl Stream {
    pub fn new(method: &str, job: &UnlearnJob) -> Self {
        Self {
            rng: crate::util::rng(&format!("unlearn-{method}"), job.seed),
            aug_rng: crate::util::rng("unlearn-augment", job.seed),
            mask_rng: crate::util::rng("unlearn-masks", job.seed),
            prep_rng: crate::util::rng("unlearn-prepare", job.seed),
            rs: Sampler::new(job.retain.len()),
            fs: Sampler::new(job.forget.len()),
        }
    }

    /// The next retain and forget batches of step `step`, masked and prepared once for student
    /// and teacher.
    pub fn next(
        &mut self,
        student: &dyn I2IModel,
        job: &UnlearnJob,
        step: usize,
    ) -> Result<StepBatch> {
        let s = job.spec;
        let mut r = job
            .retain
            .select(&self.rs.next(s.retain_batch, &mut self.rng))?;
        let mut f = job
            .forget
            .select(&self.fs.next(s.forget_batch, &mut self.rng))?;
        if let Some(a) = &s.augment {
            r.pixels = a.apply(&r.pixels, &mut self.aug_rng)?;
            f.pixels = a.apply(&f.pixels, &mut self.aug_rng)?;
        }
        let (rm, fm) = step_masks(
            student,
            s.mask,
            job.eval_mask,
            &mask_keys(&r.ids, job.seed, Some(step)),
            &mask_keys(&f.ids, job.seed, Some(step)),
            &mut self.mask_rng,
        )?;
        let noise_stats = match s.noise_stats {
            NoiseStats::Batch => scalar_stats(&[&r.pixels, &f.pixels])?,
            NoiseStats::Forget => scalar_stats(&[&f.pixels])?,
        };
        Ok(StepBatch {
            retain: student.prepare(&r.pixels, &rm, &mut self.prep_rng)?,
            forget: student.prepare(&f.pixels, &fm, &mut self.prep_rng)?,
            noise_stats,
        })
    }
}

/// The log of a run of `method` before its first step.
pub fn new_log(vars: &[TrainVar], job: &UnlearnJob) -> UnlearnLog {
    let s = job.spec;
    let optim = s.optim(s.steps);
    let images = (s.steps * s.grad_accum) as f64;
    let passes = |batch: usize, n: usize| images * batch as f64 / n.max(1) as f64;
    UnlearnLog {
        lr_sum: (0..s.steps).map(|k| crate::train::lr_at(&optim, k)).sum(),
        forget_passes: passes(s.forget_batch, job.forget.len()),
        retain_passes: passes(s.retain_batch, job.retain.len()),
        trained_params: vars.iter().map(|(_, v, _)| v.elem_count()).sum(),
        masks: match (job.spec.mask, job.eval_mask) {
            (UnlearnMask::Task, Some(m)) => format!("task: {m}"),
            (m, _) => m.describe(),
        },
        ..Default::default()
    }
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
    let mut opt = AdamW::new(vars.clone(), s.optim(s.steps))?;
    let mut stream = Stream::new(method.name().as_str(), job);
    // A split loss's two terms run at the same time on two one-thread pools when this thread's
    // pool has two threads (one after the other otherwise: the same numbers either way).
    let shards = Shards::for_device(job.retain.pixels.device())?;
    let mut log = new_log(&vars, job);
    let probe = if method.name() == crate::names::MethodName::Ours {
        let mut own = Stream::new("map-closure", job);
        let b = own.next(ctx.student, job, 0)?;
        let noise = super::noise_like(&b.forget.pixels, ctx.noise, b.noise_stats, &mut own.rng)?;
        Some(super::closure::Probe::start(ctx, b, noise)?)
    } else {
        None
    };
    for step in 0..s.steps {
        let mut acc: Option<GradStore> = None;
        let mut last = None;
        for _ in 0..s.grad_accum {
            let batch = stream.next(ctx.student, job, step)?;
            let split = match method.split(ctx, &batch, &mut stream.rng)? {
                Some(split) => Some(run_split(split, s.grad_accum, &vars, &shards)?),
                None => None,
            };
            let (loss, g) = match split {
                Some(done) => done,
                None => {
                    let loss = method.loss(ctx, &batch, &mut stream.rng)?;
                    let scaled = if s.grad_accum > 1 {
                        (&loss.total / s.grad_accum as f64)?
                    } else {
                        loss.total.clone()
                    };
                    let g = scaled.backward()?;
                    (loss, g)
                }
            };
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
    check_trained(&vars)?;
    if let Some(p) = probe {
        log.map_closure = p.finish(ctx)?;
    }
    log.steps = s.steps;
    log.seconds = start.elapsed().as_secs_f64();
    Ok(log)
}

/// The trained weights after the last step are finite (the loss is checked before each step,
/// so a last step that blew the weights up would otherwise go unnoticed).
pub fn check_trained(vars: &[TrainVar]) -> Result<()> {
    for (name, v, _) in vars {
        if !crate::models::is_finite(v.as_tensor())? {
            anyhow::bail!(
                "the weights went non-finite while unlearning (tensor `{name}`): lower unlearn.lr or alpha"
            );
        }
    }
    Ok(())
}

/// A [`Split`] loss's terms, each with its own backward pass (at the same time on `shards`' pools
/// when there are two), the gradients summed retain first; the loss as one tensor for the logs.
fn run_split(
    split: Split,
    grad_accum: usize,
    vars: &[TrainVar],
    shards: &Shards,
) -> Result<(Loss, GradStore)> {
    let w = split.w;
    let [(retain, mut g), (forget, gf)] = run_parts(split, [1.0, w], grad_accum, shards)?;
    accumulate(&mut g, &gf, vars)?;
    Ok((Loss::sum(retain, forget, w)?, g))
}

/// Each term of a [`Split`] (retain, forget) with the gradient of `scale · term / grad_accum`,
/// from a backward pass of its own (at the same time on `shards`' pools when there are two).
pub fn run_parts(
    split: Split,
    scales: [f64; 2],
    grad_accum: usize,
    shards: &Shards,
) -> Result<[(Tensor, GradStore); 2]> {
    let parts = [(split.retain, scales[0]), (split.forget, scales[1])].map(|p| Mutex::new(Some(p)));
    let run = |i: usize| -> Result<(Tensor, GradStore)> {
        let (part, scale) = parts[i]
            .lock()
            .map_err(|_| anyhow::anyhow!("a loss part panicked"))?
            .take()
            .expect("each part runs once");
        let term = part()?;
        // The ops a whole loss's backward pass meets on this term's way, in its order:
        // `(retain + w · forget) / grad_accum`.
        let mut root = term.clone();
        if scale != 1.0 {
            root = (&root * scale)?;
        }
        if grad_accum > 1 {
            root = (&root / grad_accum as f64)?;
        }
        Ok((term.detach(), root.backward()?))
    };
    let mut out = shards
        .map(2, |_, r| r.map(run).collect::<Result<Vec<_>>>())?
        .into_iter()
        .flatten();
    let retain = out.next().expect("the retain part");
    let forget = out.next().expect("the forget part");
    Ok([retain, forget])
}

pub fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?)
}
