//! Max Loss: train the full model to descend its own training loss on retain images and ascend it
//! on forget images.
//!
//! L = L_train(x_r → x_r) − α · L_train(x_f → x_f), with L_train the family's training loss on
//! the hidden region.

use super::{Ctx, Method, MethodName, Part, Scope, Split, StepBatch};
use crate::models::ModelInput;
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
    /// The family's training loss on the retain batch and on the forget batch.
    fn split<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        b: &'a StepBatch,
        _rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        let on = |x: &'a ModelInput| -> Part<'a> {
            Box::new(move || ctx.student.training_loss(x, &x.pixels, Mode::Train))
        };
        Ok(Some(Split {
            retain: on(&b.retain),
            forget: on(&b.forget),
            w: -ctx.alpha,
        }))
    }
}
