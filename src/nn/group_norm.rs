//! `torch.nn.GroupNorm`, and the two places it is followed by more element-wise work in the
//! convolutional families: SiLU (`silu(norm(x))`, every residual block's input) and a
//! per-(image, channel) scale-shift then SiLU (`silu(norm(x) · (1 + scale) + shift)`, the
//! scale-shift norm of Palette's residual blocks). On CPU each is one op whose backward pass
//! recomputes what it needs from the input, so that a training graph keeps one tensor per call
//! where the composed ops keep two to eight.

use super::fused::slice;
use anyhow::Result;
use candle_core::{CpuStorage, Layout, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

/// `torch.nn.GroupNorm(groups, C, eps, affine=True)` over `[B, C, H, W]`.
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

    fn fused(x: &Tensor) -> bool {
        x.device().is_cpu() && x.dtype() == candle_core::DType::F32
    }

    fn op(&self, silu: bool, modulated: bool) -> GroupNormOp {
        GroupNormOp {
            groups: self.groups,
            eps: self.eps,
            silu,
            modulated,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, false)
    }

    /// `silu(self.forward(x))`.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, true)
    }

    /// The norm, then SiLU where `silu`: one op on CPU, the composed ops elsewhere.
    fn forward_act(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        if !Self::fused(x) {
            let y = self.forward_composed(x)?;
            return Ok(if silu { y.silu()? } else { y });
        }
        Ok(x.contiguous()?.apply_op3(
            &self.weight.contiguous()?,
            &self.bias.contiguous()?,
            self.op(silu, false),
        )?)
    }

    /// `silu(self.forward(x) · (1 + scale) + shift)` with `modulation` `[B, 2C]`: the scale of
    /// each (image, channel), then its shift.
    pub fn forward_modulated_silu(&self, x: &Tensor, modulation: &Tensor) -> Result<Tensor> {
        let (b, c, _, _) = x.dims4()?;
        anyhow::ensure!(
            modulation.dims() == [b, 2 * c],
            "GroupNorm modulation {:?} for a [{b}, {c}, ..] input: want [{b}, {}]",
            modulation.dims(),
            2 * c
        );
        if Self::fused(x) {
            let wb = Tensor::cat(&[&self.weight, &self.bias], 0)?;
            return Ok(x.contiguous()?.apply_op3(
                &wb,
                &modulation.contiguous()?,
                self.op(true, true),
            )?);
        }
        self.forward_modulated_composed(x, modulation)
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

    /// [`GroupNorm::forward_modulated_silu`] from primitive ops.
    pub fn forward_modulated_composed(&self, x: &Tensor, modulation: &Tensor) -> Result<Tensor> {
        let c = x.dim(1)?;
        let scale = modulation.narrow(1, 0, c)?.unsqueeze(2)?.unsqueeze(3)?;
        let shift = modulation.narrow(1, c, c)?.unsqueeze(2)?.unsqueeze(3)?;
        Ok(self
            .forward_composed(x)?
            .broadcast_mul(&(scale + 1.0)?)?
            .broadcast_add(&shift)?
            .silu()?)
    }
}

/// GroupNorm over a contiguous f32 `[B, C, H, W]`, then optionally a per-(image, channel)
/// scale-shift and SiLU, forward and backward in one pass per group (statistics in f64), in
/// parallel over (image, group). Inputs: `(x, weight [C], bias [C])`, or with `modulated`
/// `(x, [weight; bias] [2C], modulation [B, 2C])`.
pub struct GroupNormOp {
    pub groups: usize,
    pub eps: f64,
    pub silu: bool,
    pub modulated: bool,
}

/// (mean, 1/std) of one group, accumulated in f64.
fn group_stats(x: &[f32], eps: f64) -> (f64, f64) {
    let n = x.len() as f64;
    let mut sums = [0f64; 2];
    lane_sums(x, 0.0, false, &mut sums[0]);
    let mean = sums[0] / n;
    lane_sums(x, mean, true, &mut sums[1]);
    (mean, 1.0 / (sums[1] / n + eps).sqrt())
}

crate::multiversion! {
    /// `out` = Σ (x − center), or Σ (x − center)² where `square`, in f64 over 8 lanes (so
    /// that the loop vectorises), the lanes summed at the end.
    fn lane_sums(x: &[f32], center: f64, square: bool, out: &mut f64) {
        let f = |v: f32| {
            let d = v as f64 - center;
            if square { d * d } else { d }
        };
        let mut acc = [0f64; 8];
        let chunks = x.chunks_exact(8);
        let rest = chunks.remainder();
        for c in chunks {
            for (a, &v) in acc.iter_mut().zip(c) {
                *a += f(v);
            }
        }
        *out = acc.iter().sum::<f64>() + rest.iter().map(|&v| f(v)).sum::<f64>();
    }
}

crate::multiversion! {
    /// `y = x·a + d`, through the SiLU where asked (its exponential from
    /// [`crate::nn::fused::exp`], so that the loop vectorises).
    fn affine_act(y: &mut [f32], x: &[f32], a: f32, d: f32, silu: bool) {
        if silu {
            for (yv, &xv) in y.iter_mut().zip(x) {
                let v = xv * a + d;
                *yv = v / (1.0 + crate::nn::fused::exp(-v));
            }
        } else {
            for (yv, &xv) in y.iter_mut().zip(x) {
                *yv = xv * a + d;
            }
        }
    }
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// What one group needs: its channels' affine parameters and modulation.
struct GroupParams<'a> {
    w: &'a [f32],
    b: &'a [f32],
    /// `(scale, shift)` of this image's channels, when modulated.
    modulation: Option<(&'a [f32], &'a [f32])>,
}

impl GroupParams<'_> {
    /// (1 + scale, shift) of channel `j` of the group.
    fn scale_shift(&self, j: usize) -> (f64, f64) {
        self.modulation
            .map_or((1.0, 0.0), |(s, t)| (1.0 + s[j] as f64, t[j] as f64))
    }
}

impl GroupNormOp {
    /// Per group `gi` of the batch, its parameters: `w`, `b` `[C]`, `m` `[B, 2C]` or empty.
    fn params<'a>(
        &self,
        gi: usize,
        (w, b, m): (&'a [f32], &'a [f32], &'a [f32]),
    ) -> GroupParams<'a> {
        let c = w.len();
        let cg = c / self.groups;
        let (img, c0) = (gi / self.groups, (gi % self.groups) * cg);
        GroupParams {
            w: &w[c0..c0 + cg],
            b: &b[c0..c0 + cg],
            modulation: self.modulated.then(|| {
                let row = &m[img * 2 * c..(img + 1) * 2 * c];
                (&row[c0..c0 + cg], &row[c + c0..c + c0 + cg])
            }),
        }
    }

    /// `(weight, bias, modulation)` from the op's second and third inputs.
    fn split<'a>(&self, p2: &'a [f32], p3: &'a [f32]) -> (&'a [f32], &'a [f32], &'a [f32]) {
        if self.modulated {
            let c = p2.len() / 2;
            (&p2[..c], &p2[c..], p3)
        } else {
            (p2, p3, &[])
        }
    }
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
        let x = slice(s1, l1)?;
        let wbm = self.split(slice(s2, l2)?, slice(s3, l3)?);
        let c = wbm.0.len();
        let hw: usize = l1.shape().dims()[2..].iter().product();
        let n = (c / self.groups) * hw;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(n)
            .zip(x.par_chunks(n))
            .enumerate()
            .for_each(|(gi, (yg, xg))| {
                let p = self.params(gi, wbm);
                let (mean, rstd) = group_stats(xg, self.eps);
                for (j, (yc, xc)) in yg.chunks_mut(hw).zip(xg.chunks(hw)).enumerate() {
                    let (s, t) = p.scale_shift(j);
                    let (wc, bc) = (p.w[j] as f64, p.b[j] as f64);
                    let a = (rstd * wc * s) as f32;
                    let d = ((bc - mean * rstd * wc) * s + t) as f32;
                    affine_act(yc, xc, a, d, self.silu);
                }
            });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }
    fn bwd(
        &self,
        x: &Tensor,
        p2: &Tensor,
        p3: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (v2, v3) = (
            p2.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
            p3.contiguous()?.flatten_all()?.to_vec1::<f32>()?,
        );
        let wbm = self.split(&v2, &v3);
        let c = wbm.0.len();
        let dims = x.dims().to_vec();
        let (batch, hw) = (dims[0], dims[2..].iter().product::<usize>());
        let cg = c / self.groups;
        let n = cg * hw;
        let xv = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let gv = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let mut dx = vec![0f32; xv.len()];
        // Per group: dx, and per channel of the group (dγ, dβ, d scale, d shift).
        let partial: Vec<Vec<[f64; 4]>> = dx
            .par_chunks_mut(n)
            .zip(xv.par_chunks(n).zip(gv.par_chunks(n)))
            .enumerate()
            .map(|(gi, (dxg, (xg, gg)))| self.group_backward(gi, wbm, (xg, gg), hw, dxg))
            .collect();
        let mut dw = vec![0f64; c];
        let mut db = vec![0f64; c];
        let mut dm = vec![0f64; if self.modulated { batch * 2 * c } else { 0 }];
        for (gi, part) in partial.iter().enumerate() {
            let (img, c0) = (gi / self.groups, (gi % self.groups) * cg);
            for (j, [pw, pb, ps, pt]) in part.iter().enumerate() {
                dw[c0 + j] += pw;
                db[c0 + j] += pb;
                if self.modulated {
                    dm[img * 2 * c + c0 + j] = *ps;
                    dm[img * 2 * c + c + c0 + j] = *pt;
                }
            }
        }
        let dev = x.device();
        let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
        let dx = Tensor::from_vec(dx, x.shape(), dev)?;
        Ok(if self.modulated {
            let mut dwb = dw;
            dwb.extend(db);
            (
                Some(dx),
                Some(Tensor::from_vec(f(dwb), 2 * c, dev)?),
                Some(Tensor::from_vec(f(dm), (batch, 2 * c), dev)?),
            )
        } else {
            (
                Some(dx),
                Some(Tensor::from_vec(f(dw), c, dev)?),
                Some(Tensor::from_vec(f(db), c, dev)?),
            )
        })
    }
}

impl GroupNormOp {
    /// One group's backward pass: `dxg` from the group's input and output gradient, and per
    /// channel its `[dγ, dβ, d scale, d shift]` partials.
    fn group_backward(
        &self,
        gi: usize,
        wbm: (&[f32], &[f32], &[f32]),
        (xg, gg): (&[f32], &[f32]),
        hw: usize,
        dxg: &mut [f32],
    ) -> Vec<[f64; 4]> {
        let p = self.params(gi, wbm);
        let (mean, rstd) = group_stats(xg, self.eps);
        let n = xg.len() as f64;
        let mut part = vec![[0f64; 4]; p.w.len()];
        let (mut s1, mut s2) = (0f64, 0f64);
        // Per element: x̂ and the gradient reaching the normalised value z = x̂·γ + β (through
        // the SiLU and the scale-shift), kept for the dx pass.
        let mut gq = vec![0f64; xg.len()];
        for (j, acc) in part.iter_mut().enumerate() {
            let (s, t) = p.scale_shift(j);
            let (wc, bc) = (p.w[j] as f64, p.b[j] as f64);
            for i in j * hw..(j + 1) * hw {
                let xh = (xg[i] as f64 - mean) * rstd;
                let z = xh * wc + bc;
                let mut gp = gg[i] as f64;
                if self.silu {
                    let y = z * s + t;
                    let sg = sigmoid(y);
                    gp *= sg * (1.0 + y * (1.0 - sg));
                }
                let q = gp * s;
                gq[i] = q;
                acc[0] += q * xh;
                acc[1] += q;
                acc[2] += gp * z;
                acc[3] += gp;
                s1 += q * wc;
                s2 += q * wc * xh;
            }
        }
        let (m1, m2) = (s1 / n, s2 / n);
        for (j, dxc) in dxg.chunks_mut(hw).enumerate() {
            let wc = p.w[j] as f64;
            for (k, d) in dxc.iter_mut().enumerate() {
                let i = j * hw + k;
                let xh = (xg[i] as f64 - mean) * rstd;
                *d = (rstd * (gq[i] * wc - m1 - xh * m2)) as f32;
            }
        }
        part
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn var(t: Tensor) -> Var {
        Var::from_tensor(&t).unwrap()
    }

    /// Each fused CPU variant equals the composed ops, forward and gradients.
    #[test]
    fn fused_group_norms_match_the_composed_ops() {
        let dev = Device::Cpu;
        let x = var(Tensor::randn(0.3f32, 2.0, (3, 8, 5, 4), &dev).unwrap());
        let gw = var(Tensor::randn(1f32, 0.3, 8, &dev).unwrap());
        let gb = var(Tensor::randn(0f32, 0.3, 8, &dev).unwrap());
        let m = var(Tensor::randn(0f32, 0.5, (3, 16), &dev).unwrap());
        let gn = GroupNorm {
            weight: gw.as_tensor().clone(),
            bias: gb.as_tensor().clone(),
            groups: 4,
            eps: 1e-5,
        };
        let xt = x.as_tensor();
        type Pair = (Tensor, Tensor);
        let cases: [(&str, Pair); 3] = [
            (
                "plain",
                (gn.forward(xt).unwrap(), gn.forward_composed(xt).unwrap()),
            ),
            (
                "silu",
                (
                    gn.forward_silu(xt).unwrap(),
                    gn.forward_composed(xt).unwrap().silu().unwrap(),
                ),
            ),
            (
                "modulated",
                (
                    gn.forward_modulated_silu(xt, m.as_tensor()).unwrap(),
                    gn.forward_modulated_composed(xt, m.as_tensor()).unwrap(),
                ),
            ),
        ];
        for (name, (a, b)) in cases {
            let d = crate::util::max_abs_diff(&a, &b).unwrap();
            assert!(d < 1e-5, "{name}: forward differs by {d}");
            let t = Tensor::randn(0f32, 1.0, a.shape(), &dev).unwrap();
            let ga = (&a * &t).unwrap().sum_all().unwrap().backward().unwrap();
            let gbk = (&b * &t).unwrap().sum_all().unwrap().backward().unwrap();
            for v in [&x, &gw, &gb, &m] {
                match (ga.get(v.as_tensor()), gbk.get(v.as_tensor())) {
                    (Some(p), Some(q)) => {
                        let d = crate::util::max_abs_diff(p, q).unwrap();
                        assert!(d < 1e-4, "{name}: gradient differs by {d}");
                    }
                    (None, None) => {}
                    _ => panic!("{name}: a gradient on one side only"),
                }
            }
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
