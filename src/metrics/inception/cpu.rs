//! The CPU backend of the staged InceptionV3 ([`super::net`]): activations in NHWC (channels
//! last), each convolution as im2col with contiguous channel copies plus one `gemm` call that
//! writes the output already in NHWC with bias and ReLU fused (the stride-1 ones with 3, 5 or 7
//! taps per axis by Winograd minimal filtering, [`super::winograd`]), pools as
//! channel-contiguous loops.
//!
//! candle's CPU conv2d builds its im2col tiles with strided single-element writes and scatters
//! the result back to NCHW; on InceptionV3 that took 62% of the time. Same maths, same weights
//! (BatchNorm folded), checked against the reference features in tests/inception_parity.rs.

pub use super::act::Act;
use super::net::{Backend, Folded};
use anyhow::Result;
use rayon::prelude::*;

/// Bytes of im2col columns built and multiplied at a time (see `CpuConv::forward`).
const COL_TILE_BYTES: usize = 8 << 20;
/// Output pixels per parallel im2col task.
const COL_CHUNK_ROWS: usize = 64;

/// A convolution ready for im2col: weights `[kh·kw·ci, co]` row-major, bias `[co]`.
pub struct CpuConv {
    w: Vec<f32>,
    b: Vec<f32>,
    kh: usize,
    kw: usize,
    ci: usize,
    co: usize,
    stride: usize,
    pad: (usize, usize),
    /// The same convolution by Winograd minimal filtering, for the stride-1 ones with 3, 5 or 7
    /// taps per axis.
    winograd: Option<crate::nn::winograd::Winograd>,
}

impl CpuConv {
    /// From folded OIHW weights.
    pub fn new(
        w_oihw: &[f32],
        bias: Vec<f32>,
        dims: [usize; 4],
        stride: usize,
        pad: (usize, usize),
    ) -> Self {
        let [co, ci, kh, kw] = dims;
        let w = crate::nn::winograd::taps_major(w_oihw, co, ci, kh * kw);
        let winograd = if stride == 1 {
            crate::nn::winograd::Winograd::new(&w, bias.clone(), true, (kh, kw), (ci, co), pad)
        } else {
            None
        };
        Self {
            w,
            b: bias,
            kh,
            kw,
            ci,
            co,
            stride,
            pad,
            winograd,
        }
    }

    /// From a folded convolution of the staged description.
    pub fn from_folded(f: &Folded) -> Self {
        Self::new(&f.w, f.b.clone(), f.dims, f.stride, f.pad)
    }

    /// One im2col row, `[ky][kx][c]`, for output pixel `p` (over the batch) of an `ho × wo` map:
    /// contiguous copies of c channels, zeros where the window leaves the padded input.
    fn im2col_row(&self, x: &Act, p: usize, ho: usize, wo: usize, row: &mut [f32]) {
        let (img, rem) = (p / (ho * wo), p % (ho * wo));
        let (oy, ox) = (rem / wo, rem % wo);
        let (ph, pw) = self.pad;
        for ky in 0..self.kh {
            let iy = (oy * self.stride + ky) as isize - ph as isize;
            for kx in 0..self.kw {
                let ix = (ox * self.stride + kx) as isize - pw as isize;
                let dst = &mut row[(ky * self.kw + kx) * x.c..(ky * self.kw + kx + 1) * x.c];
                x.pixel_into(img, iy, ix, dst);
            }
        }
    }

    pub fn forward(&self, x: &Act) -> Act {
        match &self.winograd {
            Some(w) => {
                use crate::nn::winograd::{Maps, Order};
                let maps = Maps {
                    data: &x.data,
                    b: x.b,
                    h: x.h,
                    w: x.w,
                    c: x.c,
                    order: Order::Nhwc,
                };
                let (data, h, w) = w.forward(&maps, Order::Nhwc);
                Act {
                    data,
                    b: x.b,
                    h,
                    w,
                    c: self.co,
                }
            }
            None => self.im2col_forward(x),
        }
    }

    /// The convolution as im2col and one `gemm`.
    pub(super) fn im2col_forward(&self, x: &Act) -> Act {
        assert_eq!(x.c, self.ci, "input channels");
        let (ph, pw) = self.pad;
        let ho = (x.h + 2 * ph - self.kh) / self.stride + 1;
        let wo = (x.w + 2 * pw - self.kw) / self.stride + 1;
        let k = self.kh * self.kw * self.ci;
        let mut out = vec![0f32; x.b * ho * wo * self.co];
        if self.kh == 1 && self.kw == 1 && self.stride == 1 && ph == 0 && pw == 0 {
            gemm_bias_relu(
                &x.data,
                &self.w,
                &self.b,
                &mut out,
                x.b * ho * wo,
                k,
                self.co,
            );
        } else {
            // im2col in tiles of output pixels that run across image boundaries: a tile's
            // columns stay in the last-level cache between their writing and gemm's packing
            // (a whole 147 × 147 image's would be 25 MB), and the 17 × 17 and 8 × 8 layers get
            // one gemm over several images instead of a small one per image.
            let m = x.b * ho * wo;
            let tile = (COL_TILE_BYTES / (4 * k)).clamp(256, m.max(256));
            let mut col = vec![0f32; tile.min(m) * k];
            let mut start = 0;
            while start < m {
                let r = tile.min(m - start);
                col[..r * k]
                    .par_chunks_mut(COL_CHUNK_ROWS * k)
                    .enumerate()
                    .for_each(|(c, rows)| {
                        for (j, row) in rows.chunks_mut(k).enumerate() {
                            self.im2col_row(x, start + c * COL_CHUNK_ROWS + j, ho, wo, row);
                        }
                    });
                let o = &mut out[start * self.co..(start + r) * self.co];
                gemm_bias_relu(&col[..r * k], &self.w, &self.b, o, r, k, self.co);
                start += r;
            }
        }
        Act {
            data: out,
            b: x.b,
            h: ho,
            w: wo,
            c: self.co,
        }
    }
}

/// `out[m, n] = relu(a[m, k] · w[k, n] + bias[n])`, row-major, with gemm's own parallelism.
fn gemm_bias_relu(
    a: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) {
    assert!(a.len() >= m * k && w.len() >= k * n && out.len() >= m * n);
    for row in out.chunks_mut(n) {
        row.copy_from_slice(bias);
    }
    crate::nn::gemm::gemm_rows((m, n, k), out, n, a, k, w, n, true);
    out.par_chunks_mut(1 << 14)
        .for_each(|c| c.iter_mut().for_each(|v| *v = v.max(0.0)));
}

/// Split channels `[.., c]` into contiguous parts.
pub fn split_channels(x: &Act, splits: &[usize]) -> Vec<Act> {
    let pixels = x.b * x.h * x.w;
    let mut off = 0;
    splits
        .iter()
        .map(|&n| {
            let mut data = vec![0f32; pixels * n];
            data.par_chunks_mut(n)
                .enumerate()
                .for_each(|(p, d)| d.copy_from_slice(&x.data[p * x.c + off..p * x.c + off + n]));
            off += n;
            Act {
                data,
                b: x.b,
                h: x.h,
                w: x.w,
                c: n,
            }
        })
        .collect()
}

/// Concatenate along channels.
pub fn concat_channels(parts: &[&Act]) -> Act {
    let (b, h, w) = (parts[0].b, parts[0].h, parts[0].w);
    let c: usize = parts.iter().map(|p| p.c).sum();
    let mut data = vec![0f32; b * h * w * c];
    data.par_chunks_mut(c).enumerate().for_each(|(p, d)| {
        let mut off = 0;
        for part in parts {
            d[off..off + part.c].copy_from_slice(&part.data[p * part.c..(p + 1) * part.c]);
            off += part.c;
        }
    });
    Act { data, b, h, w, c }
}

/// 3 × 3 max pool, no padding, with `stride`.
pub fn max_pool_3x3(x: &Act, stride: usize) -> Act {
    let ho = (x.h - 3) / stride + 1;
    let wo = (x.w - 3) / stride + 1;
    let mut data = vec![0f32; x.b * ho * wo * x.c];
    data.par_chunks_mut(wo * x.c)
        .enumerate()
        .for_each(|(r, row)| {
            let (img, oy) = (r / ho, r % ho);
            for ox in 0..wo {
                let d = &mut row[ox * x.c..(ox + 1) * x.c];
                d.fill(f32::NEG_INFINITY);
                for ky in 0..3 {
                    for kx in 0..3 {
                        let s = ((img * x.h + oy * stride + ky) * x.w + ox * stride + kx) * x.c;
                        for (dv, sv) in d.iter_mut().zip(&x.data[s..s + x.c]) {
                            *dv = dv.max(*sv);
                        }
                    }
                }
            }
        });
    Act {
        data,
        b: x.b,
        h: ho,
        w: wo,
        c: x.c,
    }
}

/// 3 × 3, stride 1, padding 1 pool: max (padding ignored), or average dividing by 9
/// (`count_pad`) or by the number of real pixels in the window.
pub fn pool_3x3_same(x: &Act, max: bool, count_pad: bool) -> Act {
    let (h, w, c) = (x.h, x.w, x.c);
    let mut data = vec![0f32; x.data.len()];
    data.par_chunks_mut(w * c).enumerate().for_each(|(r, row)| {
        let (img, oy) = (r / h, r % h);
        for ox in 0..w {
            let d = &mut row[ox * c..(ox + 1) * c];
            d.fill(if max { f32::NEG_INFINITY } else { 0.0 });
            let mut count = 0;
            for ky in 0..3 {
                let iy = oy as isize + ky - 1;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..3 {
                    let ix = ox as isize + kx - 1;
                    if ix < 0 || ix >= w as isize {
                        continue;
                    }
                    count += 1;
                    let s = ((img * h + iy as usize) * w + ix as usize) * c;
                    if max {
                        for (dv, sv) in d.iter_mut().zip(&x.data[s..s + c]) {
                            *dv = dv.max(*sv);
                        }
                    } else {
                        for (dv, sv) in d.iter_mut().zip(&x.data[s..s + c]) {
                            *dv += *sv;
                        }
                    }
                }
            }
            if !max {
                let div = if count_pad { 9.0 } else { count as f32 };
                d.iter_mut().for_each(|v| *v /= div);
            }
        }
    });
    Act {
        data,
        b: x.b,
        h,
        w,
        c,
    }
}

/// Global average pool `[b, c]`, accumulated in f64.
pub fn global_avg(x: &Act) -> Vec<f32> {
    let mut out = vec![0f32; x.b * x.c];
    let n = (x.h * x.w) as f64;
    for img in 0..x.b {
        let mut acc = vec![0f64; x.c];
        for p in 0..x.h * x.w {
            let s = (img * x.h * x.w + p) * x.c;
            for (a, v) in acc.iter_mut().zip(&x.data[s..s + x.c]) {
                *a += *v as f64;
            }
        }
        for (o, a) in out[img * x.c..(img + 1) * x.c].iter_mut().zip(acc) {
            *o = (a / n) as f32;
        }
    }
    out
}

/// The channels-last CPU kernels as a backend of the staged description.
pub struct CpuBackend;

impl Backend for CpuBackend {
    type Act = Act;
    type Conv = CpuConv;
    fn conv(&self, c: &CpuConv, x: &Act) -> Result<Act> {
        Ok(c.forward(x))
    }
    fn fused(&self, c: &CpuConv, splits: &[usize], x: &Act) -> Result<Vec<Act>> {
        Ok(split_channels(&c.forward(x), splits))
    }
    fn cat(&self, parts: &[&Act]) -> Result<Act> {
        Ok(concat_channels(parts))
    }
    fn pool_same(&self, x: &Act, max: bool, count_pad: bool) -> Result<Act> {
        Ok(pool_3x3_same(x, max, count_pad))
    }
    fn max_pool_s2(&self, x: &Act) -> Result<Act> {
        Ok(max_pool_3x3(x, 2))
    }
}

/// `[B, C, H, W]` values → a channels-last activation.
pub fn from_nchw(nchw: &[f32], b: usize, c: usize, h: usize, w: usize) -> Act {
    let data = crate::nn::winograd::transpose(nchw, b, c, h * w);
    Act { data, b, h, w, c }
}

#[cfg(test)]
mod tests {
    use super::{Act, CpuConv};

    /// The Winograd convolution against im2col, for every kernel InceptionV3 has, on odd and
    /// even map sizes, with and without padding, several images per call.
    #[test]
    fn winograd_equals_im2col() {
        let mut rng = crate::util::rng("winograd-test", 0);
        for (b, h, w, ci, co, (kh, kw), pad) in [
            (2, 7, 9, 5, 6, (3, 3), (1, 1)),
            (1, 8, 8, 16, 24, (3, 3), (0, 0)),
            (3, 5, 4, 3, 2, (3, 3), (1, 1)),
            (2, 9, 7, 6, 5, (5, 5), (2, 2)),
            (2, 9, 8, 7, 6, (1, 7), (0, 3)),
            (2, 8, 9, 7, 6, (7, 1), (3, 0)),
            (1, 5, 6, 12, 8, (1, 3), (0, 1)),
            (1, 6, 5, 12, 8, (3, 1), (1, 0)),
        ] {
            let oihw = crate::util::normal_vec(&mut rng, co * ci * kh * kw);
            let bias = crate::util::normal_vec(&mut rng, co);
            let x = Act {
                data: crate::util::normal_vec(&mut rng, b * h * w * ci),
                b,
                h,
                w,
                c: ci,
            };
            let conv = CpuConv::new(&oihw, bias.clone(), [co, ci, kh, kw], 1, pad);
            let direct = conv.im2col_forward(&x);
            assert!(conv.winograd.is_some(), "{kh} x {kw} has an algorithm");
            let wino = conv.forward(&x);
            assert_eq!((wino.h, wino.w, wino.c), (direct.h, direct.w, direct.c));
            let scale = direct.data.iter().fold(0f32, |a, v| a.max(v.abs()));
            let diff = direct
                .data
                .iter()
                .zip(&wino.data)
                .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
            assert!(
                diff <= 1e-5 * scale,
                "{kh}x{kw} {b}x{h}x{w}x{ci}->{co}: {diff} of {scale}"
            );
        }
    }
}
