//! Retain Label: train the full model so that its *output* on each masked forget image moves to
//! the original model's output on a masked retain image of the same batch, while retain images
//! keep their original outputs (MAE: the decoder's pixel prediction; MAGE: the logits; diffusion:
//! the noise prediction — [`I2IModel::output`]).
//!
//! L = ‖h_θ(T(x_r)) − h_θ0(T(x_r))‖² + α · ‖h_θ(T(x_f,j)) − h_θ0(T(x_r,j mod R))‖²,
//! forget sample j paired with retain sample j mod R (the official code tiles the retain
//! samples' teacher outputs over the batch).
//!
//! `paper_compat`: the official baseline code's `(1 + l)` weighting on a shuffled mixed batch —
//! forget samples weigh 0 in both terms; the retain sample at batch position i is pulled, with
//! weight 2 (averaged over the batch of B), toward its own teacher output and toward the teacher
//! output of the (i mod R)-th retain sample of the batch.
//!
//! [`I2IModel::output`]: crate::models::I2IModel::output

use super::{
    cycle_index, mixed_order, Ctx, Loss, Method, MethodName, Part, Scope, Split, StepBatch,
};
use crate::nn::{mse, per_sample_mse, Mode};
use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

pub struct RetainLabel;

impl Method for RetainLabel {
    fn name(&self) -> MethodName {
        MethodName::RetainLabel
    }
    fn scope(&self) -> Scope {
        Scope::Full
    }
    fn loss(&self, ctx: &Ctx, b: &StepBatch, rng: &mut ChaCha8Rng) -> Result<Loss> {
        if let Some(split) = self.split(ctx, b, rng)? {
            return split.loss();
        }
        // `paper_compat`: both terms on the student's retain outputs.
        let t_r = ctx.teacher.output(&b.retain, Mode::Infer)?.contiguous()?;
        let s_r = ctx.student.output(&b.retain, Mode::Train)?;
        let r = b.retain.len();
        let dev = t_r.device().clone();
        // Positions of the retain samples in the shuffled mixed batch, in batch order.
        let order = mixed_order(r, b.forget.len(), rng);
        let n = order.len();
        // The k-th retain sample of the batch sits at position pos[k]; the target of position i
        // is the (i mod R)-th retain sample's teacher output.
        let pos: Vec<usize> = (0..n).filter(|&i| order[i]).collect();
        let target_of: Vec<u32> = pos.iter().map(|&i| (i % r) as u32).collect();
        let idx = Tensor::from_vec(target_of, r, &dev)?;
        let w = 2.0 / n as f64;
        let retain = (per_sample_mse(&s_r, &t_r)?.sum_all()? * w)?;
        let forget = (per_sample_mse(&s_r, &t_r.index_select(&idx, 0)?)?.sum_all()? * w)?;
        Loss::sum(retain, forget, ctx.alpha)
    }
    /// Without `paper_compat`: the teacher's retain outputs first (no gradient), then the
    /// student on the retain batch against them and on the forget batch against them cycled.
    /// With it the two terms share the student's retain outputs: not split.
    fn split<'a>(
        &self,
        ctx: &'a Ctx<'a>,
        b: &'a StepBatch,
        _rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        if ctx.paper_compat {
            return Ok(None);
        }
        let t_r = ctx.teacher.output(&b.retain, Mode::Infer)?.contiguous()?;
        let (r, f) = (b.retain.len(), b.forget.len());
        let target = t_r.index_select(&cycle_index(r, f, t_r.device())?, 0)?;
        let retain: Part<'a> =
            Box::new(move || mse(&ctx.student.output(&b.retain, Mode::Train)?, &t_r));
        let forget: Part<'a> =
            Box::new(move || mse(&ctx.student.output(&b.forget, Mode::Train)?, &target));
        Ok(Some(Split {
            retain,
            forget,
            w: ctx.alpha,
        }))
    }
}
