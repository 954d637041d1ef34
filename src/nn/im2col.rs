//! Convolution as im2col + one matrix multiply per image, with a backward pass that is also a
//! matrix multiply (+ col2im). candle's own CPU convolution backward goes through a naive
//! `conv_transpose2d` loop (≈ 4.5× the forward); here the gradients of the input and the kernel
//! are GEMMs, as in PyTorch, and the columns are recomputed in the backward pass rather than kept
//! in the graph. Stride-1 convolutions with 3, 5 or 7 taps go through Winograd minimal filtering
//! instead ([`super::winograd`]: F(4 × 4, 3 × 3) multiplies 4× less than im2col) in the forward
//! pass and for the input gradient — itself a stride-1 convolution, with the kernel flipped and
//! its channels swapped; the kernel gradient stays one GEMM per image. Used by
//! [`super::conv::Conv2d`] for f32 on CPU.

use super::fused::slice;
use super::winograd::{Maps, Order, Winograd};
use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Geometry of a square-kernel convolution.
#[derive(Clone, Copy, Debug)]
pub struct Geometry {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub kernel: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Geometry {
    pub fn out_hw(&self) -> (usize, usize) {
        (
            (self.height + 2 * self.padding - self.kernel) / self.stride + 1,
            (self.width + 2 * self.padding - self.kernel) / self.stride + 1,
        )
    }
    fn cols(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }
    /// For kernel offset `(ky, kx)` and output row `oy`: the input row, and the output columns
    /// `[lo, hi)` whose input column `ox·s + kx − p` lies inside the image (the rest is padding).
    fn span(&self, ky: usize, kx: usize, oy: usize) -> Option<(usize, usize, usize)> {
        let (_, ow) = self.out_hw();
        let (s, p) = (self.stride, self.padding);
        let iy = (oy * s + ky) as isize - p as isize;
        if iy < 0 || iy as usize >= self.height {
            return None;
        }
        // ox·s + kx − p ≥ 0  and  ox·s + kx − p < W
        let lo = (p.saturating_sub(kx)).div_ceil(s);
        let hi = ((self.width + p).saturating_sub(kx)).div_ceil(s).min(ow);
        Some((iy as usize, lo, hi.max(lo)))
    }
}

/// One image's columns in `[C·k·k, OH·OW]` layout (row `(c, ky, kx)` holds that kernel tap over
/// every output position): for stride 1 each output row is one shifted copy of an input row.
/// Rows are filled in parallel.
fn im2col_image(g: &Geometry, x: &[f32], cols: &mut [f32]) {
    let (oh, ow) = g.out_hw();
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    let plane = g.height * g.width;
    cols.par_chunks_mut(oh * ow)
        .enumerate()
        .for_each(|(r, row)| {
            let (c, ky, kx) = (r / (k * k), (r / k) % k, r % k);
            let xc = &x[c * plane..(c + 1) * plane];
            for oy in 0..oh {
                let out = &mut row[oy * ow..(oy + 1) * ow];
                match g.span(ky, kx, oy) {
                    None => out.fill(0.0),
                    Some((iy, lo, hi)) => {
                        out[..lo].fill(0.0);
                        out[hi..].fill(0.0);
                        let xr = &xc[iy * g.width..(iy + 1) * g.width];
                        let ix0 = lo * s + kx - p;
                        if s == 1 {
                            out[lo..hi].copy_from_slice(&xr[ix0..ix0 + (hi - lo)]);
                        } else {
                            for (j, o) in out[lo..hi].iter_mut().enumerate() {
                                *o = xr[ix0 + j * s];
                            }
                        }
                    }
                }
            }
        });
}

/// The adjoint of [`im2col_image`]: columns `[C·k·k, OH·OW]` summed back into one image, in
/// parallel over channels (each owns its k² rows and its plane).
fn col2im_image(g: &Geometry, cols: &[f32], x: &mut [f32]) {
    let (oh, ow) = g.out_hw();
    let (k, s, p) = (g.kernel, g.stride, g.padding);
    let plane = g.height * g.width;
    x.par_chunks_mut(plane).enumerate().for_each(|(c, xc)| {
        xc.fill(0.0);
        for t in 0..k * k {
            let (ky, kx) = (t / k, t % k);
            let row = &cols[(c * k * k + t) * oh * ow..(c * k * k + t + 1) * oh * ow];
            for oy in 0..oh {
                if let Some((iy, lo, hi)) = g.span(ky, kx, oy) {
                    let src = &row[oy * ow + lo..oy * ow + hi];
                    let xr = &mut xc[iy * g.width..(iy + 1) * g.width];
                    let ix0 = lo * s + kx - p;
                    for (j, v) in src.iter().enumerate() {
                        xr[ix0 + j * s] += v;
                    }
                }
            }
        }
    });
}

/// `[B, C, H, W]` → `[B, C·k·k, OH·OW]` (rows in the kernel's (c, ky, kx) order).
pub struct Im2Col(pub Geometry);

/// The adjoint of [`Im2Col`]: `[B, C·k·k, OH·OW]` → `[B, C, H, W]`, overlapping taps summed.
pub struct Col2Im(pub Geometry);

impl CustomOp1 for Im2Col {
    fn name(&self) -> &'static str {
        "i2i-im2col"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let x = slice(s, l)?;
        let per_in = g.channels * g.height * g.width;
        let b = x.len() / per_in;
        let (oh, ow) = g.out_hw();
        let per_out = oh * ow * g.cols();
        let mut out = vec![0f32; b * per_out];
        for (o, xi) in out.chunks_mut(per_out).zip(x.chunks(per_in)) {
            im2col_image(&g, xi, o);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, g.cols(), oh * ow))))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Col2Im(self.0))?))
    }
}

impl CustomOp1 for Col2Im {
    fn name(&self) -> &'static str {
        "i2i-col2im"
    }
    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let g = self.0;
        let cols = slice(s, l)?;
        let (oh, ow) = g.out_hw();
        let per_in = oh * ow * g.cols();
        let b = cols.len() / per_in;
        let per_out = g.channels * g.height * g.width;
        let mut out = vec![0f32; b * per_out];
        for (o, ci) in out.chunks_mut(per_out).zip(cols.chunks(per_in)) {
            col2im_image(&g, ci, o);
        }
        Ok((
            CpuStorage::F32(out),
            Shape::from((b, g.channels, g.height, g.width)),
        ))
    }
    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(grad.contiguous()?.apply_op1(Im2Col(self.0))?))
    }
}

/// The whole convolution as one op of `(x [B, C, H, W], w [O, C·k·k])` → `[B, O, OH, OW]`:
/// im2col and a GEMM per image in the forward pass, and in the backward pass the columns are
/// recomputed instead of kept, so a training graph holds the input (as PyTorch does), not its
/// k²-times larger columns; forward memory is one image's columns.
pub struct Conv2dOp(pub Geometry);

impl Conv2dOp {
    /// The forward pass on CPU slices, with `bias` (one per output channel) added in the same
    /// pass where given.
    fn forward_cpu(&self, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> (CpuStorage, Shape) {
        let g = self.0;
        let per_in = g.channels * g.height * g.width;
        let b = x.len() / per_in;
        let k = g.cols();
        let o = w.len() / k;
        let (oh, ow) = g.out_hw();
        let p = oh * ow;
        if let Some(wg) = winograd_of(&g, w, o, bias) {
            let maps = Maps {
                data: x,
                b,
                h: g.height,
                w: g.width,
                c: g.channels,
                order: Order::Nchw,
            };
            let (out, _, _) = wg.forward(&maps, Order::Nchw);
            return (CpuStorage::F32(out), Shape::from((b, o, oh, ow)));
        }
        let mut out = vec![0f32; b * o * p];
        let mut cols = vec![0f32; k * p];
        for (xi, yi) in x.chunks(per_in).zip(out.chunks_mut(o * p)) {
            im2col_image(&g, xi, &mut cols);
            if let Some(bias) = bias {
                for (row, v) in yi.chunks_mut(p).zip(bias) {
                    row.fill(*v);
                }
            }
            // y[O, P] (+)= w[O, K] · cols[K, P], written straight in NCHW order.
            super::gemm::gemm_rows((o, p, k), yi, p, w, k, &cols, p, bias.is_some());
        }
        (CpuStorage::F32(out), Shape::from((b, o, oh, ow)))
    }

    /// The gradients of the input and of the kernel.
    fn backward(&self, x: &Tensor, w: &Tensor, grad: &Tensor) -> Result<(Tensor, Tensor)> {
        let g = self.0;
        let b = x.dim(0)?;
        let (o, k) = w.dims2()?;
        let (oh, ow) = g.out_hw();
        let p = oh * ow;
        let x = x.contiguous()?.detach();
        let grad = grad.contiguous()?.detach();
        // The input gradient as a stride-1 convolution of the output gradient (Winograd).
        let gx_direct = match input_grad_geometry(&g, o) {
            Some(gi) => {
                let flipped = flip_kernel(&w.detach(), g.channels, g.kernel)?;
                Some(grad.apply_op2(&flipped, Conv2dOp(gi))?)
            }
            None => None,
        };
        let wt = w.detach().t()?.contiguous()?;
        let mut gw: Option<Tensor> = None;
        let mut gx = Vec::with_capacity(b);
        // Per image, so that the recomputed columns of one image are alive at a time.
        for i in 0..b {
            let cols = x.narrow(0, i, 1)?.apply_op1(Im2Col(g))?.reshape((k, p))?;
            let gi = grad.narrow(0, i, 1)?.reshape((o, p))?;
            let d = gi.matmul(&cols.t()?)?;
            gw = Some(match gw {
                None => d,
                Some(acc) => (acc + d)?,
            });
            if gx_direct.is_none() {
                let gcols = wt.matmul(&gi)?.reshape((1, k, p))?;
                gx.push(gcols.apply_op1(Col2Im(g))?);
            }
        }
        let gx = match gx_direct {
            Some(t) => t,
            None => Tensor::cat(&gx, 0)?,
        };
        Ok((gx, gw.expect("a batch of at least one image")))
    }
}

impl candle_core::CustomOp2 for Conv2dOp {
    fn name(&self) -> &'static str {
        "i2i-conv2d"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        Ok(self.forward_cpu(slice(s1, l1)?, slice(s2, l2)?, None))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = self.backward(x, w, grad)?;
        Ok((Some(gx), Some(gw)))
    }
}

/// [`Conv2dOp`] with its bias added in the same pass, `(x, w [O, C·k·k], b [O])`: the graph keeps
/// no pre-bias output beside the result.
pub struct Conv2dBiasOp(pub Geometry);

impl candle_core::CustomOp3 for Conv2dBiasOp {
    fn name(&self) -> &'static str {
        "i2i-conv2d-bias"
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
        Ok(Conv2dOp(self.0).forward_cpu(x, w, Some(b)))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (gx, gw) = Conv2dOp(self.0).backward(x, w, grad)?;
        let gb = grad.sum((0, 2, 3))?;
        Ok((Some(gx), Some(gw), Some(gb)))
    }
}

/// The Winograd form of `w` (`[O, C·k·k]`, rows in (c, ky, kx) order) and its bias for the
/// convolution of `g`, or `None` where it has none (strided, or a kernel without an algorithm).
fn winograd_of(g: &Geometry, w: &[f32], o: usize, bias: Option<&[f32]>) -> Option<Winograd> {
    let (c, k) = (g.channels, g.kernel);
    if g.stride != 1 || !Winograd::supports(k, k) {
        return None;
    }
    let t = super::winograd::taps_major(w, o, c, k * k);
    let bias = bias.map_or(vec![], |b| b.to_vec());
    Winograd::new(&t, bias, false, (k, k), (c, o), (g.padding, g.padding))
}

/// The geometry of the input gradient of a stride-1 convolution as a convolution of the output
/// gradient (`o` channels) with padding k − 1 − p, or `None` when it is not a Winograd one.
fn input_grad_geometry(g: &Geometry, o: usize) -> Option<Geometry> {
    let k = g.kernel;
    if g.stride != 1 || g.padding >= k || !Winograd::supports(k, k) {
        return None;
    }
    let (oh, ow) = g.out_hw();
    Some(Geometry {
        channels: o,
        height: oh,
        width: ow,
        kernel: k,
        stride: 1,
        padding: k - 1 - g.padding,
    })
}

/// `w` `[O, C·k·k]` → `[C, O·k·k]` with each kernel turned 180°: the weights whose stride-1
/// correlation with the output gradient is the input gradient.
fn flip_kernel(w: &Tensor, c: usize, k: usize) -> Result<Tensor> {
    let (o, _) = w.dims2()?;
    let src = w.flatten_all()?.to_vec1::<f32>()?;
    let mut dst = vec![0f32; src.len()];
    for oo in 0..o {
        for cc in 0..c {
            for tap in 0..k * k {
                dst[(cc * o + oo) * k * k + (k * k - 1 - tap)] = src[(oo * c + cc) * k * k + tap];
            }
        }
    }
    Tensor::from_vec(dst, (c, o * k * k), w.device())
}

/// `conv2d(x, w) + b` as one op; `x` `[B, C, H, W]` f32 on CPU, `w` `[O, C, k, k]`, `b` `[O]`.
pub fn conv2d(
    x: &Tensor,
    w: &Tensor,
    b: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let (_, c, h, wd) = x.dims4()?;
    let (o, _, k, _) = w.dims4()?;
    let g = Geometry {
        channels: c,
        height: h,
        width: wd,
        kernel: k,
        stride,
        padding,
    };
    let x = x.contiguous()?;
    let w = w.reshape((o, g.cols()))?.contiguous()?;
    match b {
        Some(b) => x.apply_op3(&w, &b.contiguous()?, Conv2dBiasOp(g)),
        None => x.apply_op2(&w, Conv2dOp(g)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Forward equals candle's convolution; gradients equal candle's (its slow but correct
    /// backward), for padded, strided and 1×1 kernels.
    #[test]
    fn im2col_conv_matches_candle_forward_and_backward() {
        let dev = Device::Cpu;
        for (c, o, k, s, p, h) in [
            (3, 5, 3, 1, 1, 7),
            (4, 6, 3, 2, 0, 9),
            (5, 3, 1, 1, 0, 4),
            (6, 7, 3, 1, 0, 9),
            (3, 4, 3, 1, 2, 5),
            (2, 3, 5, 1, 2, 11),
            (5, 2, 3, 1, 1, 1),
        ] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, c, h, h), &dev).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 0.3, (o, c, k, k), &dev).unwrap()).unwrap();
            let bias = Var::from_tensor(&Tensor::randn(0f32, 1.0, o, &dev).unwrap()).unwrap();
            let ours = conv2d(x.as_tensor(), w.as_tensor(), Some(bias.as_tensor()), s, p).unwrap();
            let theirs = x
                .as_tensor()
                .conv2d(w.as_tensor(), p, s, 1, 1)
                .unwrap()
                .broadcast_add(&bias.as_tensor().reshape((1, o, 1, 1)).unwrap())
                .unwrap();
            assert!(crate::util::max_abs_diff(&ours, &theirs).unwrap() < 1e-4);
            let t = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let ga = (&ours * &t).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&theirs * &t)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &w, &bias] {
                let a = ga.get(v.as_tensor()).unwrap();
                let b = gb.get(v.as_tensor()).unwrap();
                let d = crate::util::max_abs_diff(a, b).unwrap();
                assert!(
                    d < 1e-3,
                    "gradient differs by {d} (c {c}, k {k}, s {s}, p {p})"
                );
            }
        }
    }
}
