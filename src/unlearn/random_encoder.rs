//! Random Encoder: train the encoder so that forget embeddings move to random features with the
//! original encoder's statistics, while retain embeddings stay at the original encoder's.
//!
//! L = ‖E_θ(T(x_r)) − E_θ0(T(x_r))‖² + α · ‖E_θ(T(x_f)) − z‖²,
//! z = ε · std(E_θ0(T(x))) + mean(E_θ0(T(x))), ε ~ N(0, I) drawn every step, with the scalar mean
//! and standard deviation of the teacher's embedding of the whole step batch (per tensor of the
//! embedding), as the official code.
//!
//! `paper_compat`: the official baseline code's `(1 + l)` weighting — forget samples weigh 0 in
//! both terms, and the retain samples are pulled, with weight 2 (averaged over the batch of B),
//! toward both their teacher embedding and z.

use super::{
    gaussian_like, scalar_stats, Ctx, Loss, Method, MethodName, Part, Scope, Split, StepBatch,
};
use crate::models::Embedding;
use crate::nn::Mode;
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct RandomEncoder;

/// z for `rows` samples: standard normal scaled by the statistics of `teacher` (both halves).
fn random_target(
    shape_of: &Embedding,
    teacher: (&Embedding, &Embedding),
    rng: &mut ChaCha8Rng,
) -> Result<Embedding> {
    let mut out = vec![];
    for ((t, a), b) in shape_of.0.iter().zip(&teacher.0 .0).zip(&teacher.1 .0) {
        let (mean, std) = scalar_stats(&[a, b])?;
        out.push(gaussian_like(t, rng)?.affine(std as f64, mean as f64)?);
    }
    Ok(Embedding(out))
}

impl Method for RandomEncoder {
    fn name(&self) -> MethodName {
        MethodName::RandomEncoder
    }
    fn scope(&self) -> Scope {
        Scope::Encoder
    }
    fn loss(&self, ctx: &Ctx, b: &StepBatch, rng: &mut ChaCha8Rng) -> Result<Loss> {
        if let Some(split) = self.split(ctx, b, rng)? {
            return split.loss();
        }
        // `paper_compat`: both terms on the student's retain embeddings.
        let t_r = ctx.teacher.encode(&b.retain, Mode::Infer)?;
        let t_f = ctx.teacher.encode(&b.forget, Mode::Infer)?;
        let s_r = ctx.student.encode(&b.retain, Mode::Train)?;
        let n = (b.retain.len() + b.forget.len()) as f64;
        let z = random_target(&t_r, (&t_r, &t_f), rng)?;
        let w = 2.0 / n;
        let retain = (s_r.per_sample_mse(&t_r)?.sum_all()? * w)?;
        let forget = (s_r.per_sample_mse(&z)?.sum_all()? * w)?;
        Loss::sum(retain, forget, ctx.alpha)
    }
    /// Without `paper_compat`: the teacher's embeddings of both batches first (no gradient),
    /// then the student's retain embeddings against the teacher's, and its forget embeddings
    /// against z (the only part that draws). With it the two terms share the student's retain
    /// embeddings: not split.
    fn split<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        b: &'a StepBatch,
        rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        if ctx.paper_compat {
            return Ok(None);
        }
        let t_r = ctx.teacher.encode(&b.retain, Mode::Infer)?;
        let t_f = ctx.teacher.encode(&b.forget, Mode::Infer)?;
        let target = t_r.clone();
        let retain: Part<'a> =
            Box::new(move || ctx.student.encode(&b.retain, Mode::Train)?.mse(&target));
        let forget: Part<'a> = Box::new(move || {
            let s_f = ctx.student.encode(&b.forget, Mode::Train)?;
            let z = random_target(&s_f, (&t_r, &t_f), rng)?;
            s_f.mse(&z)
        });
        Ok(Some(Split {
            retain,
            forget,
            w: ctx.alpha,
        }))
    }
}
