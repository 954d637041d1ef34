//! Winograd F(2×2, 3×3) for the stride-1 3 × 3 convolutions of the CPU backend (Lavin & Gray,
//! "Fast Algorithms for Convolutional Neural Networks", 2016): each 2 × 2 block of outputs from a
//! 4 × 4 input tile with 16 multiplications per (input, output) channel pair instead of 36.
//!
//! Per block of tiles: the input transform `V = Bᵀ d B` (channels contiguous, `[tile][16][ci]`),
//! 16 `gemm` calls `M_ξ = V_ξ · U_ξ` over the tiles (`U = G g Gᵀ`, transformed once), and the
//! output transform `Y = Aᵀ M A` with bias and ReLU fused, written in NHWC. The result equals
//! the im2col convolution up to float rounding (a test; the parity tests allow 1e-4 relative).

use super::cpu::Act;
use rayon::prelude::*;

/// Bytes of transformed tiles (`V` and `M`) computed at a time.
const TILE_BYTES: usize = 8 << 20;

/// A 3 × 3, stride-1 convolution with its weights transformed: `u` is `[16][ci][co]`.
pub struct Winograd3x3 {
    u: Vec<f32>,
    b: Vec<f32>,
    ci: usize,
    co: usize,
    pad: (usize, usize),
}

impl Winograd3x3 {
    /// From weights `[3·3·ci, co]` row-major (`[ky][kx][ci]` rows, as `CpuConv` keeps them).
    pub fn new(w: &[f32], b: Vec<f32>, ci: usize, co: usize, pad: (usize, usize)) -> Self {
        assert_eq!(w.len(), 9 * ci * co, "3 x 3 weights");
        // G = [[1, 0, 0], [½, ½, ½], [½, −½, ½], [0, 0, 1]]; U = G g Gᵀ, in f64.
        let g_rows = |g: [f64; 3]| -> [f64; 4] {
            [
                g[0],
                0.5 * (g[0] + g[1] + g[2]),
                0.5 * (g[0] - g[1] + g[2]),
                g[2],
            ]
        };
        let mut u = vec![0f32; 16 * ci * co];
        for i in 0..ci {
            for o in 0..co {
                let g = |y: usize, x: usize| w[((y * 3 + x) * ci + i) * co + o] as f64;
                // Columns of G g (4 × 3), then G applied to each of its rows' transposes.
                let gg: [[f64; 4]; 3] = [0, 1, 2].map(|x| g_rows([g(0, x), g(1, x), g(2, x)]));
                for r in 0..4 {
                    let row = g_rows([gg[0][r], gg[1][r], gg[2][r]]);
                    for (c, v) in row.iter().enumerate() {
                        u[((r * 4 + c) * ci + i) * co + o] = *v as f32;
                    }
                }
            }
        }
        Self { u, b, ci, co, pad }
    }

    pub fn forward(&self, x: &Act) -> Act {
        assert_eq!(x.c, self.ci, "input channels");
        let (ci, co) = (self.ci, self.co);
        let (ph, pw) = self.pad;
        let ho = x.h + 2 * ph - 2;
        let wo = x.w + 2 * pw - 2;
        let (th, tw) = (ho.div_ceil(2), wo.div_ceil(2));
        let total = x.b * th * tw;
        let chunk = (TILE_BYTES / (4 * 16 * (ci + co))).clamp(16, total.max(16));
        let mut v = vec![0f32; chunk.min(total) * 16 * ci];
        let mut m = vec![0f32; chunk.min(total) * 16 * co];
        let mut out = vec![0f32; x.b * ho * wo * co];
        let plane = x.h * x.w * ci;
        let mut start = 0;
        while start < total {
            let t = chunk.min(total - start);
            v[..t * 16 * ci]
                .par_chunks_mut(16 * ci)
                .enumerate()
                .for_each_init(
                    || vec![0f32; 16 * ci],
                    |tmp, (k, vt)| {
                        let tile = start + k;
                        let (img, rem) = (tile / (th * tw), tile % (th * tw));
                        let (ty, tx) = (rem / tw, rem % tw);
                        let src = &x.data[img * plane..(img + 1) * plane];
                        // The 4 × 4 input patch, zeros outside the map.
                        for p in 0..16 {
                            let iy = (2 * ty + p / 4) as isize - ph as isize;
                            let ix = (2 * tx + p % 4) as isize - pw as isize;
                            let dst = &mut vt[p * ci..(p + 1) * ci];
                            if iy < 0 || ix < 0 || iy >= x.h as isize || ix >= x.w as isize {
                                dst.fill(0.0);
                            } else {
                                let s = (iy as usize * x.w + ix as usize) * ci;
                                dst.copy_from_slice(&src[s..s + ci]);
                            }
                        }
                        input_transform(vt, tmp, ci);
                    },
                );
            for xi in 0..16 {
                // Row ξ of tile k is at (k·16 + ξ)·ci in `v` and (k·16 + ξ)·co in `m`.
                crate::nn::gemm::gemm_rows(
                    (t, co, ci),
                    &mut m[xi * co..],
                    16 * co,
                    &v[xi * ci..],
                    16 * ci,
                    &self.u[xi * ci * co..(xi + 1) * ci * co],
                    co,
                    false,
                );
            }
            // Output transform: each tile's 2 × 2 outputs into the first 4·co values of its
            // block of `m`, then copied into place (fewer at the right and bottom edges).
            m[..t * 16 * co].par_chunks_mut(16 * co).for_each_init(
                || vec![0f32; 8 * co],
                |s, mt| output_transform(mt, s, co, &self.b),
            );
            for (k, mt) in m[..t * 16 * co].chunks(16 * co).enumerate() {
                let (img, rem) = ((start + k) / (th * tw), (start + k) % (th * tw));
                let (ty, tx) = (rem / tw, rem % tw);
                for q in 0..4 {
                    let (oy, ox) = (2 * ty + q / 2, 2 * tx + q % 2);
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

/// `d` (16 channel vectors, the patch row-major) → `Bᵀ d B` in place, with
/// `Bᵀ = [[1, 0, −1, 0], [0, 1, 1, 0], [0, −1, 1, 0], [0, 1, 0, −1]]`.
fn input_transform(d: &mut [f32], tmp: &mut [f32], ci: usize) {
    // Rows: tmp_r = (Bᵀ d)_r over the patch's rows, one patch column c at a time.
    for c in 0..4 {
        let at = |r: usize| &d[(r * 4 + c) * ci..(r * 4 + c + 1) * ci];
        let (d0, d1, d2, d3) = (at(0), at(1), at(2), at(3));
        let (t0, rest) = tmp.split_at_mut(4 * ci);
        let (t1, rest) = rest.split_at_mut(4 * ci);
        let (t2, t3) = rest.split_at_mut(4 * ci);
        let cols = c * ci..(c + 1) * ci;
        let (t0, t1, t2, t3) = (
            &mut t0[cols.clone()],
            &mut t1[cols.clone()],
            &mut t2[cols.clone()],
            &mut t3[cols],
        );
        for k in 0..ci {
            t0[k] = d0[k] - d2[k];
            t1[k] = d1[k] + d2[k];
            t2[k] = d2[k] - d1[k];
            t3[k] = d1[k] - d3[k];
        }
    }
    // Columns: V_r = tmp_r B.
    for r in 0..4 {
        let row = &tmp[r * 4 * ci..(r + 1) * 4 * ci];
        let dst = &mut d[r * 4 * ci..(r + 1) * 4 * ci];
        let (t0, rest) = row.split_at(ci);
        let (t1, rest) = rest.split_at(ci);
        let (t2, t3) = rest.split_at(ci);
        let (v0, rest) = dst.split_at_mut(ci);
        let (v1, rest) = rest.split_at_mut(ci);
        let (v2, v3) = rest.split_at_mut(ci);
        for k in 0..ci {
            v0[k] = t0[k] - t2[k];
            v1[k] = t1[k] + t2[k];
            v2[k] = t2[k] - t1[k];
            v3[k] = t1[k] - t3[k];
        }
    }
}

/// `M` (16 channel vectors) → the tile's 2 × 2 outputs `Aᵀ M A` + bias, ReLU'd, with
/// `Aᵀ = [[1, 1, 1, 0], [0, 1, −1, −1]]`, written over the first 4·co values of `m` in the order
/// y0x0, y0x1, y1x0, y1x1; `s` is scratch of 8·co.
fn output_transform(m: &mut [f32], s: &mut [f32], co: usize, bias: &[f32]) {
    // s_r,c = (Aᵀ M)_r,c over the rows of M.
    for c in 0..4 {
        let at = |r: usize| &m[(r * 4 + c) * co..(r * 4 + c + 1) * co];
        let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
        let (s0, s1) = s.split_at_mut(4 * co);
        let (s0, s1) = (&mut s0[c * co..(c + 1) * co], &mut s1[c * co..(c + 1) * co]);
        for k in 0..co {
            s0[k] = m0[k] + m1[k] + m2[k];
            s1[k] = m1[k] - m2[k] - m3[k];
        }
    }
    // Y_r = s_r A over the columns.
    for r in 0..2 {
        let sr = &s[r * 4 * co..(r + 1) * 4 * co];
        let (c0, rest) = sr.split_at(co);
        let (c1, rest) = rest.split_at(co);
        let (c2, c3) = rest.split_at(co);
        let (y0, y1) = m[2 * r * co..(2 * r + 2) * co].split_at_mut(co);
        for k in 0..co {
            y0[k] = (c0[k] + c1[k] + c2[k] + bias[k]).max(0.0);
            y1[k] = (c1[k] - c2[k] - c3[k] + bias[k]).max(0.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::cpu::{Act, CpuConv};
    use super::Winograd3x3;

    /// The Winograd convolution against im2col, on odd and even map sizes, with and without
    /// padding, several images per call.
    #[test]
    fn winograd_equals_im2col() {
        let mut rng = crate::util::rng("winograd-test", 0);
        for (b, h, w, ci, co, pad) in [
            (2, 7, 9, 5, 6, (1, 1)),
            (1, 8, 8, 16, 24, (0, 0)),
            (3, 5, 4, 3, 2, (1, 1)),
        ] {
            let oihw = crate::util::normal_vec(&mut rng, co * ci * 9);
            let bias = crate::util::normal_vec(&mut rng, co);
            let x = Act {
                data: crate::util::normal_vec(&mut rng, b * h * w * ci),
                b,
                h,
                w,
                c: ci,
            };
            let conv = CpuConv::new(&oihw, bias.clone(), [co, ci, 3, 3], 1, pad);
            let direct = conv.im2col_forward(&x);
            let wino = Winograd3x3::new(conv.weights(), bias, ci, co, pad).forward(&x);
            assert_eq!((wino.h, wino.w, wino.c), (direct.h, direct.w, direct.c));
            let scale = direct.data.iter().fold(0f32, |a, v| a.max(v.abs()));
            let diff = direct
                .data
                .iter()
                .zip(&wino.data)
                .fold(0f32, |a, (p, q)| a.max((p - q).abs()));
            assert!(
                diff <= 1e-5 * scale,
                "{b}x{h}x{w}x{ci}->{co}: {diff} of {scale}"
            );
        }
    }
}
