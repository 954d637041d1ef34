//! "Ours" (Li et al., ICLR 2024): train the encoder only so that
//!
//! L(θ) = ‖E_θ(T(x_r)) − E_θ0(T(x_r))‖² + α · ‖E_θ(T(x_f)) − E_θ0(T(n))‖²
//!
//! where n is a noise image (Gaussian with the forget batch's pixel statistics by default) seen
//! through the same mask as x_f, and E_θ0 the frozen original encoder. With `retain: proxy` the
//! first term uses proxy images instead of D_R. ‖·‖² is the mean squared error over the embedding.

use super::{forget_weight, noise_like, Ctx, Loss, Method, MethodName, Scope, StepBatch};
use crate::nn::{mse, Mode};
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct Ours;

impl Method for Ours {
    fn name(&self) -> MethodName {
        MethodName::Ours
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
        let noise = noise_like(b.forget, ctx.noise, rng)?;
        let forget_target = ctx.teacher.encode(&noise, b.forget_mask, Mode::Infer)?;
        let forget = mse(
            &ctx.student.encode(b.forget, b.forget_mask, Mode::Train)?,
            &forget_target,
        )?;
        let total = (&retain + (&forget * forget_weight(ctx, false))?)?;
        Ok(Loss {
            total,
            retain,
            forget,
        })
    }
}
