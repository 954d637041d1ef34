//! The mean squared error as one op on CPU: the composed `(a − b)² mean` keeps the difference
//! and its square in the graph (two tensors of every compared map; for Palette's encoder maps
//! 170 MiB per image of an Ours term), this op keeps nothing but its inputs, which the graph
//! holds anyway. Sums in f64 over fixed chunks, so the value does not depend on the threads.

use super::fused::{slice, with_f32};
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// Values per parallel chunk of the sum (fixed, so the rounding is the same on any pool).
const CHUNK: usize = 1 << 16;

/// Mean squared error, averaged over all elements, of two tensors of the same shape.
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    anyhow::ensure!(
        a.shape() == b.shape(),
        "mse of shapes {:?} and {:?}",
        a.dims(),
        b.dims()
    );
    if a.device().is_cpu() && a.dtype() == DType::F32 && b.dtype() == DType::F32 {
        Ok(a.contiguous()?.apply_op2(&b.contiguous()?, MseOp)?)
    } else {
        Ok((a - b)?.sqr()?.mean_all()?)
    }
}

/// `mean((a − b)²)` as a scalar; backward `2 (a − b) / n` times the incoming gradient.
struct MseOp;

crate::multiversion! {
    /// Σ (a − b)² of one chunk in f64 over 8 lanes (so that the loop vectorises).
    fn sq_diff_sum(a: &[f32], b: &[f32], out: &mut f64) {
        let mut acc = [0f64; 8];
        let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
        let tail: f64 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
            .sum();
        for (xa, xb) in ca.zip(cb) {
            for ((s, &x), &y) in acc.iter_mut().zip(xa).zip(xb) {
                let d = x as f64 - y as f64;
                *s += d * d;
            }
        }
        *out = acc.iter().sum::<f64>() + tail;
    }
}

impl CustomOp2 for MseOp {
    fn name(&self) -> &'static str {
        "i2i-mse"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, b) = (slice(s1, l1)?, slice(s2, l2)?);
        let parts: Vec<f64> = a
            .par_chunks(CHUNK)
            .zip(b.par_chunks(CHUNK))
            .map(|(x, y)| {
                let mut s = 0.0;
                sq_diff_sum(x, y, &mut s);
                s
            })
            .collect();
        let mean = parts.iter().sum::<f64>() / a.len().max(1) as f64;
        Ok((CpuStorage::F32(vec![mean as f32]), Shape::from(())))
    }
    fn bwd(
        &self,
        a: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let scale = 2.0 * grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / a.elem_count() as f32;
        let diff = |sign: f32| -> candle_core::Result<Tensor> {
            let mut d = vec![0f32; a.elem_count()];
            with_f32(a, |av| {
                with_f32(b, |bv| {
                    d.par_chunks_mut(CHUNK)
                        .zip(av.par_chunks(CHUNK).zip(bv.par_chunks(CHUNK)))
                        .for_each(|(d, (x, y))| scaled_diff(d, x, y, sign * scale))
                })
            })??;
            Tensor::from_vec(d, a.shape(), a.device())
        };
        // A target outside the graph (the frozen teacher's maps) gets no gradient.
        let gb = if b.track_op() {
            Some(diff(-1.0)?)
        } else {
            None
        };
        let ga = if a.track_op() { Some(diff(1.0)?) } else { None };
        Ok((ga, gb))
    }
}

crate::multiversion! {
    /// `d = (a − b) · scale`.
    fn scaled_diff(d: &mut [f32], a: &[f32], b: &[f32], scale: f32) {
        for ((d, &x), &y) in d.iter_mut().zip(a).zip(b) {
            *d = (x - y) * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    /// Value and both gradients against the composed ops, on an odd size over several chunks,
    /// and a target outside the graph gets no gradient.
    #[test]
    fn fused_mse_matches_the_composed_ops() {
        let dev = Device::Cpu;
        let n = 3 * super::CHUNK + 17;
        let a = Var::from_tensor(&Tensor::randn(0f32, 1.0, (n,), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0.5f32, 2.0, (n,), &dev).unwrap()).unwrap();
        let fused = (super::mse(&a, &b).unwrap() * 3.0).unwrap();
        let composed = ((a.as_tensor() - b.as_tensor())
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            * 3.0)
            .unwrap();
        let (f, c) = (
            fused.to_scalar::<f32>().unwrap(),
            composed.to_scalar::<f32>().unwrap(),
        );
        assert!((f - c).abs() <= 1e-5 * c.abs(), "{f} vs {c}");
        let (gf, gc) = (fused.backward().unwrap(), composed.backward().unwrap());
        for v in [&a, &b] {
            let d = (gf.get(v).unwrap() - gc.get(v).unwrap())
                .unwrap()
                .abs()
                .unwrap();
            let worst = d.max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(worst <= 1e-9, "gradient differs by {worst}");
        }
        let target = b.as_tensor().detach();
        let g = super::mse(&a, &target).unwrap().backward().unwrap();
        assert!(g.get(&a).is_some() && g.get(&target).is_none());
        assert!(super::mse(
            &a,
            &Tensor::zeros(4, candle_core::DType::F32, &dev).unwrap()
        )
        .is_err());
    }
}
