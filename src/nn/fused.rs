//! CPU kernels with a backward pass for the ops that dominate small-ViT training on CPU.
//!
//! candle's own fused LayerNorm / softmax record no gradient, and composing them from primitive
//! ops is correct but slow on CPU (a dozen allocations per call, strided reductions in the
//! backward pass of every broadcast). These `CustomOp`s compute forward and backward in one pass
//! over contiguous rows, in parallel over rows. Other devices use the composed ops
//! (see [`super::LayerNorm::forward`]). Gradients are checked against the composed ops in tests.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

pub(crate) fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> Result<&'a [f32]> {
    let data = s.as_slice::<f32>()?;
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("fused op: input must be contiguous"),
    }
}

/// Run `f` on the f32 values of `t` in row-major order: without a copy when `t` is a contiguous
/// CPU tensor (the usual case for gradients), else on a contiguous copy.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            if let Ok(data) = cpu.as_slice::<f32>() {
                return Ok(f(&data[a..b]));
            }
        }
    }
    let v = t.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&v))
}

/// Rows per parallel task: enough work to amortise scheduling.
fn chunk_rows(d: usize) -> usize {
    (16384 / d.max(1)).max(1)
}

/// LayerNorm over the last dimension of a contiguous f32 tensor: `(x, weight, bias)`.
pub struct LayerNormOp {
    pub eps: f32,
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "i2i-layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, w, b) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let d = w.len();
        let mut y = vec![0f32; x.len()];
        let cr = chunk_rows(d);
        y.par_chunks_mut(d * cr)
            .zip(x.par_chunks(d * cr))
            .for_each(|(yc, xc)| layer_norm_rows(yc, xc, w, b, self.eps));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let wv = w.contiguous()?.to_vec1::<f32>()?;
        let d = wv.len();
        let cr = chunk_rows(d);
        let mut dx = vec![0f32; x.elem_count()];
        let partial = with_f32(x, |xv| {
            with_f32(grad, |gv| {
                layer_norm_bwd(xv, gv, &wv, &mut dx, d, cr, self.eps)
            })
        })??;
        let mut dw = vec![0f32; d];
        let mut db = vec![0f32; d];
        for (pw, pb) in partial {
            for i in 0..d {
                dw[i] += pw[i];
                db[i] += pb[i];
            }
        }
        let dev = x.device();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(dw, w.shape(), dev)?),
            Some(Tensor::from_vec(db, w.shape(), dev)?),
        ))
    }
}

crate::multiversion! {
    /// LayerNorm of the rows of a chunk (`w.len()` values each).
    fn layer_norm_rows(yc: &mut [f32], xc: &[f32], w: &[f32], b: &[f32], eps: f32) {
        let d = w.len();
        for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
            let mean = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            // Zipped, not indexed: without bounds checks the loop vectorises.
            for ((y, &xv), (&wi, &bi)) in yr.iter_mut().zip(xr).zip(w.iter().zip(b)) {
                *y = (xv - mean) * rstd * wi + bi;
            }
        }
    }
}

crate::multiversion! {
    /// LayerNorm backward of the rows of a chunk, accumulating into `dw` and `db`.
    fn layer_norm_bwd_rows(
        dxc: &mut [f32],
        xc: &[f32],
        gc: &[f32],
        wv: &[f32],
        dw: &mut [f32],
        db: &mut [f32],
        xhat: &mut [f32],
        eps: f32,
    ) {
        let d = wv.len();
        for ((dxr, xr), gr) in dxc.chunks_mut(d).zip(xc.chunks(d)).zip(gc.chunks(d)) {
            let mean = xr.iter().sum::<f32>() / d as f32;
            let var = xr.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            // The element-wise part apart from the two in-order sums, zipped rather than
            // indexed, so it vectorises; every value is computed as before, bit for bit.
            let xhat = &mut xhat[..d];
            for ((xh, &xv), ((dwi, dbi), &g)) in xhat
                .iter_mut()
                .zip(xr)
                .zip(dw.iter_mut().zip(db.iter_mut()).zip(gr))
            {
                *xh = (xv - mean) * rstd;
                *dwi += g * *xh;
                *dbi += g;
            }
            let (mut s1, mut s2) = (0f32, 0f32);
            for ((&g, &wi), &xh) in gr.iter().zip(wv).zip(xhat.iter()) {
                let gh = g * wi;
                s1 += gh;
                s2 += gh * xh;
            }
            let (m1, m2) = (s1 / d as f32, s2 / d as f32);
            for ((dx, &g), (&wi, &xh)) in dxr.iter_mut().zip(gr).zip(wv.iter().zip(xhat.iter())) {
                *dx = rstd * (g * wi - m1 - xh * m2);
            }
        }
    }
}

/// LayerNorm backward over rows; returns per-chunk partial sums of (dw, db), reduced by the caller
/// in chunk order (deterministic).
fn layer_norm_bwd(
    xv: &[f32],
    gv: &[f32],
    wv: &[f32],
    dx: &mut [f32],
    d: usize,
    cr: usize,
    eps: f32,
) -> Vec<(Vec<f32>, Vec<f32>)> {
    dx.par_chunks_mut(d * cr)
        .zip(xv.par_chunks(d * cr).zip(gv.par_chunks(d * cr)))
        .map(|(dxc, (xc, gc))| {
            let mut dw = vec![0f32; d];
            let mut db = vec![0f32; d];
            let mut xhat = vec![0f32; d];
            layer_norm_bwd_rows(dxc, xc, gc, wv, &mut dw, &mut db, &mut xhat, eps);
            (dw, db)
        })
        .collect()
}

/// Softmax over the last dimension of a contiguous f32 tensor.
pub struct SoftmaxOp;

impl CustomOp1 for SoftmaxOp {
    fn name(&self) -> &'static str {
        "i2i-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let d = *l.dims().last().unwrap_or(&1);
        let mut y = vec![0f32; x.len()];
        let cr = chunk_rows(d);
        y.par_chunks_mut(d * cr)
            .zip(x.par_chunks(d * cr))
            .for_each(|(yc, xc)| softmax_rows(yc, xc, d));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let d = *res.dims().last().unwrap_or(&1);
        let mut dx = vec![0f32; res.elem_count()];
        let cr = chunk_rows(d);
        with_f32(res, |yv| {
            with_f32(grad, |gv| {
                dx.par_chunks_mut(d * cr)
                    .zip(yv.par_chunks(d * cr).zip(gv.par_chunks(d * cr)))
                    .for_each(|(dc, (yc, gc))| softmax_bwd_rows(dc, yc, gc, d))
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, res.shape(), res.device())?))
    }
}

crate::multiversion! {
    /// Softmax of the rows of a chunk (`d` values each).
    pub(crate) fn softmax_rows(yc: &mut [f32], xc: &[f32], d: usize) {
        for (yr, xr) in yc.chunks_mut(d).zip(xc.chunks(d)) {
            let m = xr.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            // The exponentials in one loop (it vectorises), their sum in order in another.
            for (y, &xv) in yr.iter_mut().zip(xr) {
                *y = exp(xv - m);
            }
            let mut s = 0f32;
            for &e in yr.iter() {
                s += e;
            }
            let inv = 1.0 / s;
            yr.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

crate::multiversion! {
    /// Softmax backward of the rows of a chunk.
    pub(crate) fn softmax_bwd_rows(dc: &mut [f32], yc: &[f32], gc: &[f32], d: usize) {
        for ((dr, yr), gr) in dc.chunks_mut(d).zip(yc.chunks(d)).zip(gc.chunks(d)) {
            let dot: f32 = yr.iter().zip(gr).map(|(a, b)| a * b).sum();
            for ((dv, &yv), &g) in dr.iter_mut().zip(yr).zip(gr) {
                *dv = yv * (g - dot);
            }
        }
    }
}

/// `x + bias` for `x: [..., n]` (contiguous) and `bias: [n]`; the backward pass sums the gradient
/// over rows directly instead of through candle's strided reduction.
pub struct BiasAddOp;

impl CustomOp2 for BiasAddOp {
    fn name(&self) -> &'static str {
        "i2i-bias-add"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (x, b) = (slice(s1, l1)?, slice(s2, l2)?);
        let d = b.len();
        let mut y = x.to_vec();
        let cr = chunk_rows(d);
        y.par_chunks_mut(d * cr).for_each(|yc| add_rows(yc, b));
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let d = b.elem_count();
        let cr = chunk_rows(d) * 4;
        let partial: Vec<Vec<f32>> = with_f32(grad, |gv| {
            gv.par_chunks(d * cr)
                .map(|gc| {
                    let mut s = vec![0f32; d];
                    for gr in gc.chunks(d) {
                        add_rows(&mut s, gr);
                    }
                    s
                })
                .collect()
        })?;
        let mut db = vec![0f32; d];
        for p in partial {
            for (a, v) in db.iter_mut().zip(p) {
                *a += v;
            }
        }
        Ok((
            Some(grad.clone()),
            Some(Tensor::from_vec(db, b.shape(), b.device())?),
        ))
    }
}

crate::multiversion! {
    /// `row += v` for every row (`v.len()` values) of `rows`.
    fn add_rows(rows: &mut [f32], v: &[f32]) {
        for r in rows.chunks_mut(v.len()) {
            for (a, b) in r.iter_mut().zip(v) {
                *a += b;
            }
        }
    }
}

/// Round-to-nearest constant: adding and subtracting 1.5·2²³ rounds to an integer without a libm
/// call (so loops vectorise).
const EXP_MAGIC: f32 = 12_582_912.0;

/// The two halves of [`exp`]'s argument reduction: `x·log₂e + 1.5·2²³` (the integer n = round(x
/// log₂e) sits in its low mantissa bits) and e^r for r = x − n·ln2 (Cody–Waite, |r| ≤ ln2/2) by
/// its degree-7 Taylor polynomial.
#[inline(always)]
fn exp_parts(x: f32) -> (f32, f32) {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let shifted = x * std::f32::consts::LOG2_E + EXP_MAGIC;
    let n = shifted - EXP_MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    (shifted, p)
}

/// e^x in f32 without a libm call, so loops over it vectorise: e^r from [`exp_parts`] times 2ⁿ
/// from exponent bits. Relative error below 5e-7 on [−87, 88]; the input is clamped to
/// [−87.3, 88].
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let (shifted, p) = exp_parts(x.clamp(-87.3, 88.0));
    // n read from `shifted`'s bits (same binade as the magic constant): integer lane arithmetic,
    // where `n as i32` (saturating, NaN → 0) compiled to one scalar conversion per lane and kept
    // the callers' loops from vectorising. Same value for every finite x.
    let n = shifted.to_bits().wrapping_sub(EXP_MAGIC.to_bits()) as i32;
    p * f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// erf(x) in f32 from Numerical Recipes' Chebyshev fit of erfc (relative error of the fit below
/// 1.2e-7; about 1e-6 after f32 rounding): one `expf` per value, cheap enough to vectorise.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_204
                                + t * (1.488_516 + t * (-0.822_152_2 + t * 0.170_872_8))))))));
    let r = 1.0 - t * exp(poly);
    if x >= 0.0 {
        r
    } else {
        -r
    }
}

/// Exact (erf-based) GELU, `x · Φ(x)`, with its derivative `Φ(x) + x · φ(x)` in the backward pass.
pub struct GeluErfOp;

const FRAC_1_SQRT_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
const INV_SQRT_2PI: f32 = 0.398_942_3;

crate::multiversion! {
    fn gelu_chunk(yc: &mut [f32], xc: &[f32]) {
        for (v, &xi) in yc.iter_mut().zip(xc) {
            *v = 0.5 * xi * (1.0 + erf(xi * FRAC_1_SQRT_2));
        }
    }
}

crate::multiversion! {
    fn gelu_bwd_chunk(dc: &mut [f32], xc: &[f32], gc: &[f32]) {
        for ((d, &xi), &gi) in dc.iter_mut().zip(xc).zip(gc) {
            let cdf = 0.5 * (1.0 + erf(xi * FRAC_1_SQRT_2));
            let pdf = INV_SQRT_2PI * exp(-0.5 * xi * xi);
            *d = gi * (cdf + xi * pdf);
        }
    }
}

impl CustomOp1 for GeluErfOp {
    fn name(&self) -> &'static str {
        "i2i-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = slice(s, l)?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(16384)
            .zip(x.par_chunks(16384))
            .for_each(|(yc, xc)| gelu_chunk(yc, xc));
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let mut dx = vec![0f32; arg.elem_count()];
        with_f32(arg, |xv| {
            with_f32(grad, |gv| {
                dx.par_chunks_mut(16384)
                    .zip(xv.par_chunks(16384).zip(gv.par_chunks(16384)))
                    .for_each(|(dc, (xc, gc))| gelu_bwd_chunk(dc, xc, gc))
            })
        })??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var, D};

    fn close(a: &Tensor, b: &Tensor, tol: f32) {
        let r = crate::util::max_rel_diff(a, b, 1.0).unwrap();
        assert!(r < tol, "max diff relative to max(|b|, 1): {r}");
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (a, b) = (exp(x) as f64, (x as f64).exp());
            assert!(((a - b) / b).abs() < 5e-7, "exp({x}) = {a}, want {b}");
        }
        assert_eq!(exp(-200.0), exp(-87.3));
        assert!(exp(-200.0) < 1e-37);
    }

    #[test]
    fn exp_bits_equal_the_scalar_conversion_route() {
        // 2ⁿ from the shifted value's bits must equal the `n as i32` route it replaced, bit for
        // bit, so trained weights keep their digits.
        let reference = |x: f32| -> f32 {
            let (shifted, p) = exp_parts(x.clamp(-87.3, 88.0));
            let n = shifted - EXP_MAGIC;
            p * f32::from_bits(((n as i32 + 127) as u32) << 23)
        };
        for i in -2_000_000..=2_000_000 {
            let x = i as f32 * 5e-5;
            assert_eq!(exp(x).to_bits(), reference(x).to_bits(), "x = {x}");
        }
        for x in [-1e30, -88.0, -87.3, 88.0, 88.7, 1e30, f32::MIN, f32::MAX] {
            assert_eq!(exp(x).to_bits(), reference(x).to_bits(), "x = {x}");
        }
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn erf_approximation_is_accurate_and_gelu_gradient_matches_candle() {
        for i in -400..=400 {
            let x = i as f64 / 50.0;
            // Reference: candle's (libm) erf via gelu_erf identity is f32; compare with f64 series.
            let want = libm_erf(x);
            assert!((erf(x as f32) as f64 - want).abs() < 2e-6, "erf({x})");
        }
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 2.0, (4, 33), &dev).unwrap()).unwrap();
        let a = x.as_tensor().apply_op1(GeluErfOp).unwrap();
        let b = x.as_tensor().gelu_erf().unwrap();
        close(&a, &b, 1e-6);
        let ga = a
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .clone();
        let gb = b
            .sum_all()
            .unwrap()
            .backward()
            .unwrap()
            .get(x.as_tensor())
            .unwrap()
            .clone();
        close(&ga, &gb, 1e-5);
    }

    /// erf by its Taylor series (|x| ≤ 3) or continued fraction of erfc (|x| > 3), in f64.
    fn libm_erf(x: f64) -> f64 {
        if x.abs() <= 3.0 {
            let mut sum = 0.0f64;
            let mut term = x;
            let mut n = 0;
            while term.abs() > 1e-17 * sum.abs().max(1e-300) || n < 5 {
                sum += term / (2 * n + 1) as f64;
                n += 1;
                term *= -x * x / n as f64;
                if n > 200 {
                    break;
                }
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let z = x.abs();
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (z + f);
            }
            let erfc = (-z * z).exp() / std::f64::consts::PI.sqrt() / (z + f);
            (1.0 - erfc) * x.signum()
        }
    }

    /// Forward values and every gradient of the fused ops equal those of the composed ops.
    #[test]
    fn fused_ops_match_composed_ops_forward_and_backward() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0.5f32, 2.0, (3, 5, 24), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.3, 24, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.3, 24, &dev).unwrap()).unwrap();
        let probe = Tensor::randn(0f32, 1.0, (3, 5, 24), &dev).unwrap();
        let run = |fused: bool| {
            let xt = x.as_tensor();
            let ln = if fused {
                xt.apply_op3(w.as_tensor(), b.as_tensor(), LayerNormOp { eps: 1e-5 })
                    .unwrap()
            } else {
                let mean = xt.mean_keepdim(D::Minus1).unwrap();
                let c = xt.broadcast_sub(&mean).unwrap();
                let var = c.sqr().unwrap().mean_keepdim(D::Minus1).unwrap();
                c.broadcast_div(&(var + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(w.as_tensor())
                    .unwrap()
                    .broadcast_add(b.as_tensor())
                    .unwrap()
            };
            let sm = if fused {
                ln.apply_op1(SoftmaxOp).unwrap()
            } else {
                candle_nn::ops::softmax(&ln, D::Minus1).unwrap()
            };
            let ba = if fused {
                sm.apply_op2(b.as_tensor(), BiasAddOp).unwrap()
            } else {
                sm.broadcast_add(b.as_tensor()).unwrap()
            };
            let loss = (ba * &probe).unwrap().sum_all().unwrap();
            let g = loss.backward().unwrap();
            (
                loss,
                g.get(x.as_tensor()).unwrap().clone(),
                g.get(w.as_tensor()).unwrap().clone(),
                g.get(b.as_tensor()).unwrap().clone(),
            )
        };
        let (l1, gx1, gw1, gb1) = run(true);
        let (l2, gx2, gw2, gb2) = run(false);
        close(&l1, &l2, 1e-5);
        close(&gx1, &gx2, 1e-4);
        close(&gw1, &gw2, 1e-4);
        close(&gb1, &gb2, 1e-4);
    }
}
