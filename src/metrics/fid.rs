//! Feature statistics and the Fréchet distance, in f64.
//!
//! Statistics are accumulated in batches (memory stays at the d × d accumulators whatever N is):
//! mean and covariance with N − 1, like `np.cov(rowvar=False)`. The Fréchet distance
//!
//!   d² = |μ₁ − μ₂|² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂)
//!
//! computes tr √(Σ₁Σ₂) from the eigenvalues of a symmetric PSD matrix similar to Σ₁Σ₂ (via a
//! Cholesky factor of Σ₁, or its eigendecomposition when Σ₁ is singular), eigenvalues clamped at
//! 0: no complex square roots, robust when N < d.

use anyhow::Result;
use faer::{Accum, Mat, MatRef, Side};

/// Mean and covariance of a feature set.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub mu: Vec<f64>,
    /// Row-major d × d.
    pub sigma: Vec<f64>,
    pub n: usize,
}

impl Stats {
    pub fn dim(&self) -> usize {
        self.mu.len()
    }
    /// From an `[N, d]` row-major slice.
    pub fn from_rows(rows: &[f32], d: usize) -> Result<Self> {
        let mut acc = StatsAccumulator::new(d);
        acc.add_rows(rows)?;
        acc.finish()
    }
}

/// Streaming mean / covariance: shifted sums (shift = first batch's mean) to limit cancellation.
pub struct StatsAccumulator {
    d: usize,
    n: usize,
    shift: Option<Vec<f64>>,
    sum: Vec<f64>,
    outer: Mat<f64>,
}

impl StatsAccumulator {
    pub fn new(d: usize) -> Self {
        Self {
            d,
            n: 0,
            shift: None,
            sum: vec![0.0; d],
            outer: Mat::zeros(d, d),
        }
    }

    pub fn count(&self) -> usize {
        self.n
    }

    /// Add a batch of rows (`[b, d]` row-major).
    pub fn add_rows(&mut self, rows: &[f32]) -> Result<()> {
        let d = self.d;
        anyhow::ensure!(
            rows.len() % d == 0,
            "feature batch of {} values is not a multiple of d = {d}",
            rows.len()
        );
        let b = rows.len() / d;
        if b == 0 {
            return Ok(());
        }
        let shift = self
            .shift
            .get_or_insert_with(|| {
                (0..d)
                    .map(|j| (0..b).map(|i| rows[i * d + j] as f64).sum::<f64>() / b as f64)
                    .collect()
            })
            .clone();
        let x = Mat::<f64>::from_fn(b, d, |i, j| rows[i * d + j] as f64 - shift[j]);
        for i in 0..b {
            for j in 0..d {
                self.sum[j] += x[(i, j)];
            }
        }
        self.outer += x.transpose() * &x;
        self.n += b;
        Ok(())
    }

    pub fn finish(&self) -> Result<Stats> {
        let (n, d) = (self.n, self.d);
        anyhow::ensure!(n >= 2, "need at least 2 samples for a covariance, got {n}");
        let shift = self.shift.clone().unwrap_or_else(|| vec![0.0; d]);
        let m: Vec<f64> = self.sum.iter().map(|s| s / n as f64).collect();
        let mut sigma = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..d {
                sigma[i * d + j] = (self.outer[(i, j)] - n as f64 * m[i] * m[j]) / (n as f64 - 1.0);
            }
        }
        Ok(Stats {
            mu: m.iter().zip(&shift).map(|(a, b)| a + b).collect(),
            sigma,
            n,
        })
    }
}

fn to_mat(v: &[f64], d: usize) -> Mat<f64> {
    // Symmetrise: accumulated round-off must not make the eigensolver see an asymmetric matrix.
    Mat::from_fn(d, d, |i, j| 0.5 * (v[i * d + j] + v[j * d + i]))
}

/// The lower triangle of Lᵀ S L, for a lower-triangular L and a symmetric S, with triangular
/// products: S·L reads only L's lower half (d³ instead of 2d³ flops) and Lᵀ·(S L) computes only the
/// lower half of the symmetric result (≈ d³ / 3 · 2), so about a third of two dense products.
fn congruence_lower(l: MatRef<'_, f64>, s: MatRef<'_, f64>) -> Mat<f64> {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let d = l.nrows();
    let par = faer::get_global_parallelism();
    let mut sl = Mat::<f64>::zeros(d, d);
    matmul(
        sl.as_mut(),
        BlockStructure::Rectangular,
        Accum::Replace,
        s,
        BlockStructure::Rectangular,
        l,
        BlockStructure::TriangularLower,
        1.0,
        par,
    );
    let mut m = Mat::<f64>::zeros(d, d);
    matmul(
        m.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        l.transpose(),
        BlockStructure::TriangularUpper,
        sl.as_ref(),
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    m
}

/// Σ √max(λ, 0) over the eigenvalues of a symmetric matrix of which only the lower triangle is set.
fn lower_eigen_sqrt_sum(m: Mat<f64>) -> Result<f64> {
    let ev = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigendecomposition failed: {e:?}"))?;
    Ok(ev.iter().map(|l| l.max(0.0).sqrt()).sum())
}

/// tr √(Σ₁Σ₂) for PSD Σ₁, Σ₂: the eigenvalues of Σ₁Σ₂ are those of the symmetric PSD matrix
/// Lᵀ Σ₂ L when Σ₁ = L Lᵀ (Cholesky), or, when Σ₁ is singular (N ≤ d), of
/// Λ^½ Vᵀ Σ₂ V Λ^½ with Σ₁ = V Λ Vᵀ (eigenvalues clamped at 0). Only symmetric solvers.
pub fn trace_sqrt_product(s1: &[f64], s2: &[f64], d: usize) -> Result<f64> {
    // The Cholesky route reads Σ₁'s lower triangle and Σ₂ in place (no symmetrised copies: a
    // 2048-d matrix is 32 MiB, and fresh pages cost more than the arithmetic saved elsewhere).
    let (v1, v2) = (
        MatRef::from_row_major_slice(s1, d, d),
        MatRef::from_row_major_slice(s2, d, d),
    );
    if let Ok(llt) = v1.llt(Side::Lower) {
        let l = llt.L();
        // Only a well-conditioned factor: a covariance of N ≤ d samples is singular, and round-off
        // can still let the factorisation "succeed" with tiny pivots that wreck the result.
        let (lo, hi) = (0..d).fold((f64::INFINITY, 0f64), |(a, b), i| {
            (a.min(l[(i, i)].abs()), b.max(l[(i, i)].abs()))
        });
        if hi > 0.0 && (lo / hi).powi(2) > 1e-10 {
            return lower_eigen_sqrt_sum(congruence_lower(l, v2));
        }
    }
    let eig = to_mat(s1, d)
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| anyhow::anyhow!("eigendecomposition failed: {e:?}"))?;
    // A = Σ₁^½ = V Λ^½ Vᵀ (eigenvalues clamped at 0), then the eigenvalues of A Σ₂ A. With a
    // singular Σ₁ (N ≤ d) the last digits of any route are round-off of the null space; this one
    // agrees with pytorch-fid's scipy sqrtm to < 1e-6 on the parity fixtures (the similar
    // Λ^½ Vᵀ Σ₂ V Λ^½, a third of the flops, moves them by 1.1e-6: tried, not taken). Both
    // symmetric products compute their lower half only.
    let (u, s) = (eig.U(), eig.S().column_vector());
    let scaled = Mat::from_fn(d, d, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    let a = symmetric_product_lower(scaled.as_ref(), u.transpose());
    let a = Mat::from_fn(d, d, |i, j| if i >= j { a[(i, j)] } else { a[(j, i)] });
    let mut am2 = Mat::<f64>::zeros(d, d);
    faer::linalg::matmul::matmul(
        am2.as_mut(),
        Accum::Replace,
        a.as_ref(),
        MatRef::from_row_major_slice(s2, d, d),
        1.0,
        faer::get_global_parallelism(),
    );
    lower_eigen_sqrt_sum(symmetric_product_lower(am2.as_ref(), a.as_ref()))
}

/// The lower half of x · y when the product is known to be symmetric.
fn symmetric_product_lower(x: MatRef<'_, f64>, y: MatRef<'_, f64>) -> Mat<f64> {
    use faer::linalg::matmul::triangular::{matmul, BlockStructure};
    let mut m = Mat::<f64>::zeros(x.nrows(), y.ncols());
    matmul(
        m.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        x,
        BlockStructure::Rectangular,
        y,
        BlockStructure::Rectangular,
        1.0,
        faer::get_global_parallelism(),
    );
    m
}

/// The Fréchet distance between two Gaussians.
pub fn frechet_distance(a: &Stats, b: &Stats) -> Result<f64> {
    let d = a.dim();
    anyhow::ensure!(
        b.dim() == d,
        "feature dimensions differ: {d} vs {}",
        b.dim()
    );
    let diff: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y).powi(2)).sum();
    let tr = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let ts = trace_sqrt_product(&a.sigma, &b.sigma, d)?;
    Ok(diff + tr(&a.sigma) + tr(&b.sigma) - 2.0 * ts)
}

impl Stats {
    /// Write pytorch-fid's statistics file: `mu` [d] and `sigma` [d, d], float64.
    pub fn save_npz(&self, path: &std::path::Path) -> Result<()> {
        use candle_core::{Device, Tensor};
        let d = self.dim();
        let mu = Tensor::from_vec(self.mu.clone(), d, &Device::Cpu)?;
        let sigma = Tensor::from_vec(self.sigma.clone(), (d, d), &Device::Cpu)?;
        crate::util::write_atomic_with(path, |tmp| {
            Ok(Tensor::write_npz(&[("mu", &mu), ("sigma", &sigma)], tmp)?)
        })
    }

    /// Read a statistics file with `mu` and `sigma` (as pytorch-fid writes them; N unknown = 0).
    pub fn load_npz(path: &std::path::Path) -> Result<Self> {
        use candle_core::{DType, Tensor};
        let arrays = Tensor::read_npz(path).map_err(|e| {
            crate::error::user(format!("{}: not a readable .npz ({e})", path.display()))
        })?;
        let get = |k: &str| {
            arrays
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, t)| t.clone())
                .ok_or_else(|| {
                    crate::error::user(format!(
                        "{}: no array `{k}` (pytorch-fid statistics have `mu` and `sigma`)",
                        path.display()
                    ))
                })
        };
        let (mu, sigma) = (get("mu")?, get("sigma")?);
        let d = mu.elem_count();
        if !(mu.rank() == 1 && sigma.dims() == [d, d]) {
            return Err(crate::error::user(format!(
                "{}: `mu` {:?} and `sigma` {:?} do not fit together (pytorch-fid statistics: mu [d], sigma [d, d])",
                path.display(),
                mu.dims(),
                sigma.dims()
            )));
        }
        let stats = Self {
            mu: mu.to_dtype(DType::F64)?.to_vec1::<f64>()?,
            sigma: sigma
                .to_dtype(DType::F64)?
                .flatten_all()?
                .to_vec1::<f64>()?,
            n: 0,
        };
        stats
            .check()
            .map_err(|m| crate::error::user(format!("{}: {m}", path.display())))?;
        Ok(stats)
    }

    /// Statistics a Fréchet distance can use: finite, the covariance symmetric with a
    /// non-negative diagonal.
    pub fn check(&self) -> std::result::Result<(), String> {
        let d = self.dim();
        if let Some(i) = self.mu.iter().position(|v| !v.is_finite()) {
            return Err(format!("`mu`[{i}] is {}", self.mu[i]));
        }
        if let Some(i) = self.sigma.iter().position(|v| !v.is_finite()) {
            return Err(format!(
                "`sigma`[{}, {}] is {}",
                i / d,
                i % d,
                self.sigma[i]
            ));
        }
        let scale = self
            .sigma
            .iter()
            .fold(0f64, |m, v| m.max(v.abs()))
            .max(1e-300);
        for i in 0..d {
            if self.sigma[i * d + i] < 0.0 {
                return Err(format!(
                    "`sigma` has a negative variance at [{i}, {i}]: not a covariance"
                ));
            }
            for j in 0..i {
                if (self.sigma[i * d + j] - self.sigma[j * d + i]).abs() > 1e-6 * scale {
                    return Err(format!(
                        "`sigma` is not symmetric ([{i}, {j}] ≠ [{j}, {i}]): not a covariance"
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics_files_must_hold_a_covariance() {
        let ok = Stats {
            mu: vec![0.0, 1.0],
            sigma: vec![1.0, 0.5, 0.5, 2.0],
            n: 0,
        };
        assert!(ok.check().is_ok());
        let nan = Stats {
            mu: vec![f64::NAN, 1.0],
            ..ok.clone()
        };
        assert!(nan.check().unwrap_err().contains("`mu`[0]"));
        let asym = Stats {
            sigma: vec![1.0, 0.5, -0.5, 2.0],
            ..ok.clone()
        };
        assert!(asym.check().unwrap_err().contains("not symmetric"));
        let neg = Stats {
            sigma: vec![-1.0, 0.0, 0.0, 2.0],
            ..ok
        };
        assert!(neg.check().unwrap_err().contains("negative variance"));
    }

    fn lcg_rows(n: usize, d: usize, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
        let mut s = seed;
        (0..n * d)
            .map(|_| {
                s = crate::util::splitmix64(s);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale + offset
            })
            .collect()
    }

    #[test]
    fn stats_match_two_pass_covariance_and_streaming_is_exact() {
        let (n, d) = (50, 4);
        let rows = lcg_rows(n, d, 1, 2.0, 100.0);
        let s = Stats::from_rows(&rows, d).unwrap();
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| rows[i * d + j] as f64).sum::<f64>() / n as f64)
            .collect();
        for a in 0..d {
            for b in 0..d {
                let c: f64 = (0..n)
                    .map(|i| {
                        (rows[i * d + a] as f64 - mean[a]) * (rows[i * d + b] as f64 - mean[b])
                    })
                    .sum::<f64>()
                    / (n - 1) as f64;
                assert!((s.sigma[a * d + b] - c).abs() < 1e-10);
            }
        }
        let mut acc = StatsAccumulator::new(d);
        for chunk in rows.chunks(7 * d) {
            acc.add_rows(chunk).unwrap();
        }
        let s2 = acc.finish().unwrap();
        for (x, y) in s.sigma.iter().zip(&s2.sigma) {
            assert!((x - y).abs() < 1e-10);
        }
    }

    #[test]
    fn frechet_of_identical_sets_is_zero_and_of_shifted_means_is_the_shift() {
        let d = 3;
        let rows = lcg_rows(40, d, 2, 1.0, 0.0);
        let a = Stats::from_rows(&rows, d).unwrap();
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-9);
        let shifted: Vec<f32> = rows.iter().map(|x| x + 2.0).collect();
        let b = Stats::from_rows(&shifted, d).unwrap();
        assert!((frechet_distance(&a, &b).unwrap() - 12.0).abs() < 1e-6);
    }

    #[test]
    fn frechet_matches_closed_form_for_diagonal_gaussians() {
        // Σ₁ = diag(1, 4), Σ₂ = diag(9, 1): tr√(Σ₁Σ₂) = 3 + 2.
        let a = Stats {
            mu: vec![0.0, 0.0],
            sigma: vec![1.0, 0.0, 0.0, 4.0],
            n: 10,
        };
        let b = Stats {
            mu: vec![1.0, 0.0],
            sigma: vec![9.0, 0.0, 0.0, 1.0],
            n: 10,
        };
        let want = 1.0 + 5.0 + 10.0 - 2.0 * 5.0;
        assert!((frechet_distance(&a, &b).unwrap() - want).abs() < 1e-10);
    }

    #[test]
    fn singular_covariances_when_n_is_below_d_stay_finite() {
        let d = 16;
        let a = Stats::from_rows(&lcg_rows(5, d, 3, 1.0, 0.0), d).unwrap();
        let b = Stats::from_rows(&lcg_rows(5, d, 4, 1.0, 0.5), d).unwrap();
        let f = frechet_distance(&a, &b).unwrap();
        assert!(f.is_finite() && f > 0.0);
    }
}
