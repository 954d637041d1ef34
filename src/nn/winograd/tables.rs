//! The Toom-Cook tables of [`super`]: one axis's algorithm F(m, r) per kernel size (`Bᵀ`, `G`,
//! `Aᵀ`), each checked against the direct correlation in f64.

/// One axis's algorithm F(m, r): `bt` is n × n, `g` n × r, `at` m × n (row-major).
pub(super) struct Toom {
    pub m: usize,
    pub r: usize,
    pub bt: &'static [&'static [f32]],
    pub g: &'static [&'static [f64]],
    pub at: &'static [&'static [f32]],
}

/// A 1-tap axis: nothing to transform.
pub(super) const F11: Toom = Toom {
    m: 1,
    r: 1,
    bt: &[&[1.0]],
    g: &[&[1.0]],
    at: &[&[1.0]],
};

/// F(2, 5), points 0, ±1, ±2, ∞.
pub(super) const F25: Toom = Toom {
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
pub(super) const F27: Toom = Toom {
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
pub(super) const F43: Toom = Toom {
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
    pub fn for_taps(r: usize) -> Option<&'static Toom> {
        match r {
            1 => Some(&F11),
            3 => Some(&F43),
            5 => Some(&F25),
            7 => Some(&F27),
            _ => None,
        }
    }
    pub fn n(&self) -> usize {
        self.m + self.r - 1
    }
}

/// The non-zero coefficients of each row of a matrix, in column order.
pub(super) fn sparse(rows: &[&[f32]]) -> Vec<Vec<(usize, f32)>> {
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

#[cfg(test)]
mod tests {
    use super::{Toom, F25, F27, F43};

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
}
