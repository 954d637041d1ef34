//! Convolutional building blocks (the VQ tokenizer's; Palette's UNet will share them): 2-D
//! convolution with optional bias, GroupNorm composed from differentiable primitives, SiLU,
//! nearest 2× upsampling and 2× average pooling. Every op here has a backward pass in candle on
//! CPU (checked by `tests` below).

use super::fused::slice;
use anyhow::Result;
use candle_core::{CpuStorage, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// `torch.nn.Conv2d` with square kernel, symmetric zero padding and optional bias.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = vb.get((cout, cin, kernel, kernel), "weight")?;
        let bias = if bias {
            Some(vb.get(cout, "bias")?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// im2col + GEMM for f32 on CPU (fast backward), candle's convolution elsewhere.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            super::im2col::conv2d(x, &self.weight, self.stride, self.padding)?
        } else {
            x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?,
            None => y,
        })
    }
}

/// `torch.nn.GroupNorm(groups, C, eps, affine=True)` over `[B, C, H, W]`, from primitive ops
/// (population variance, as torch), so gradients reach its input and parameters.
#[derive(Clone, Debug)]
pub struct GroupNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub groups: usize,
    pub eps: f64,
}

impl GroupNorm {
    pub fn load(vb: VarBuilder, groups: usize, channels: usize, eps: f64) -> Result<Self> {
        anyhow::ensure!(
            groups > 0 && channels % groups == 0,
            "GroupNorm: {channels} channels do not split into {groups} groups"
        );
        Ok(Self {
            weight: vb.get(channels, "weight")?,
            bias: vb.get(channels, "bias")?,
            groups,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            return Ok(x.contiguous()?.apply_op3(
                &self.weight.contiguous()?,
                &self.bias.contiguous()?,
                GroupNormOp {
                    groups: self.groups,
                    eps: self.eps,
                },
            )?);
        }
        self.forward_composed(x)
    }

    /// The same from primitive ops (other devices; the reference of the fused op's tests).
    pub fn forward_composed(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let g = self.groups;
        let xg = x.reshape((b, g, (c / g) * h * w))?;
        let mean = xg.mean_keepdim(2)?;
        let xc = xg.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(2)?;
        let xn = xc
            .broadcast_div(&(var + self.eps)?.sqrt()?)?
            .reshape((b, c, h, w))?;
        Ok(xn
            .broadcast_mul(&self.weight.reshape((1, c, 1, 1))?)?
            .broadcast_add(&self.bias.reshape((1, c, 1, 1))?)?)
    }
}

/// GroupNorm over a contiguous f32 `[B, C, H, W]` with per-channel `(weight, bias)`, forward and
/// backward in one pass per group (statistics in f64), in parallel over (image, group): the
/// composed version keeps five full-size intermediates per call in a training graph.
pub struct GroupNormOp {
    pub groups: usize,
    pub eps: f64,
}

/// (mean, 1/std) of one group, accumulated in f64.
fn group_stats(x: &[f32], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps).sqrt())
}

impl candle_core::CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "i2i-group-norm"
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
        let (x, w, b) = (slice(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
        let c = w.len();
        let dims = l1.shape().dims();
        let hw: usize = dims[2..].iter().product();
        let cg = c / self.groups;
        let n = cg * hw;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .enumerate()
            .for_each(|(gi, (yg, xg))| {
                let (mean, rstd) = group_stats(xg, self.eps);
                let c0 = (gi % self.groups) * cg;
                for (j, (yc, xc)) in yg.chunks_mut(hw).zip(xg.chunks(hw)).enumerate() {
                    let a = (rstd * w[c0 + j] as f64) as f32;
                    let d = (b[c0 + j] as f64 - mean * rstd * w[c0 + j] as f64) as f32;
                    for (yv, &xv) in yc.iter_mut().zip(xc) {
                        *yv = xv * a + d;
                    }
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let wv = w.contiguous()?.to_vec1::<f32>()?;
        let c = wv.len();
        let dims = x.dims().to_vec();
        let hw: usize = dims[2..].iter().product();
        let cg = c / self.groups;
        let n = cg * hw;
        let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let gv = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; xv.len()];
        // Per group: dx and the group's channels' partial (dγ, dβ); reduced in group order.
        let partial: Vec<(Vec<f64>, Vec<f64>)> = dx
            .par_chunks_mut(n)
            .zip(xv.par_chunks(n).zip(gv.par_chunks(n)))
            .enumerate()
            .map(|(gi, (dxg, (xg, gg)))| {
                let (mean, rstd) = group_stats(xg, self.eps);
                let c0 = (gi % self.groups) * cg;
                let (mut s1, mut s2) = (0f64, 0f64);
                let mut dw = vec![0f64; cg];
                let mut db = vec![0f64; cg];
                for j in 0..cg {
                    let wc = wv[c0 + j] as f64;
                    for i in j * hw..(j + 1) * hw {
                        let xh = (xg[i] as f64 - mean) * rstd;
                        let g = gg[i] as f64;
                        s1 += g * wc;
                        s2 += g * wc * xh;
                        dw[j] += g * xh;
                        db[j] += g;
                    }
                }
                let (m1, m2) = (s1 / n as f64, s2 / n as f64);
                for j in 0..cg {
                    let wc = wv[c0 + j] as f64;
                    for i in j * hw..(j + 1) * hw {
                        let xh = (xg[i] as f64 - mean) * rstd;
                        dxg[i] = (rstd * (gg[i] as f64 * wc - m1 - xh * m2)) as f32;
                    }
                }
                (dw, db)
            })
            .collect();
        let mut dw = vec![0f64; c];
        let mut db = vec![0f64; c];
        for (gi, (pw, pb)) in partial.iter().enumerate() {
            let c0 = (gi % self.groups) * cg;
            for j in 0..cg {
                dw[c0 + j] += pw[j];
                db[c0 + j] += pb[j];
            }
        }
        let dev = x.device();
        let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
        Ok((
            Some(Tensor::from_vec(dx, x.shape(), dev)?),
            Some(Tensor::from_vec(f(dw), c, dev)?),
            Some(Tensor::from_vec(f(db), c, dev)?),
        ))
    }
}

/// `x · σ(x)` (swish).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    Ok(x.silu()?)
}

/// Nearest-neighbour 2× upsampling (`interpolate(scale_factor=2, mode="nearest")`).
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    Ok(x.upsample_nearest2d(2 * h, 2 * w)?)
}

/// 2×2 average pooling with stride 2 (`avg_pool2d(kernel_size=2, stride=2)`).
pub fn avg_pool2x(x: &Tensor) -> Result<Tensor> {
    Ok(x.avg_pool2d(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Every op of this file passes gradients to its input and to its parameters.
    #[test]
    fn conv_groupnorm_silu_resampling_backpropagate() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.2, (4, 4, 3, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.2, 4, &dev).unwrap()).unwrap();
        let gw = Var::from_tensor(&Tensor::randn(1f32, 0.1, 4, &dev).unwrap()).unwrap();
        let gb = Var::from_tensor(&Tensor::randn(0f32, 0.1, 4, &dev).unwrap()).unwrap();
        let conv = Conv2d {
            weight: w.as_tensor().clone(),
            bias: Some(b.as_tensor().clone()),
            stride: 1,
            padding: 1,
        };
        let gn = GroupNorm {
            weight: gw.as_tensor().clone(),
            bias: gb.as_tensor().clone(),
            groups: 2,
            eps: 1e-6,
        };
        let y = avg_pool2x(
            &upsample2x(
                &silu(&gn.forward(&conv.forward(x.as_tensor()).unwrap()).unwrap()).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b, &gw, &gb] {
            let g = grads.get(v.as_tensor()).expect("gradient");
            let n = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0 && n.is_finite());
        }
    }

    /// The fused CPU GroupNorm equals the composed one, forward and gradients.
    #[test]
    fn fused_group_norm_matches_the_composed_op() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0.3f32, 2.0, (3, 8, 5, 4), &dev).unwrap()).unwrap();
        let gw = Var::from_tensor(&Tensor::randn(1f32, 0.3, 8, &dev).unwrap()).unwrap();
        let gb = Var::from_tensor(&Tensor::randn(0f32, 0.3, 8, &dev).unwrap()).unwrap();
        let gn = GroupNorm {
            weight: gw.as_tensor().clone(),
            bias: gb.as_tensor().clone(),
            groups: 4,
            eps: 1e-5,
        };
        let a = gn.forward(x.as_tensor()).unwrap();
        let b = gn.forward_composed(x.as_tensor()).unwrap();
        assert!(crate::util::max_abs_diff(&a, &b).unwrap() < 1e-5);
        let t = Tensor::randn(0f32, 1.0, a.shape(), &dev).unwrap();
        let ga = (&a * &t).unwrap().sum_all().unwrap().backward().unwrap();
        let gbk = (&b * &t).unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &gw, &gb] {
            let d = crate::util::max_abs_diff(
                ga.get(v.as_tensor()).unwrap(),
                gbk.get(v.as_tensor()).unwrap(),
            )
            .unwrap();
            assert!(d < 1e-4, "gradient differs by {d}");
        }
    }

    /// GroupNorm equals its definition computed by hand for one group.
    #[test]
    fn group_norm_matches_definition() {
        let dev = Device::Cpu;
        let v: Vec<f32> = (0..2 * 2 * 2).map(|i| (i as f32 * 0.7).sin()).collect();
        let x = Tensor::from_vec(v.clone(), (1, 2, 2, 2), &dev).unwrap();
        let gn = GroupNorm {
            weight: Tensor::ones(2, candle_core::DType::F32, &dev).unwrap(),
            bias: Tensor::zeros(2, candle_core::DType::F32, &dev).unwrap(),
            groups: 1,
            eps: 1e-6,
        };
        let y = gn
            .forward(&x)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let m = v.iter().sum::<f32>() / 8.0;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f32>() / 8.0;
        for (a, b) in v.iter().zip(y) {
            assert!(((a - m) / (var + 1e-6).sqrt() - b).abs() < 1e-5);
        }
    }
}
