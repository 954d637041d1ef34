//! Winograd minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016) for stride-1 convolutions on CPU, separable over the two axes: each axis with an r-tap
//! kernel computes m outputs from a tile of n = m + r − 1 inputs with n multiplications instead
//! of m·r. Used by InceptionV3's CPU backend (NHWC, bias and ReLU fused) and by the training
//! convolution of `im2col.rs` (NCHW, forward and input gradient: Palette's UNet, the VQ
//! tokenizer). The kernels and the algorithms used:
//!
//! | kernel | per axis | multiplications per output and channel pair |
//! |---|---|---|
//! | 3 × 3 | F(4, 3) × F(4, 3) | 36 / 16 instead of 9 |
//! | 5 × 5 | F(2, 5) × F(2, 5) | 36 / 4 instead of 25 |
//! | 1 × 7, 7 × 1 | F(2, 7) | 8 / 2 instead of 7 |
//! | 1 × 3, 3 × 1 | F(4, 3) | 6 / 4 instead of 3 |
//!
//! Per block of tiles: the input transform `V = Bᵀ d B` (channels contiguous, `[tile][n][ci]`
//! with n points in all, gathered from NHWC or NCHW maps), one `gemm` per point
//! `M_ξ = V_ξ · U_ξ` over the tiles (`U = G g Gᵀ`), and the output transform `Y = Aᵀ M A` with
//! bias (and ReLU where asked) fused, written in NHWC or NCHW. The result equals the im2col
//! convolution up to float rounding (tests here, in `im2col.rs` and in the Inception backend; the
//! parity tests allow 1e-4 relative).
//!
//! The transforms come from Toom-Cook interpolation at the points 0, ±1, ±2, ±½ and ∞
//! (`Bᵀ` = the transposed inverse Vandermonde matrix, `G` and `Aᵀ` the evaluations of the kernel
//! and the outputs); each row of `Bᵀ` is scaled to small integers and its factor moved into
//! `G`, where it is applied once to the weights. A test checks every table against the direct
//! correlation in f64.
//!
//! Rounding: more points mean larger transform coefficients, so larger tiles round more. On the
//! pytorch-fid parity images the pool3 features differ from pytorch-fid's by at most 2.3e-5 of
//! their largest value with these tables, against 1.5e-5 with im2col only and 1.3e-5 with
//! F(2 × 2, 3 × 3) (the test allows 1e-4); F(4 × 4, 3 × 3) instead of F(2 × 2, 3 × 3) took the
//! 3 × 3 layers from 13 to 10.6 s of the `fid` command's 2 × 200 images (summed over the
//! threads). Larger tiles for 5 and 7 taps need points like ±3 or ±¼, whose coefficients grow
//! fast (F(2, 7) at 0, ±1, ±2, ±3: 8× the rounding of the ±½ choice in a float32 probe).

use rayon::prelude::*;

/// Bytes of transformed tiles (`V` and `M`) computed at a time.
const TILE_BYTES: usize = 8 << 20;

mod tables;
mod transpose;

use tables::{sparse, Toom};
pub use transpose::{taps_major, transpose};

/// One axis of a convolution: its algorithm with `Bᵀ` and `Aᵀ` as sparse rows.
struct Axis {
    m: usize,
    n: usize,
    bt: Vec<Vec<(usize, f32)>>,
    at: Vec<Vec<(usize, f32)>>,
}

impl Axis {
    fn new(t: &Toom) -> Self {
        Self {
            m: t.m,
            n: t.n(),
            bt: sparse(t.bt),
            at: sparse(t.at),
        }
    }
}

/// `dst = Σ c · src[base + j·stride]` over `terms` (vectors of `dst.len()` values), summed in
/// the order of `terms` (the first term assigned, not added to zero).
#[inline(always)]
fn combine(dst: &mut [f32], terms: &[(usize, f32)], src: &[f32], base: usize, stride: usize) {
    let len = dst.len();
    let at = |j: usize| &src[(base + j * stride) * len..(base + j * stride + 1) * len];
    let (j0, c0) = terms[0];
    dst.iter_mut().zip(at(j0)).for_each(|(d, s)| *d = c0 * s);
    for &(j, c) in &terms[1..] {
        dst.iter_mut().zip(at(j)).for_each(|(d, s)| *d += c * s);
    }
}

/// `dst[a, c] = Σ_y bt[a][y] · src[y, c]` over the rows of an `n_in × nw` grid of vectors of
/// `len` values, for the `bt.len()` rows of `bt`.
#[inline(always)]
fn by_rows(dst: &mut [f32], bt: &[Vec<(usize, f32)>], src: &[f32], nw: usize, len: usize) {
    for c in 0..nw {
        for (a, terms) in bt.iter().enumerate() {
            let d = &mut dst[(a * nw + c) * len..(a * nw + c + 1) * len];
            combine(d, terms, src, c, nw);
        }
    }
}

/// `dst[a, b] = Σ_x bt[b][x] · src[a, x]` over the columns of an `nh × nw_in` grid of vectors,
/// for the `bt.len()` rows of `bt` (`nw_out` of them).
#[inline(always)]
fn by_cols(
    dst: &mut [f32],
    bt: &[Vec<(usize, f32)>],
    src: &[f32],
    nh: usize,
    nw_in: usize,
    len: usize,
) {
    let nw_out = bt.len();
    for a in 0..nh {
        for (b, terms) in bt.iter().enumerate() {
            let d = &mut dst[(a * nw_out + b) * len..(a * nw_out + b + 1) * len];
            combine(d, terms, src, a * nw_in, 1);
        }
    }
}

crate::multiversion! {
    /// The patch (`[nh·nw][ci]`, row-major) → `Bᵀ d B` in `v`: over the patch's rows one column
    /// at a time, then over the columns.
    fn input_transform(patch: &[f32], tmp: &mut [f32], v: &mut [f32], rows: &Axis, cols: &Axis, ci: usize) {
        let (nh, nw) = (rows.n, cols.n);
        if nh > 1 && nw > 1 {
            by_rows(tmp, &rows.bt, patch, nw, ci);
            by_cols(v, &cols.bt, tmp, nh, nw, ci);
        } else if nh > 1 {
            by_rows(v, &rows.bt, patch, nw, ci);
        } else {
            by_cols(v, &cols.bt, patch, nh, nw, ci);
        }
    }
}

crate::multiversion! {
    /// `M` (`[nh·nw][co]`) → the tile's mh × mw outputs `Aᵀ M A` + bias (none when empty),
    /// ReLU'd where asked, in `y` (row-major); `s` is scratch of mh·nw·co.
    fn output_transform(mt: &[f32], s: &mut [f32], y: &mut [f32], rows: &Axis, cols: &Axis, bias: &[f32], relu: bool, co: usize) {
        let nw = cols.n;
        // s = Aᵀ M over the rows of M (M itself when the rows have one tap).
        if rows.n > 1 {
            by_rows(s, &rows.at, mt, nw, co);
            by_cols(y, &cols.at, s, rows.m, nw, co);
        } else {
            by_cols(y, &cols.at, mt, 1, nw, co);
        }
        if !bias.is_empty() {
            for d in y.chunks_exact_mut(co) {
                d.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        if relu {
            y.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

crate::multiversion! {
    /// `U = G g Gᵀ` for input channel `i` and every output channel, vectorised over the output
    /// channels: `g` is `[kh][kw][ci][co]`, `u` this channel's `[nh·nw][co]`; `gg` scratch of
    /// nh·kw·co.
    fn transform_weights(g: &[f32], u: &mut [f32], gg: &mut [f32], th: &Toom, tw: &Toom, i: usize, ci: usize, co: usize) {
        let (kw, nh, nw) = (tw.r, th.n(), tw.n());
        let tap = |y: usize, x: usize| &g[((y * kw + x) * ci + i) * co..][..co];
        // gg[a][x] = Σ_y G_rows[a][y] · g[y][x]
        for a in 0..nh {
            for x in 0..kw {
                let d = &mut gg[(a * kw + x) * co..][..co];
                d.fill(0.0);
                for (y, c) in th.g[a].iter().enumerate() {
                    if *c != 0.0 {
                        let c = *c as f32;
                        d.iter_mut().zip(tap(y, x)).for_each(|(d, s)| *d += c * s);
                    }
                }
            }
        }
        // u[a][b] = Σ_x G_cols[b][x] · gg[a][x]
        for a in 0..nh {
            for b in 0..nw {
                let d = &mut u[(a * nw + b) * co..][..co];
                d.fill(0.0);
                for (x, c) in tw.g[b].iter().enumerate() {
                    if *c != 0.0 {
                        let c = *c as f32;
                        let s = &gg[(a * kw + x) * co..][..co];
                        d.iter_mut().zip(s).for_each(|(d, s)| *d += c * s);
                    }
                }
            }
        }
    }
}

/// The memory order of a batch of maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// `[b, h, w, c]` row-major (the Inception backend's).
    Nhwc,
    /// `[b, c, h, w]` row-major (candle's).
    Nchw,
}

/// A batch of maps as a convolution reads it.
#[derive(Clone, Copy, Debug)]
pub struct Maps<'a> {
    pub data: &'a [f32],
    pub b: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub order: Order,
}

impl Maps<'_> {
    /// The `nh × nw` patch of image `img` whose top-left input is (`y0`, `x0`), as
    /// `[nh·nw][c]` in `patch`, zeros outside the map (the convolution's zero padding). NHWC
    /// only (the forward pass transposes NCHW maps first).
    fn patch_into(&self, img: usize, (y0, x0): (isize, isize), nw: usize, patch: &mut [f32]) {
        debug_assert_eq!(self.order, Order::Nhwc);
        let c = self.c;
        for (p, dst) in patch.chunks_exact_mut(c).enumerate() {
            let (iy, ix) = (y0 + (p / nw) as isize, x0 + (p % nw) as isize);
            if iy < 0 || ix < 0 || iy >= self.h as isize || ix >= self.w as isize {
                dst.fill(0.0);
            } else {
                let s = ((img * self.h + iy as usize) * self.w + ix as usize) * c;
                dst.copy_from_slice(&self.data[s..s + c]);
            }
        }
    }
}

/// A stride-1 convolution whose kernel sizes per axis have an algorithm (1, 3, 5 or 7 taps,
/// not both 1), its weights transformed: `u` is `[ci][n][co]` (point ξ's `[ci][co]` matrix at
/// ξ·co with rows n·co apart, so that each input channel is transformed on its own).
pub struct Winograd {
    u: Vec<f32>,
    /// Bias per output channel, or empty for none.
    b: Vec<f32>,
    relu: bool,
    ci: usize,
    co: usize,
    pad: (usize, usize),
    /// Taps per axis (rows, columns).
    r: (usize, usize),
    rows: Axis,
    cols: Axis,
}

impl Winograd {
    /// Whether a stride-1 kernel of `kh × kw` taps has an algorithm here.
    pub fn supports(kh: usize, kw: usize) -> bool {
        Toom::for_taps(kh).is_some() && Toom::for_taps(kw).is_some() && (kh, kw) != (1, 1)
    }

    /// From weights `[kh·kw·ci, co]` row-major (`[ky][kx][ci]` rows, as `CpuConv` keeps them),
    /// a bias per output channel (or empty for none) and whether a ReLU follows; `None` for a
    /// kernel without an algorithm here.
    pub fn new(
        w: &[f32],
        b: Vec<f32>,
        relu: bool,
        (kh, kw): (usize, usize),
        (ci, co): (usize, usize),
        pad: (usize, usize),
    ) -> Option<Self> {
        if !Self::supports(kh, kw) {
            return None;
        }
        let (th, tw) = (Toom::for_taps(kh)?, Toom::for_taps(kw)?);
        assert_eq!(w.len(), kh * kw * ci * co, "{kh} x {kw} weights");
        assert!(b.is_empty() || b.len() == co, "one bias per output channel");
        let (nh, nw) = (th.n(), tw.n());
        let mut u = vec![0f32; nh * nw * ci * co];
        u.par_chunks_mut(nh * nw * co).enumerate().for_each_init(
            || vec![0f32; nh * kw * co],
            |gg, (i, ui)| transform_weights(w, ui, gg, th, tw, i, ci, co),
        );
        Some(Self {
            u,
            b,
            relu,
            ci,
            co,
            pad,
            r: (kh, kw),
            rows: Axis::new(th),
            cols: Axis::new(tw),
        })
    }

    /// The output's height and width for an `h × w` input.
    pub fn out_hw(&self, h: usize, w: usize) -> (usize, usize) {
        (
            h + 2 * self.pad.0 + 1 - self.r.0,
            w + 2 * self.pad.1 + 1 - self.r.1,
        )
    }

    /// The convolution of `x`, written in `order`; returns the output's data, height and width.
    /// NCHW maps are transposed to NHWC and back around the NHWC convolution (two cache-blocked
    /// passes: gathering each tile's channels from NCHW directly costs more).
    pub fn forward(&self, x: &Maps, order: Order) -> (Vec<f32>, usize, usize) {
        assert_eq!(x.c, self.ci, "input channels");
        assert_eq!(x.data.len(), x.b * x.c * x.h * x.w, "input size");
        let nhwc;
        let x = if x.order == Order::Nchw {
            nhwc = transpose(x.data, x.b, x.c, x.h * x.w);
            &Maps {
                data: &nhwc,
                order: Order::Nhwc,
                ..*x
            }
        } else {
            x
        };
        let (out, ho, wo) = self.forward_nhwc(x, None);
        match order {
            Order::Nhwc => (out, ho, wo),
            Order::Nchw => (transpose(&out, x.b, ho * wo, self.co), ho, wo),
        }
    }

    /// `M_ξ = V_ξ · U_ξ` for every point ξ over `t` tiles (point ξ of tile k at (k·np + ξ)·ci in
    /// `v` and (k·np + ξ)·co in `m`): one product per point and thread when there are points
    /// enough to keep the threads busy (batch 1: small products, whose split over the threads
    /// cost more in synchronisation than it saved), else each product over all the threads.
    fn points_gemm(&self, t: usize, v: &[f32], m: &mut [f32]) {
        let (ci, co) = (self.ci, self.co);
        let np = self.rows.n * self.cols.n;
        if np >= 4 * rayon::current_num_threads() {
            crate::nn::gemm::gemm_rows_batched(
                np,
                (t, co, ci),
                (m, co, np * co),
                (v, ci, np * ci),
                (&self.u, co, np * co),
            );
            return;
        }
        for xi in 0..np {
            crate::nn::gemm::gemm_rows(
                (t, co, ci),
                &mut m[xi * co..],
                np * co,
                &v[xi * ci..],
                np * ci,
                &self.u[xi * co..],
                np * co,
                false,
            );
        }
    }

    /// [`Winograd::forward`] of NHWC maps into NHWC, `chunk` tiles at a time (by default as many
    /// as fill [`TILE_BYTES`]; tests force small chunks, which split rows of tiles).
    fn forward_nhwc(&self, x: &Maps, chunk: Option<usize>) -> (Vec<f32>, usize, usize) {
        let (ci, co) = (self.ci, self.co);
        let (ph, pw) = self.pad;
        let (rows, cols) = (&self.rows, &self.cols);
        let (nh, nw) = (rows.n, cols.n);
        let np = nh * nw;
        let (ho, wo) = self.out_hw(x.h, x.w);
        let (th, tw) = (ho.div_ceil(rows.m), wo.div_ceil(cols.m));
        let total = x.b * th * tw;
        let chunk = chunk
            .unwrap_or_else(|| (TILE_BYTES / (4 * np * (ci + co))).max(16))
            .clamp(1, total.max(16));
        let mut v = vec![0f32; chunk.min(total) * np * ci];
        let mut m = vec![0f32; chunk.min(total) * np * co];
        let mut out = vec![0f32; x.b * ho * wo * co];
        let mut start = 0;
        while start < total {
            let t = chunk.min(total - start);
            v[..t * np * ci]
                .par_chunks_mut(np * ci)
                .enumerate()
                .for_each_init(
                    || (vec![0f32; np * ci], vec![0f32; np * ci]),
                    |(patch, tmp), (k, vt)| {
                        let tile = start + k;
                        let (img, rem) = (tile / (th * tw), tile % (th * tw));
                        let (ty, tx) = (rem / tw, rem % tw);
                        let y0 = (rows.m * ty) as isize - ph as isize;
                        let x0 = (cols.m * tx) as isize - pw as isize;
                        x.patch_into(img, (y0, x0), nw, patch);
                        input_transform(patch, tmp, vt, rows, cols, ci);
                    },
                );
            self.points_gemm(t, &v, &mut m);
            // Output transform: each tile's mh × mw outputs, written into place (fewer at the
            // right and bottom edges), in parallel over the rows of tiles of each image.
            let (mh, mw) = (rows.m, cols.m);
            let end = start + t;
            // The images this chunk's tiles fall in.
            let (first_img, last_img) = (start / (th * tw), (end - 1) / (th * tw));
            out[first_img * ho * wo * co..(last_img + 1) * ho * wo * co]
                .par_chunks_mut(ho * wo * co)
                .enumerate()
                .map(|(k, o)| (first_img + k, o))
                .for_each(|(img, out_img)| {
                    out_img
                        .par_chunks_mut(mh * wo * co)
                        .enumerate()
                        .for_each_init(
                            || (vec![0f32; mh * nw * co], vec![0f32; mh * mw * co]),
                            |(s, y), (ty, blk)| {
                                let first = (img * th + ty) * tw;
                                for tile in first.max(start)..(first + tw).min(end) {
                                    let mt = &m[(tile - start) * np * co..][..np * co];
                                    output_transform(mt, s, y, rows, cols, &self.b, self.relu, co);
                                    let tx = tile - first;
                                    let (rn, cn) = (blk.len() / (wo * co), mw.min(wo - mw * tx));
                                    for q in 0..rn {
                                        let d = (q * wo + mw * tx) * co;
                                        blk[d..d + cn * co]
                                            .copy_from_slice(&y[q * mw * co..][..cn * co]);
                                    }
                                }
                            },
                        );
                });
            start += t;
        }
        (out, ho, wo)
    }
}

#[cfg(test)]
mod tests {
    use super::{Maps, Order, Winograd};

    /// Chunks of tiles that end inside a row of tiles and inside an image give the outputs of
    /// one chunk for the whole batch.
    #[test]
    fn small_chunks_equal_one_chunk() {
        let mut rng = crate::util::rng("winograd-chunks", 0);
        let (b, h, w, ci, co) = (3, 11, 13, 5, 6);
        let g = crate::util::normal_vec(&mut rng, 9 * ci * co);
        let bias = crate::util::normal_vec(&mut rng, co);
        let x = crate::util::normal_vec(&mut rng, b * h * w * ci);
        let conv = Winograd::new(&g, bias, true, (3, 3), (ci, co), (1, 1)).unwrap();
        let maps = Maps {
            data: &x,
            b,
            h,
            w,
            c: ci,
            order: Order::Nhwc,
        };
        let (whole, _, _) = conv.forward_nhwc(&maps, None);
        for chunk in [1, 5, 7, 13] {
            let (parts, _, _) = conv.forward_nhwc(&maps, Some(chunk));
            let worst = whole
                .iter()
                .zip(&parts)
                .map(|(a, c)| (a - c).abs())
                .fold(0f32, f32::max);
            assert!(worst <= 1e-5, "chunks of {chunk} tiles: {worst}");
        }
    }

    /// The NCHW and NHWC convolutions against a direct f64 correlation, for every kernel here,
    /// on odd and even map sizes, with and without padding, bias and ReLU.
    #[test]
    fn winograd_equals_direct_correlation_in_both_orders() {
        let mut rng = crate::util::rng("winograd-nchw", 0);
        for (b, h, w, ci, co, (kh, kw), pad, bias, relu) in [
            (2, 7, 9, 5, 6, (3, 3), (1, 1), true, false),
            (1, 8, 8, 16, 24, (3, 3), (0, 0), false, false),
            (3, 5, 4, 3, 2, (3, 3), (2, 2), true, true),
            (2, 1, 1, 4, 3, (3, 3), (1, 1), false, false),
            (2, 9, 7, 6, 5, (5, 5), (2, 2), false, true),
            (2, 9, 8, 7, 6, (1, 7), (0, 3), true, false),
            (1, 6, 5, 12, 8, (3, 1), (1, 0), false, false),
        ] {
            // Weights [ky][kx][ci][co]; input NCHW and its NHWC copy.
            let g = crate::util::normal_vec(&mut rng, kh * kw * ci * co);
            let bv = if bias {
                crate::util::normal_vec(&mut rng, co)
            } else {
                vec![]
            };
            let x = crate::util::normal_vec(&mut rng, b * ci * h * w);
            let mut nhwc = vec![0f32; x.len()];
            for (i, v) in x.iter().enumerate() {
                let (img, c, p) = (i / (ci * h * w), (i / (h * w)) % ci, i % (h * w));
                nhwc[(img * h * w + p) * ci + c] = *v;
            }
            let conv = Winograd::new(&g, bv.clone(), relu, (kh, kw), (ci, co), pad).unwrap();
            let (ho, wo) = conv.out_hw(h, w);
            let direct = |img: usize, o: usize, oy: usize, ox: usize| -> f64 {
                let mut acc = bv.get(o).map_or(0.0, |v| *v as f64);
                for ky in 0..kh {
                    for kx in 0..kw {
                        let (iy, ix) = (
                            (oy + ky) as isize - pad.0 as isize,
                            (ox + kx) as isize - pad.1 as isize,
                        );
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        for c in 0..ci {
                            let xv = x[((img * ci + c) * h + iy as usize) * w + ix as usize] as f64;
                            acc += xv * g[((ky * kw + kx) * ci + c) * co + o] as f64;
                        }
                    }
                }
                if relu {
                    acc.max(0.0)
                } else {
                    acc
                }
            };
            let (y1, _, _) = conv.forward(
                &Maps {
                    data: &x,
                    b,
                    h,
                    w,
                    c: ci,
                    order: Order::Nchw,
                },
                Order::Nchw,
            );
            let (y2, _, _) = conv.forward(
                &Maps {
                    data: &nhwc,
                    b,
                    h,
                    w,
                    c: ci,
                    order: Order::Nhwc,
                },
                Order::Nhwc,
            );
            let mut worst = 0f64;
            let mut scale = 0f64;
            for img in 0..b {
                for o in 0..co {
                    for oy in 0..ho {
                        for ox in 0..wo {
                            let want = direct(img, o, oy, ox);
                            let a = y1[((img * co + o) * ho + oy) * wo + ox] as f64;
                            let c = y2[((img * ho + oy) * wo + ox) * co + o] as f64;
                            worst = worst.max((a - want).abs()).max((c - want).abs());
                            scale = scale.max(want.abs());
                        }
                    }
                }
            }
            assert!(
                worst <= 1e-5 * scale.max(1.0),
                "{kh}x{kw} {b}x{ci}x{h}x{w}->{co}: {worst} of {scale}"
            );
        }
    }
}
