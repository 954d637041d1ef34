//! Winograd minimal filtering (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks",
//! 2016) for the stride-1 convolutions of the CPU backend, separable over the two axes: each
//! axis with an r-tap kernel computes m outputs from a tile of n = m + r − 1 inputs with n
//! multiplications instead of m·r. InceptionV3's kernels and the algorithms used:
//!
//! | kernel | per axis | multiplications per output and channel pair |
//! |---|---|---|
//! | 3 × 3 | F(4, 3) × F(4, 3) | 36 / 16 instead of 9 |
//! | 5 × 5 | F(2, 5) × F(2, 5) | 36 / 4 instead of 25 |
//! | 1 × 7, 7 × 1 | F(2, 7) | 8 / 2 instead of 7 |
//! | 1 × 3, 3 × 1 | F(4, 3) | 6 / 4 instead of 3 |
//!
//! Per block of tiles: the input transform `V = Bᵀ d B` (channels contiguous, `[tile][n][ci]`
//! with n points in all), one `gemm` per point `M_ξ = V_ξ · U_ξ` over the tiles (`U = G g Gᵀ`,
//! transformed once in f64), and the output transform `Y = Aᵀ M A` with bias and ReLU fused,
//! written in NHWC. The result equals the im2col convolution up to float rounding (a test; the
//! parity tests allow 1e-4 relative).
//!
//! The transforms come from Toom-Cook interpolation at the points 0, ±1, ±2, ±½ and ∞
//! (`Bᵀ` = the transposed inverse Vandermonde matrix, `G` and `Aᵀ` the evaluations of the kernel
//! and the outputs); each row of `Bᵀ` is scaled to small integers and its factor moved into
//! `G`, where it is applied once to the weights in f64. A test checks every table against the
//! direct correlation in f64.
//!
//! Rounding: more points mean larger transform coefficients, so larger tiles round more. On the
//! pytorch-fid parity images the pool3 features differ from pytorch-fid's by at most 2.3e-5 of
//! their largest value with these tables, against 1.5e-5 with im2col only and 1.3e-5 with
//! F(2 × 2, 3 × 3) (the test allows 1e-4); F(4 × 4, 3 × 3) instead of F(2 × 2, 3 × 3) took the
//! 3 × 3 layers from 13 to 10.6 s of the `fid` command's 2 × 200 images (summed over the
//! threads). Larger tiles for 5 and 7 taps need points like ±3 or ±¼, whose coefficients grow
//! fast (F(2, 7) at 0, ±1, ±2, ±3: 8× the rounding of the ±½ choice in a float32 probe).

use super::act::Act;
use rayon::prelude::*;

/// Bytes of transformed tiles (`V` and `M`) computed at a time.
const TILE_BYTES: usize = 8 << 20;

/// One axis's algorithm F(m, r): `bt` is n × n, `g` n × r, `at` m × n (row-major).
struct Toom {
    m: usize,
    r: usize,
    bt: &'static [&'static [f32]],
    g: &'static [&'static [f64]],
    at: &'static [&'static [f32]],
}

/// A 1-tap axis: nothing to transform.
const F11: Toom = Toom {
    m: 1,
    r: 1,
    bt: &[&[1.0]],
    g: &[&[1.0]],
    at: &[&[1.0]],
};

/// F(2, 5), points 0, ±1, ±2, ∞.
const F25: Toom = Toom {
    m: 2,
    r: 5,
    bt: &[
        &[4.0, 0.0, -5.0, 0.0, 1.0, 0.0],
        &[0.0, 4.0, 4.0, -1.0, -1.0, 0.0],
        &[0.0, 4.0, -4.0, -1.0, 1.0, 0.0],
        &[0.0, 2.0, 1.0, -2.0, -1.0, 0.0],
        &[0.0, 2.0, -1.0, -2.0, 1.0, 0.0],
        &[0.0, 4.0, 0.0, -5.0, 0.0, 1.0],
    ],
    g: &[
        &[0.25, 0.0, 0.0, 0.0, 0.0],
        &[1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0],
        &[-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        &[-1.0 / 24.0, -1.0 / 12.0, -1.0 / 6.0, -1.0 / 3.0, -2.0 / 3.0],
        &[1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0, -1.0 / 3.0, 2.0 / 3.0],
        &[0.0, 0.0, 0.0, 0.0, 1.0],
    ],
    at: &[
        &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        &[0.0, 1.0, -1.0, 2.0, -2.0, 1.0],
    ],
};

/// F(2, 7), points 0, ±1, ±2, ±½, ∞.
const F27: Toom = Toom {
    m: 2,
    r: 7,
    bt: &[
        &[4.0, 0.0, -21.0, 0.0, 21.0, 0.0, -4.0, 0.0],
        &[0.0, 4.0, 4.0, -17.0, -17.0, 4.0, 4.0, 0.0],
        &[0.0, 4.0, -4.0, -17.0, 17.0, 4.0, -4.0, 0.0],
        &[0.0, 2.0, 1.0, -10.0, -5.0, 8.0, 4.0, 0.0],
        &[0.0, 2.0, -1.0, -10.0, 5.0, 8.0, -4.0, 0.0],
        &[0.0, 4.0, 8.0, -5.0, -10.0, 1.0, 2.0, 0.0],
        &[0.0, 4.0, -8.0, -5.0, 10.0, 1.0, -2.0, 0.0],
        &[0.0, 4.0, 0.0, -21.0, 0.0, 21.0, 0.0, -4.0],
    ],
    g: &[
        &[0.25, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        &[-1.0 / 18.0; 7],
        &[
            1.0 / 18.0,
            -1.0 / 18.0,
            1.0 / 18.0,
            -1.0 / 18.0,
            1.0 / 18.0,
            -1.0 / 18.0,
            1.0 / 18.0,
        ],
        &[
            1.0 / 360.0,
            1.0 / 180.0,
            1.0 / 90.0,
            1.0 / 45.0,
            2.0 / 45.0,
            4.0 / 45.0,
            8.0 / 45.0,
        ],
        &[
            -1.0 / 360.0,
            1.0 / 180.0,
            -1.0 / 90.0,
            1.0 / 45.0,
            -2.0 / 45.0,
            4.0 / 45.0,
            -8.0 / 45.0,
        ],
        &[
            16.0 / 45.0,
            8.0 / 45.0,
            4.0 / 45.0,
            2.0 / 45.0,
            1.0 / 45.0,
            1.0 / 90.0,
            1.0 / 180.0,
        ],
        &[
            -16.0 / 45.0,
            8.0 / 45.0,
            -4.0 / 45.0,
            2.0 / 45.0,
            -1.0 / 45.0,
            1.0 / 90.0,
            -1.0 / 180.0,
        ],
        &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -0.25],
    ],
    at: &[
        &[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        &[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5, 1.0],
    ],
};

/// F(4, 3), points 0, ±1, ±2, ∞.
const F43: Toom = Toom {
    m: 4,
    r: 3,
    bt: F25.bt,
    g: &[
        &[0.25, 0.0, 0.0],
        &[1.0 / 6.0, 1.0 / 6.0, 1.0 / 6.0],
        &[-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
        &[-1.0 / 24.0, -1.0 / 12.0, -1.0 / 6.0],
        &[1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
        &[0.0, 0.0, 1.0],
    ],
    at: &[
        &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
        &[0.0, 1.0, -1.0, 2.0, -2.0, 0.0],
        &[0.0, 1.0, 1.0, 4.0, 4.0, 0.0],
        &[0.0, 1.0, -1.0, 8.0, -8.0, 1.0],
    ],
};

impl Toom {
    fn for_taps(r: usize) -> Option<&'static Toom> {
        match r {
            1 => Some(&F11),
            3 => Some(&F43),
            5 => Some(&F25),
            7 => Some(&F27),
            _ => None,
        }
    }
    fn n(&self) -> usize {
        self.m + self.r - 1
    }
}

/// The non-zero coefficients of each row of a matrix, in column order.
fn sparse(rows: &[&[f32]]) -> Vec<Vec<(usize, f32)>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .filter(|(_, c)| **c != 0.0)
                .map(|(j, c)| (j, *c))
                .collect()
        })
        .collect()
}

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
    /// `M` (`[nh·nw][co]`) → the tile's mh × mw outputs `Aᵀ M A` + bias, ReLU'd, in `y`
    /// (row-major); `s` is scratch of mh·nw·co.
    fn output_transform(mt: &[f32], s: &mut [f32], y: &mut [f32], rows: &Axis, cols: &Axis, bias: &[f32]) {
        let co = bias.len();
        let nw = cols.n;
        // s = Aᵀ M over the rows of M (M itself when the rows have one tap).
        if rows.n > 1 {
            by_rows(s, &rows.at, mt, nw, co);
            by_cols(y, &cols.at, s, rows.m, nw, co);
        } else {
            by_cols(y, &cols.at, mt, 1, nw, co);
        }
        for d in y.chunks_exact_mut(co) {
            for (v, b) in d.iter_mut().zip(bias) {
                *v = (*v + b).max(0.0);
            }
        }
    }
}

/// A stride-1 convolution whose kernel sizes per axis have an algorithm (1, 3, 5 or 7 taps,
/// not both 1), its weights transformed: `u` is `[n][ci][co]`.
pub struct Winograd {
    u: Vec<f32>,
    b: Vec<f32>,
    ci: usize,
    co: usize,
    pad: (usize, usize),
    /// Taps per axis (rows, columns).
    r: (usize, usize),
    rows: Axis,
    cols: Axis,
}

impl Winograd {
    /// From weights `[kh·kw·ci, co]` row-major (`[ky][kx][ci]` rows, as `CpuConv` keeps them),
    /// or `None` for a kernel without an algorithm here.
    pub fn new(
        w: &[f32],
        b: Vec<f32>,
        (kh, kw): (usize, usize),
        ci: usize,
        co: usize,
        pad: (usize, usize),
    ) -> Option<Self> {
        let (th, tw) = (Toom::for_taps(kh)?, Toom::for_taps(kw)?);
        if kh == 1 && kw == 1 {
            return None;
        }
        assert_eq!(w.len(), kh * kw * ci * co, "{kh} x {kw} weights");
        let (nh, nw) = (th.n(), tw.n());
        // U = G g Gᵀ in f64: G over the kernel's rows for each column, then over the columns.
        let apply = |g: &[f64], v: &mut dyn Iterator<Item = f64>| -> f64 {
            let mut acc = None;
            for (c, x) in g.iter().zip(v) {
                if *c != 0.0 {
                    acc = Some(acc.map_or(c * x, |a: f64| a + c * x));
                }
            }
            acc.unwrap_or(0.0)
        };
        let mut u = vec![0f32; nh * nw * ci * co];
        let mut gg = vec![0f64; nh * kw];
        for i in 0..ci {
            for o in 0..co {
                let g = |y: usize, x: usize| w[((y * kw + x) * ci + i) * co + o] as f64;
                for x in 0..kw {
                    for (a, grow) in th.g.iter().enumerate() {
                        gg[a * kw + x] = apply(grow, &mut (0..kh).map(|y| g(y, x)));
                    }
                }
                for a in 0..nh {
                    for (bb, grow) in tw.g.iter().enumerate() {
                        let v = apply(grow, &mut (0..kw).map(|x| gg[a * kw + x]));
                        u[((a * nw + bb) * ci + i) * co + o] = v as f32;
                    }
                }
            }
        }
        Some(Self {
            u,
            b,
            ci,
            co,
            pad,
            r: (kh, kw),
            rows: Axis::new(th),
            cols: Axis::new(tw),
        })
    }

    pub fn forward(&self, x: &Act) -> Act {
        assert_eq!(x.c, self.ci, "input channels");
        let (ci, co) = (self.ci, self.co);
        let (ph, pw) = self.pad;
        let (rows, cols) = (&self.rows, &self.cols);
        let (nh, nw) = (rows.n, cols.n);
        let np = nh * nw;
        let ho = x.h + 2 * ph + 1 - self.r.0;
        let wo = x.w + 2 * pw + 1 - self.r.1;
        let (th, tw) = (ho.div_ceil(rows.m), wo.div_ceil(cols.m));
        let total = x.b * th * tw;
        let chunk = (TILE_BYTES / (4 * np * (ci + co))).clamp(16, total.max(16));
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
                        // The nh × nw input patch, zeros outside the map.
                        for p in 0..np {
                            let iy = (rows.m * ty + p / nw) as isize - ph as isize;
                            let ix = (cols.m * tx + p % nw) as isize - pw as isize;
                            x.pixel_into(img, iy, ix, &mut patch[p * ci..(p + 1) * ci]);
                        }
                        input_transform(patch, tmp, vt, rows, cols, ci);
                    },
                );
            for xi in 0..np {
                // Point ξ of tile k is at (k·np + ξ)·ci in `v` and (k·np + ξ)·co in `m`.
                crate::nn::gemm::gemm_rows(
                    (t, co, ci),
                    &mut m[xi * co..],
                    np * co,
                    &v[xi * ci..],
                    np * ci,
                    &self.u[xi * ci * co..(xi + 1) * ci * co],
                    co,
                    false,
                );
            }
            // Output transform: each tile's mh × mw outputs into the first values of its block
            // of `m`, then copied into place (fewer at the right and bottom edges).
            let (mh, mw) = (rows.m, cols.m);
            m[..t * np * co].par_chunks_mut(np * co).for_each_init(
                || (vec![0f32; mh * nw * co], vec![0f32; mh * mw * co]),
                |(s, y), mt| {
                    output_transform(mt, s, y, rows, cols, &self.b);
                    mt[..mh * mw * co].copy_from_slice(y);
                },
            );
            for (k, mt) in m[..t * np * co].chunks(np * co).enumerate() {
                let (img, rem) = ((start + k) / (th * tw), (start + k) % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                for q in 0..mh * mw {
                    let (oy, ox) = (mh * ty + q / mw, mw * tx + q % mw);
                    if oy < ho && ox < wo {
                        let d = ((img * ho + oy) * wo + ox) * co;
                        out[d..d + co].copy_from_slice(&mt[q * co..(q + 1) * co]);
                    }
                }
            }
            start += t;
        }
        Act {
            data: out,
            b: x.b,
            h: ho,
            w: wo,
            c: co,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::act::Act;
    use super::super::cpu::CpuConv;
    use super::{Toom, Winograd, F25, F27, F43};

    /// Each table computes the correlation of m outputs with an r-tap kernel exactly (in f64,
    /// up to rounding): `Aᵀ ((G g) ⊙ (Bᵀ d))` against `Σ_k g_k d_{i+k}`.
    #[test]
    fn every_table_is_a_correlation() {
        let mut rng = crate::util::rng("winograd-tables", 0);
        for t in [&F25, &F27, &F43] {
            let Toom { m, r, .. } = *t;
            let n = t.n();
            for _ in 0..20 {
                let d: Vec<f64> = crate::util::normal_vec(&mut rng, n)
                    .iter()
                    .map(|v| *v as f64)
                    .collect();
                let g: Vec<f64> = crate::util::normal_vec(&mut rng, r)
                    .iter()
                    .map(|v| *v as f64)
                    .collect();
                let prod: Vec<f64> = (0..n)
                    .map(|p| {
                        let u: f64 = (0..r).map(|k| t.g[p][k] * g[k]).sum();
                        let v: f64 = (0..n).map(|j| t.bt[p][j] as f64 * d[j]).sum();
                        u * v
                    })
                    .collect();
                for i in 0..m {
                    let y: f64 = (0..n).map(|p| t.at[i][p] as f64 * prod[p]).sum();
                    let want: f64 = (0..r).map(|k| g[k] * d[i + k]).sum();
                    assert!(
                        (y - want).abs() < 1e-12 * (1.0 + want.abs()),
                        "F({m}, {r}): {y} vs {want}"
                    );
                }
            }
        }
    }

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
            let wino = Winograd::new(conv.weights(), bias, (kh, kw), ci, co, pad)
                .expect("an algorithm")
                .forward(&x);
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
