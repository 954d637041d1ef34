//! Random Encoder: train the encoder so that forget embeddings move to random N(0, 1) features,
//! while retain embeddings stay at the original encoder's.
//!
//! L = ‖E_θ(T(x_r)) − E_θ0(T(x_r))‖² + α · ‖E_θ(T(x_f)) − z‖², z ~ N(0, I) drawn every step.
//! `paper_compat` zeroes the forget term, as the official VQ-GAN code's `(1 + l)` factor does.

use super::{forget_weight, gaussian_like, Ctx, Loss, Method, MethodName, Scope, StepBatch};
use crate::nn::{mse, Mode};
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct RandomEncoder;

impl Method for RandomEncoder {
    fn name(&self) -> MethodName {
        MethodName::RandomEncoder
    }
    fn scope(&self) -> Scope {
        Scope::Encoder
    }
    fn loss(&self, ctx: &Ctx, b: &StepBatch, rng: &mut ChaCha8Rng) -> Result<Loss> {
        let retain_target = ctx.teacher.encode(b.retain, b.retain_mask, Mode::Infer)?;
        let retain = mse(
            &ctx.student.encode(b.retain, b.retain_mask, Mode::Train)?,
            &retain_target,
        )?;
        let f = ctx.student.encode(b.forget, b.forget_mask, Mode::Train)?;
        let forget = mse(&f, &gaussian_like(&f, rng)?)?;
        let total = (&retain + (&forget * forget_weight(ctx, true))?)?;
        Ok(Loss {
            total,
            retain,
            forget,
        })
    }
}
