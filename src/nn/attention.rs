//! Channels-first attention as one op on CPU, for the UNet's `QKVAttentionLegacy`: `q`, `k`, `v`
//! `[N, c, T]` (N = batch × heads, q and k already scaled) →
//! `a[n, :, t] = Σ_s softmax_s(q[n, :, t] · k[n, :, s]) v[n, :, s]`.
//!
//! The composed ops keep the `T × T` scores, their softmax and its transposed copy in the graph
//! for every head (at Palette-base's middle block, 1024 tokens × 16 heads: 3 × 67 MiB per image,
//! and as many again in the backward pass). This op keeps only q, k and v, and computes each
//! head's scores again in the backward pass (one more `T × T × c` product per head), one head
//! at a time per thread: `T × T` scratch per thread instead of per head.

use super::fused::{slice, softmax_bwd_rows, softmax_rows, with_f32};
use super::gemm::gemm_rows_on;
use super::transpose_tiled_into as transpose_into;
use super::Mode;
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use rayon::prelude::*;

/// The attention of `q`, `k`, `v` (`[N, c, T]`, scaled already), `[N, c, T]`: one op on CPU
/// for f32, the composed ops elsewhere (differentiable in `Mode::Train`).
pub fn attention_channels_first(q: &Tensor, k: &Tensor, v: &Tensor, mode: Mode) -> Result<Tensor> {
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    if q.device().is_cpu() && [&q, &k, &v].iter().all(|t| t.dtype() == DType::F32) {
        anyhow::ensure!(
            q.dims().len() == 3 && q.shape() == k.shape() && q.shape() == v.shape(),
            "attention: q, k, v of shapes {:?}, {:?}, {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
        return Ok(q.apply_op3(&k, &v, AttentionOp)?);
    }
    let weight = q.transpose(1, 2)?.contiguous()?.matmul(&k)?;
    let weight = super::softmax_last(&weight, mode)?;
    Ok(v.matmul(&weight.transpose(1, 2)?.contiguous()?)?)
}

struct AttentionOp;

/// One head's softmax(qᵀ k) into `p` (`[T][T]`); `qt` scratch of `T × c`, `scores` of `T × T`.
fn probs(q: &[f32], k: &[f32], (c, t): (usize, usize), [qt, scores, p]: [&mut [f32]; 3]) {
    transpose_into(q, c, t, qt);
    gemm_rows_on(1, (t, t, c), scores, t, qt, c, k, t, false);
    softmax_rows(p, scores, t);
}

impl CustomOp3 for AttentionOp {
    fn name(&self) -> &'static str {
        "i2i-attention"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let (_, c, t) = l1.shape().dims3()?;
        let mut out = vec![0f32; q.len()];
        out.par_chunks_mut(c * t).enumerate().for_each_init(
            || {
                let (tc, tt) = (vec![0f32; t * c], vec![0f32; t * t]);
                (tc.clone(), tt.clone(), tt, tc)
            },
            |(scratch, scores, p, at), (n, a)| {
                let head = n * c * t..(n + 1) * c * t;
                probs(
                    &q[head.clone()],
                    &k[head.clone()],
                    (c, t),
                    [scratch, scores, p],
                );
                // aᵀ = P · vᵀ, then a.
                transpose_into(&v[head], c, t, scratch);
                gemm_rows_on(1, (t, c, t), at, c, p, t, scratch, c, false);
                transpose_into(at, t, c, a);
            },
        );
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (_, c, t) = q.dims3()?;
        let n = q.elem_count();
        let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        with_f32(q, |q| {
            with_f32(k, |k| {
                with_f32(v, |v| {
                    with_f32(grad, |g| {
                        dq.par_chunks_mut(c * t)
                            .zip(dk.par_chunks_mut(c * t).zip(dv.par_chunks_mut(c * t)))
                            .enumerate()
                            .for_each_init(
                                || HeadScratch::new(c, t),
                                |s, (i, (dq, (dk, dv)))| {
                                    let h = i * c * t..(i + 1) * c * t;
                                    let ins = [&q[h.clone()], &k[h.clone()], &v[h.clone()]];
                                    s.backward(ins, &g[h], (c, t), [dq, dk, dv]);
                                },
                            )
                    })
                })
            })
        })????;
        let f = |d: Vec<f32>| Tensor::from_vec(d, q.shape(), q.device());
        Ok((Some(f(dq)?), Some(f(dk)?), Some(f(dv)?)))
    }
}

/// One thread's buffers for the backward pass of a head.
struct HeadScratch {
    ct: Vec<f32>,
    p: Vec<f32>,
    dp: Vec<f32>,
    ds: Vec<f32>,
}

impl HeadScratch {
    fn new(c: usize, t: usize) -> Self {
        Self {
            ct: vec![0f32; t * c],
            p: vec![0f32; t * t],
            dp: vec![0f32; t * t],
            ds: vec![0f32; t * t],
        }
    }

    /// With P = softmax(qᵀk) and a = v Pᵀ: dv = da · P, dP = daᵀ v, dS = P ⊙ (dP − rowsum(dP ⊙ P)),
    /// dk = q · dS, dqᵀ = dS · kᵀ.
    fn backward(
        &mut self,
        [q, k, v]: [&[f32]; 3],
        da: &[f32],
        (c, t): (usize, usize),
        [dq, dk, dv]: [&mut [f32]; 3],
    ) {
        probs(q, k, (c, t), [&mut self.ct, &mut self.ds, &mut self.p]);
        gemm_rows_on(1, (c, t, t), dv, t, da, t, &self.p, t, false);
        transpose_into(da, c, t, &mut self.ct);
        gemm_rows_on(1, (t, t, c), &mut self.dp, t, &self.ct, c, v, t, false);
        softmax_bwd_rows(&mut self.ds, &self.p, &self.dp, t);
        gemm_rows_on(1, (c, t, t), dk, t, q, t, &self.ds, t, false);
        // dqᵀ in `dp`'s first T·c values (dP is no longer needed), then dq.
        transpose_into(k, c, t, &mut self.ct);
        gemm_rows_on(
            1,
            (t, c, t),
            &mut self.dp,
            c,
            &self.ds,
            t,
            &self.ct,
            c,
            false,
        );
        transpose_into(&self.dp[..t * c], t, c, dq);
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    /// Forward and the three gradients against the composed ops (candle's matmul and
    /// softmax), on odd sizes.
    #[test]
    fn fused_attention_matches_the_composed_ops() {
        let dev = Device::Cpu;
        for (n, c, t) in [(3, 5, 7), (2, 8, 33), (1, 1, 1)] {
            let var =
                || Var::from_tensor(&Tensor::randn(0f32, 1.0, (n, c, t), &dev).unwrap()).unwrap();
            let (q, k, v) = (var(), var(), var());
            let w = Tensor::randn(0f32, 1.0, (n, c, t), &dev).unwrap();
            let fused = super::attention_channels_first(&q, &k, &v, super::Mode::Train).unwrap();
            let weight = q
                .transpose(1, 2)
                .unwrap()
                .contiguous()
                .unwrap()
                .matmul(&k)
                .unwrap();
            let weight = candle_nn::ops::softmax(&weight, candle_core::D::Minus1).unwrap();
            let composed = v
                .matmul(&weight.transpose(1, 2).unwrap().contiguous().unwrap())
                .unwrap();
            let close = |a: &Tensor, b: &Tensor, what: &str| {
                let d = (a - b).unwrap().abs().unwrap().flatten_all().unwrap();
                let worst = d.max(0).unwrap().to_scalar::<f32>().unwrap();
                assert!(worst <= 1e-5, "{what} ({n}, {c}, {t}): {worst}");
            };
            close(&fused, &composed, "forward");
            let gf = (fused * &w).unwrap().sum_all().unwrap().backward().unwrap();
            let gc = (composed * &w)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (x, name) in [(&q, "dq"), (&k, "dk"), (&v, "dv")] {
                close(gf.get(x).unwrap(), gc.get(x).unwrap(), name);
            }
        }
    }
}
