//! `controllable`: unlearning as a constrained problem (after Feng et al., "Controllable
//! Unlearning for Image-to-Image Generative Models via ε-Constrained Optimization", ICLR 2025;
//! no code released, every open choice is ours and docs/methods.md states it).
//!
//! Its two objectives are Ours' two terms on the encoder (same family, same masks and noise):
//! the retain objective R(θ) = ‖E_θ(T(x_r)) − E_θ0(T(x_r))‖² (proxy images with `retain:
//! proxy`) and the forget objective F(θ) = ‖E_θ(T(x_f)) − E_θ0(T(n))‖².
//!
//! 1. **Boundary**: the retain-optimal solution is the original model (R = 0); the
//!    forget-optimal one is trained here, F alone for `unlearn.steps` steps. Its retain loss
//!    R_max closes the valid range [0, R_max] of the budget; `epsilons:` are positions in it (or
//!    absolute budgets). Computed once for every ε of a (dataset, model, seed, settings).
//! 2. **Constrained**: from the original model, minimise F subject to R ≤ ε with the
//!    linearised-constraint step of [`super::constrained`], the same optimiser, schedule and
//!    batches as every method.
//!
//! Both objectives are measured on a fixed probe (`controllable.probe` images spread over each
//! set, fixed
//! masks and noise) at the original model, the forget-optimal one and the end; the trace has
//! both batch objectives and λ per step.

use super::constrained::{combine, Boundary, Constraint, ConstraintLog, Objectives};
use super::trainer::{new_log, run_parts, scalar, Stream, UnlearnJob, UnlearnLog};
use super::{ControllableSpec, Ctx, Method, MethodName, Scope, Split, StepBatch};
use crate::parallel::Shards;
use crate::train::{accumulate, AdamW};
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct Controllable;

impl Method for Controllable {
    fn name(&self) -> MethodName {
        MethodName::Controllable
    }
    fn scope(&self) -> Scope {
        Scope::Encoder
    }
    /// Ours' two terms, unweighted (the step weighs them: ∇F + λ∇R).
    fn split<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        b: &'a StepBatch,
        rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        Ok(super::ours::Ours
            .split(ctx, b, rng)?
            .map(|s| Split { w: 1.0, ..s }))
    }
}

/// Both objectives of `ctx.student` on the probe: `spec.probe` images spread over each set,
/// masks and noise drawn from a fixed stream, so that every model is measured on the same inputs.
pub fn probe(ctx: &Ctx, job: &UnlearnJob, spec: &ControllableSpec) -> Result<Objectives> {
    // Spread over the set, which is ordered by class: every class weighs in.
    let take = |set: &crate::data::ImageSet| {
        let k = spec.probe.min(set.len());
        set.select(&(0..k).map(|i| i * set.len() / k).collect::<Vec<_>>())
    };
    let (r, f) = (take(job.retain)?, take(job.forget)?);
    let mut rng = crate::util::rng("controllable-probe", job.seed);
    let (rm, fm) = super::trainer::step_masks(
        ctx.student,
        job.spec.mask,
        job.eval_mask,
        &super::trainer::mask_keys(&r.ids, job.seed, None),
        &super::trainer::mask_keys(&f.ids, job.seed, None),
        &mut rng,
    )?;
    let batch = StepBatch {
        retain: ctx.student.prepare(&r.pixels, &rm, &mut rng)?,
        forget: ctx.student.prepare(&f.pixels, &fm, &mut rng)?,
        noise_stats: super::scalar_stats(&[&r.pixels, &f.pixels])?,
    };
    let split = Controllable
        .split(ctx, &batch, &mut rng)?
        .expect("controllable splits");
    Ok(Objectives {
        retain: scalar(&(split.retain)()?.detach())?,
        forget: scalar(&(split.forget)()?.detach())?,
    })
}

/// The forget-optimal boundary solution, trained on `ctx.student` (a fresh copy of the original).
pub fn boundary(ctx: &Ctx, job: &UnlearnJob, spec: &ControllableSpec) -> Result<Boundary> {
    let original = probe(ctx, job, spec)?;
    let trace = train(ctx, job, None, &mut |_, _| {})?.1;
    Ok(Boundary {
        original,
        forget_optimal: probe(ctx, job, spec)?,
        trace: trace.into_iter().map(|[r, f, _]| [r, f]).collect(),
    })
}

/// The constrained phase on `ctx.student` (the original model): minimise F subject to R within
/// the budget of `epsilon`; `on_step(step, R, F, λ)` after every step.
pub fn constrained(
    ctx: &Ctx,
    job: &UnlearnJob,
    spec: &ControllableSpec,
    epsilon: f64,
    boundary: Boundary,
    on_step: &mut dyn FnMut(usize, [f64; 3]),
) -> Result<UnlearnLog> {
    let budget = boundary.budget(epsilon, spec);
    let (lo, hi) = boundary.range();
    let range = (hi - lo).max(f64::MIN_POSITIVE);
    let mut c = Constraint::new(budget, range, spec.gain, spec.integral_gain);
    let (mut log, trace) = train(ctx, job, Some(&mut c), on_step)?;
    let end = probe(ctx, job, spec)?;
    log.constraint = Some(ConstraintLog {
        epsilon,
        budget,
        kept: end.retain <= budget + 0.01 * range,
        end,
        boundary,
        trace,
    });
    Ok(log)
}

/// The training loop of both phases: each step's two terms from their own backward passes, the
/// direction ∇F + λ∇R (λ = 0 without a constraint), the run's optimiser and schedule.
fn train(
    ctx: &Ctx,
    job: &UnlearnJob,
    mut c: Option<&mut Constraint>,
    on_step: &mut dyn FnMut(usize, [f64; 3]),
) -> Result<(UnlearnLog, Vec<[f64; 3]>)> {
    let start = std::time::Instant::now();
    let vars = super::trainer::trainable(ctx.student, Controllable.scope());
    let s = job.spec;
    let mut opt = AdamW::new(vars.clone(), s.optim(s.steps))?;
    let mut stream = Stream::new(MethodName::Controllable.as_str(), job);
    let shards = Shards::for_device(job.retain.pixels.device())?;
    let mut log = new_log(&vars, job);
    let mut trace = Vec::with_capacity(s.steps);
    for step in 0..s.steps {
        let (mut gr, mut gf, mut r, mut f) = (None, None, 0.0, 0.0);
        for _ in 0..s.grad_accum {
            let batch = stream.next(ctx.student, job, step)?;
            let split = Controllable
                .split(ctx, &batch, &mut stream.rng)?
                .expect("controllable splits");
            let [(rt, g_r), (ft, g_f)] = run_parts(split, [1.0, 1.0], s.grad_accum, &shards)?;
            r += scalar(&rt)? / s.grad_accum as f64;
            f += scalar(&ft)? / s.grad_accum as f64;
            for (acc, g) in [(&mut gr, g_r), (&mut gf, g_f)] {
                match acc.as_mut() {
                    None => *acc = Some(g),
                    Some(a) => accumulate(a, &g, &vars)?,
                }
            }
        }
        anyhow::ensure!(
            r.is_finite() && f.is_finite(),
            "objectives are {r} (retain) and {f} (forget) at step {step}: unlearning diverged (lower unlearn.lr)"
        );
        let (gr, gf) = (gr.expect("grad_accum ≥ 1"), gf.expect("grad_accum ≥ 1"));
        let (lambda, g) = combine(c.as_deref_mut(), r, &gr, gf, &vars)?;
        opt.step(&g)?;
        let total = f + lambda * r;
        if step == 0 {
            log.first_loss = total;
        }
        log.last_loss = total;
        log.last_retain_term = r;
        log.last_forget_term = f;
        trace.push([r, f, lambda]);
        on_step(step, [r, f, lambda]);
    }
    super::trainer::check_trained(&vars)?;
    log.steps = s.steps;
    log.seconds = start.elapsed().as_secs_f64();
    Ok((log, trace))
}
