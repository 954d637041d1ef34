//! Noisy Label: train the full model to predict a random target where forget images are hidden
//! and the truth where retain images are hidden.
//!
//! L = L_train(x_r → x_r) + α · L_train(x_f → random), the random target in the family's own
//! form ([`I2IModel::random_target_loss`]: MAE a noise image of the configured kind; MAGE random
//! tokens; diffusion pure noise).
//!
//! [`I2IModel::random_target_loss`]: crate::models::I2IModel::random_target_loss

use super::{noise_like, Ctx, Method, MethodName, Part, Scope, Split, StepBatch};
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
    /// The training loss on the retain batch; the noise image and the random-target loss on the
    /// forget batch (the only part that draws).
    fn split<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        b: &'a StepBatch,
        rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        let retain: Part<'a> = Box::new(move || {
            ctx.student
                .training_loss(&b.retain, &b.retain.pixels, Mode::Train)
        });
        let forget: Part<'a> = Box::new(move || {
            let noise = noise_like(&b.forget.pixels, ctx.noise, b.noise_stats, rng)?;
            ctx.student
                .random_target_loss(&b.forget, &noise, rng, Mode::Train)
        });
        Ok(Some(Split {
            retain,
            forget,
            w: ctx.alpha,
        }))
    }
}
