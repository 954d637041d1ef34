//! How much of the forget gap "Ours" closed, per encoder map: on one fixed forget batch (its
//! masks, per-step randomness and noise image drawn once), the mean squared distance between the
//! student's maps of the forget images and the frozen teacher's maps of the noise input, before
//! the first step and after the last. A map whose gap stays open still carries the forget images
//! to the decoder.

use super::{Ctx, StepBatch};
use crate::models::ModelInput;
use crate::nn::Mode;
use anyhow::Result;
use candle_core::Tensor;

/// The fixed batch and its noise image.
pub struct Probe {
    forget: ModelInput,
    noise: Tensor,
    before: Vec<f64>,
}

fn gaps(ctx: &Ctx, forget: &ModelInput, noise: &Tensor) -> Result<Vec<f64>> {
    let target = ctx
        .teacher
        .encode(&ctx.teacher.noise_input(forget, noise)?, Mode::Infer)?;
    let student = ctx.student.encode(forget, Mode::Infer)?;
    student
        .0
        .iter()
        .zip(&target.0)
        .map(|(s, t)| Ok(crate::nn::mse(s, t)?.to_scalar::<f32>()? as f64))
        .collect()
}

impl Probe {
    /// Measure the gaps of batch `b` (drawn from a stream of its own, so that the training
    /// stream is unchanged) and noise image `noise` before training.
    pub fn start(ctx: &Ctx, b: StepBatch, noise: Tensor) -> Result<Self> {
        let before = gaps(ctx, &b.forget, &noise)?;
        Ok(Self {
            forget: b.forget,
            noise,
            before,
        })
    }

    /// Per map, the share of the gap closed: 1 − after / before (1: closed, 0: unchanged).
    pub fn finish(&self, ctx: &Ctx) -> Result<Vec<f64>> {
        let after = gaps(ctx, &self.forget, &self.noise)?;
        Ok(self
            .before
            .iter()
            .zip(after)
            .map(|(b, a)| if *b > 0.0 { 1.0 - a / b } else { 1.0 })
            .collect())
    }
}
