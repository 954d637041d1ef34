//! Max Loss: train the full model to descend its own training loss on retain images and ascend it
//! on forget images.
//!
//! L = L_train(x_r → x_r) − α · L_train(x_f → x_f), with L_train the family's training loss on
//! the hidden region.

use super::{Ctx, Loss, Method, MethodName, Scope, StepBatch};
use crate::nn::Mode;
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct MaxLoss;

impl Method for MaxLoss {
    fn name(&self) -> MethodName {
        MethodName::MaxLoss
    }
    fn scope(&self) -> Scope {
        Scope::Full
    }
    fn loss(&self, ctx: &Ctx, b: &StepBatch, _rng: &mut ChaCha8Rng) -> Result<Loss> {
        let retain = ctx
            .student
            .training_loss(&b.retain, &b.retain.pixels, Mode::Train)?;
        let forget = ctx
            .student
            .training_loss(&b.forget, &b.forget.pixels, Mode::Train)?;
        Loss::sum(retain, forget, -ctx.alpha)
    }
}
