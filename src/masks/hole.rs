//! The hole error of an inpainting against the truth, and of the trivial fill (each image's
//! mean known colour): the yardstick of the quality gate and of the probes.

use anyhow::Result;
use candle_core::{DType, Tensor};

/// Hole MSE of `out` and of the trivial fill, against `truth` (`[B, 3, S, S]`), with `hole`
/// `[B, 1, S, S]` (1 in the hole).
pub fn hole_errors(truth: &Tensor, out: &Tensor, hole: &Tensor) -> Result<(f64, f64)> {
    let truth = truth.to_dtype(DType::F32)?;
    let known = (1.0 - hole)?;
    let n_hole = (hole.sum_all()?.to_scalar::<f32>()? as f64 * 3.0).max(1.0);
    let err = |x: &Tensor| -> Result<f64> {
        let d = (x.to_dtype(DType::F32)? - &truth)?
            .sqr()?
            .broadcast_mul(hole)?;
        Ok(d.sum_all()?.to_scalar::<f32>()? as f64 / n_hole)
    };
    // Each image's mean known colour, per channel.
    let sums = truth.broadcast_mul(&known)?.sum_keepdim((2, 3))?;
    let counts = known.sum_keepdim((2, 3))?.clamp(1f32, f32::MAX)?;
    let fill = sums.broadcast_div(&counts)?.broadcast_as(truth.shape())?;
    Ok((err(out)?, err(&fill.contiguous()?)?))
}
