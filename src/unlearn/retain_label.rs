//! Retain Label: train the encoder so that each forget image's embedding moves to the original
//! encoder's embedding of a retain image (paired in batch order, seen through the forget image's
//! mask), while retain embeddings stay.
//!
//! L = ‖E_θ(T(x_r)) − E_θ0(T(x_r))‖² + α · ‖E_θ(T(x_f)) − E_θ0(T_f(x_r'))‖².
//! `paper_compat` zeroes the forget term, as the official VQ-GAN code's `(1 + l)` factor does.

use super::{cycle_rows, forget_weight, Ctx, Loss, Method, MethodName, Scope, StepBatch};
use crate::nn::{mse, Mode};
use anyhow::Result;
use rand_chacha::ChaCha8Rng;

pub struct RetainLabel;

impl Method for RetainLabel {
    fn name(&self) -> MethodName {
        MethodName::RetainLabel
    }
    fn scope(&self) -> Scope {
        Scope::Encoder
    }
    fn loss(&self, ctx: &Ctx, b: &StepBatch, _rng: &mut ChaCha8Rng) -> Result<Loss> {
        let retain_target = ctx.teacher.encode(b.retain, b.retain_mask, Mode::Infer)?;
        let retain = mse(
            &ctx.student.encode(b.retain, b.retain_mask, Mode::Train)?,
            &retain_target,
        )?;
        let paired = cycle_rows(b.retain, b.forget.dim(0)?)?;
        let forget_target = ctx.teacher.encode(&paired, b.forget_mask, Mode::Infer)?;
        let forget = mse(
            &ctx.student.encode(b.forget, b.forget_mask, Mode::Train)?,
            &forget_target,
        )?;
        let total = (&retain + (&forget * forget_weight(ctx, true))?)?;
        Ok(Loss {
            total,
            retain,
            forget,
        })
    }
}
