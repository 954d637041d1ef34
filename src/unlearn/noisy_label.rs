//! Noisy Label: train the full model to reconstruct noise where forget images are hidden and the
//! truth where retain images are hidden.
//!
//! L = L_rec(x_r → x_r) + α · L_rec(x_f → n), n a noise image of the configured kind.

use super::{noise_like, Ctx, Loss, Method, MethodName, Scope, StepBatch};
use crate::nn::Mode;
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct NoisyLabel;

impl Method for NoisyLabel {
    fn name(&self) -> MethodName {
        MethodName::NoisyLabel
    }
    fn scope(&self) -> Scope {
        Scope::Full
    }
    fn loss(&self, ctx: &Ctx, b: &StepBatch, rng: &mut ChaCha8Rng) -> Result<Loss> {
        let retain =
            ctx.student
                .reconstruction_loss(b.retain, b.retain_mask, b.retain, Mode::Train)?;
        let noise = noise_like(b.forget, ctx.noise, rng)?;
        let forget =
            ctx.student
                .reconstruction_loss(b.forget, b.forget_mask, &noise, Mode::Train)?;
        let total = (&retain + (&forget * ctx.alpha)?)?;
        Ok(Loss {
            total,
            retain,
            forget,
        })
    }
}
