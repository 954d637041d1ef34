//! "Ours" (Li et al., ICLR 2024): train the encoder only so that
//!
//! L(θ) = ‖E_θ(T(x_r)) − E_θ0(T(x_r))‖² + α · ‖E_θ(T(x_f)) − E_θ0(T(n))‖²
//!
//! where n is a noise image (Gaussian with the batch's pixel statistics by default) seen through
//! the same mask and per-step randomness as x_f ([`I2IModel::noise_input`]), and E_θ0 the frozen
//! original encoder. With `retain: proxy` the first term uses proxy images instead of D_R.
//! ‖·‖² is the mean squared error over the embedding (summed over its tensors).
//!
//! `paper_compat`: the official code weights each sample of the mixed batch of B by 2 in its own
//! term and averages over B, so the terms carry 2·R/B and 2·F/B (equal to the above when R = F).
//!
//! [`I2IModel::noise_input`]: crate::models::I2IModel::noise_input

use super::{noise_like, Ctx, Loss, Method, MethodName, Scope, StepBatch};
use crate::nn::Mode;
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
        let retain_target = ctx.teacher.encode(&b.retain, Mode::Infer)?;
        let retain = ctx
            .student
            .encode(&b.retain, Mode::Train)?
            .mse(&retain_target)?;
        let noise = noise_like(&b.forget.pixels, ctx.noise, b.noise_stats, rng)?;
        let forget_target = ctx
            .teacher
            .encode(&ctx.teacher.noise_input(&b.forget, &noise)?, Mode::Infer)?;
        let forget = ctx
            .student
            .encode(&b.forget, Mode::Train)?
            .mse(&forget_target)?;
        if ctx.paper_compat {
            let (r, f) = (b.retain.len() as f64, b.forget.len() as f64);
            let n = r + f;
            let loss = Loss::sum(
                (&retain * (2.0 * r / n))?,
                (&forget * (2.0 * f / n))?,
                ctx.alpha,
            )?;
            return Ok(loss);
        }
        Loss::sum(retain, forget, ctx.alpha)
    }
}
