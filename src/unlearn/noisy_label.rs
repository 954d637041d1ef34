//! Noisy Label: train the full model to predict a random target where forget images are hidden
//! and the truth where retain images are hidden.
//!
//! L = L_train(x_r → x_r) + α · L_train(x_f → random), the random target in the family's own
//! form ([`I2IModel::random_target_loss`]: MAE a noise image of the configured kind; MAGE random
//! tokens; diffusion pure noise).
//!
//! [`I2IModel::random_target_loss`]: crate::models::I2IModel::random_target_loss

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
        let retain = ctx
            .student
            .training_loss(&b.retain, &b.retain.pixels, Mode::Train)?;
        let noise = noise_like(&b.forget.pixels, ctx.noise, b.noise_stats, rng)?;
        let forget = ctx
            .student
            .random_target_loss(&b.forget, &noise, rng, Mode::Train)?;
        Loss::sum(retain, forget, ctx.alpha)
    }
}
