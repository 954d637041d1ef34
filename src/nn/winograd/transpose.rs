//! NCHW ↔ NHWC, and OIHW weights → the tap-major layout, for the Winograd convolution of
//! [`super`] and the Inception backend's im2col.

use rayon::prelude::*;

/// `src` `[n][rows][cols]` → `[n][cols][rows]` (NCHW ↔ NHWC), through 16 × 16 tiles so that
/// both sides are read and written a cache line at a time, in parallel over blocks of 16
/// output rows.
pub fn transpose(src: &[f32], n: usize, rows: usize, cols: usize) -> Vec<f32> {
    const T: usize = 16;
    let per = rows * cols;
    assert_eq!(src.len(), n * per, "transpose: size");
    let mut dst = vec![0f32; src.len()];
    if per == 0 {
        return dst;
    }
    dst.par_chunks_mut(per)
        .zip(src.par_chunks(per))
        .for_each(|(d, s)| {
            d.par_chunks_mut(T * rows)
                .enumerate()
                .for_each(|(cb, blk)| {
                    let (c0, cn) = (cb * T, blk.len() / rows);
                    let mut tile = [[0f32; T]; T];
                    for r0 in (0..rows).step_by(T) {
                        let rn = T.min(rows - r0);
                        if rn == T && cn == T {
                            // Whole tiles as fixed-size arrays: moves the compiler keeps in registers.
                            for (i, t) in tile.iter_mut().enumerate() {
                                *t = s[(r0 + i) * cols + c0..][..T]
                                    .try_into()
                                    .expect("a tile row");
                            }
                            for j in 0..T {
                                let out: &mut [f32; T] = (&mut blk[j * rows + r0..][..T])
                                    .try_into()
                                    .expect("a tile row");
                                for (i, o) in out.iter_mut().enumerate() {
                                    *o = tile[i][j];
                                }
                            }
                            continue;
                        }
                        for (i, t) in tile.iter_mut().enumerate().take(rn) {
                            t[..cn].copy_from_slice(&s[(r0 + i) * cols + c0..][..cn]);
                        }
                        for j in 0..cn {
                            let out = &mut blk[j * rows + r0..][..rn];
                            for (i, o) in out.iter_mut().enumerate() {
                                *o = tile[i][j];
                            }
                        }
                    }
                });
        });
    dst
}

/// OIHW weights (`[co][ci][taps]`, taps = kh·kw in row-major order) → `[taps][ci][co]`, the
/// layout the Winograd transform and the channels-last im2col read.
pub fn taps_major(w_oihw: &[f32], co: usize, ci: usize, taps: usize) -> Vec<f32> {
    // [co][(ci, tap)] → [(ci, tap)][co], then the (ci, tap) rows reordered to (tap, ci).
    let ct = transpose(w_oihw, 1, co, ci * taps);
    let mut t = vec![0f32; ct.len()];
    for (i, v) in ct.chunks_exact(co).enumerate() {
        let (c, tap) = (i / taps, i % taps);
        t[(tap * ci + c) * co..][..co].copy_from_slice(v);
    }
    t
}

#[cfg(test)]
mod tests {
    /// The blocked transpose equals the plain one, on sizes that are not multiples of its tile.
    #[test]
    fn transpose_equals_the_plain_loop() {
        for (n, rows, cols) in [(2, 17, 33), (1, 64, 5), (3, 1, 40), (1, 16, 16)] {
            let src: Vec<f32> = (0..n * rows * cols).map(|i| i as f32).collect();
            let t = super::transpose(&src, n, rows, cols);
            for k in 0..n {
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(t[(k * cols + c) * rows + r], src[(k * rows + r) * cols + c]);
                    }
                }
            }
        }
    }

    /// `taps_major` moves each weight where the plain loop puts it.
    #[test]
    fn taps_major_equals_the_plain_loop() {
        let (co, ci, kh, kw) = (5, 3, 3, 2);
        let w: Vec<f32> = (0..co * ci * kh * kw).map(|i| i as f32).collect();
        let t = super::taps_major(&w, co, ci, kh * kw);
        for o in 0..co {
            for i in 0..ci {
                for y in 0..kh {
                    for x in 0..kw {
                        assert_eq!(
                            t[((y * kw + x) * ci + i) * co + o],
                            w[((o * ci + i) * kh + y) * kw + x]
                        );
                    }
                }
            }
        }
    }
}
