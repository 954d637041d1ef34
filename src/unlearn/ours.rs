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

use super::{noise_like, Ctx, Method, MethodName, Scope, Split, StepBatch};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

pub struct Ours;

impl Method for Ours {
    fn name(&self) -> MethodName {
        MethodName::Ours
    }
    fn scope(&self) -> Scope {
        Scope::Encoder
    }
    /// The retain term (student and teacher on the retain batch) and the forget term (the noise
    /// image drawn first, then teacher on the noise and student on the forget batch) share no
    /// computation.
    fn split<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        b: &'a StepBatch,
        rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        let noise = noise_like(&b.forget.pixels, ctx.noise, b.noise_stats, rng)?;
        // `paper_compat`: the official code's per-sample weights, 2·R/B and 2·F/B.
        let (r, f) = (b.retain.len() as f64, b.forget.len() as f64);
        let weight = move |t: Tensor, k: f64| -> Result<Tensor> {
            Ok(if ctx.paper_compat {
                (&t * (2.0 * k / (r + f)))?
            } else {
                t
            })
        };
        let retain = Box::new(move || {
            let target = ctx.teacher.encode(&b.retain, Mode::Infer)?;
            let t = ctx.student.encode(&b.retain, Mode::Train)?.mse(&target)?;
            weight(t, r)
        });
        let forget = Box::new(move || {
            let target = ctx
                .teacher
                .encode(&ctx.teacher.noise_input(&b.forget, &noise)?, Mode::Infer)?;
            let t = ctx.student.encode(&b.forget, Mode::Train)?.mse(&target)?;
            weight(t, f)
        });
        Ok(Some(Split {
            retain,
            forget,
            w: ctx.alpha,
        }))
    }
}
