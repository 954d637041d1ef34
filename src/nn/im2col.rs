//! Convolution as im2col + one matrix multiply per image, with a backward pass that is also a
//! matrix multiply (+ col2im). candle's own CPU convolution backward goes through a naive
//! `conv_transpose2d` loop (≈ 4.5× the forward); here the gradients of the input and the kernel
//! are GEMMs, as in PyTorch, and the columns are recomputed in the backward pass rather than kept
//! in the graph. Used by [`super::conv::Conv2d`] for f32 on CPU.

use super::fused::slice;
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
        let g = self.0;
        let (x, w) = (slice(s1, l1)?, slice(s2, l2)?);
        let per_in = g.channels * g.height * g.width;
        let b = x.len() / per_in;
        let k = g.cols();
        let o = w.len() / k;
        let (oh, ow) = g.out_hw();
        let p = oh * ow;
        let mut out = vec![0f32; b * o * p];
        let mut cols = vec![0f32; k * p];
        for (xi, yi) in x.chunks(per_in).zip(out.chunks_mut(o * p)) {
            im2col_image(&g, xi, &mut cols);
            // y[O, P] = w[O, K] · cols[K, P], written straight in NCHW order.
            super::gemm::gemm_rows((o, p, k), yi, p, w, k, &cols, p, false);
        }
        Ok((CpuStorage::F32(out), Shape::from((b, o, oh, ow))))
    }
    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let g = self.0;
        let b = x.dim(0)?;
        let (o, k) = w.dims2()?;
        let (oh, ow) = g.out_hw();
        let p = oh * ow;
        let x = x.contiguous()?.detach();
        let wt = w.detach().t()?.contiguous()?;
        let grad = grad.contiguous()?.detach();
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
            let gcols = wt.matmul(&gi)?.reshape((1, k, p))?;
            gx.push(gcols.apply_op1(Col2Im(g))?);
        }
        Ok((Some(Tensor::cat(&gx, 0)?), gw))
    }
}

/// `conv2d(x, w)` as im2col + GEMM; `x` `[B, C, H, W]` f32 on CPU, `w` `[O, C, k, k]`.
pub fn conv2d(x: &Tensor, w: &Tensor, stride: usize, padding: usize) -> Result<Tensor> {
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
    x.contiguous()?
        .apply_op2(&w.reshape((o, g.cols()))?.contiguous()?, Conv2dOp(g))
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
        for (c, o, k, s, p, h) in [(3, 5, 3, 1, 1, 7), (4, 6, 3, 2, 0, 9), (5, 3, 1, 1, 0, 4)] {
            let x =
                Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, c, h, h), &dev).unwrap()).unwrap();
            let w =
                Var::from_tensor(&Tensor::randn(0f32, 0.3, (o, c, k, k), &dev).unwrap()).unwrap();
            let ours = conv2d(x.as_tensor(), w.as_tensor(), s, p).unwrap();
            let theirs = x.as_tensor().conv2d(w.as_tensor(), p, s, 1, 1).unwrap();
            assert!(crate::util::max_abs_diff(&ours, &theirs).unwrap() < 1e-4);
            let t = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
            let ga = (&ours * &t).unwrap().sum_all().unwrap().backward().unwrap();
            let gb = (&theirs * &t)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for v in [&x, &w] {
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
