//! Bootstrap intervals: a statistic recomputed on resamples of its images (drawn with
//! replacement, seeded), summarised by the percentile interval of those recomputations.
//!
//! What the interval covers: the variation that comes from *which images* were evaluated — the
//! generated / ground-truth pairs for FID, IS and similarity, the member and non-member images for
//! the membership audit (resampled separately, so both groups keep their sizes). What it does
//! not cover: the extractor (its weights are fixed, never resampled), the unlearning run's seed
//! (that is the spread over `seeds:`), and the bias of a statistic at this N (FID's small-N bias
//! shifts every resample alike). See docs/metrics.md.

use anyhow::Result;
use rand::Rng;
use rayon::prelude::*;

/// The interval's coverage: 95 %, the 2.5th and 97.5th percentiles of the resampled statistic.
pub const LEVEL: f64 = 0.95;

/// The `q`-quantile (0 ≤ q ≤ 1) of ascending `sorted`, interpolating linearly between order
/// statistics (numpy's default `linear` method).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of an empty list");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// The index lists of resample `r` of groups of `sizes` (one list per group, each as long as its
/// group, drawn with replacement). The stream depends on `seed` and `r` only, so a resample is
/// the same whichever thread computes it.
pub fn resample(sizes: &[usize], seed: u64, r: usize) -> Vec<Vec<usize>> {
    let mut rng = crate::util::rng("bootstrap", crate::util::mix(&[seed, r as u64]));
    sizes
        .iter()
        .map(|&n| (0..n).map(|_| rng.random_range(0..n.max(1))).collect())
        .collect()
}

/// The [`LEVEL`] percentile interval of `stat` over `resamples` resamples of groups of `sizes`;
/// `None` when `resamples` is 0 or a group is empty. Resamples on which the statistic is not
/// finite (a degenerate draw) are left out; the interval needs at least half of them.
pub fn interval<F>(
    sizes: &[usize],
    resamples: usize,
    seed: u64,
    stat: F,
) -> Result<Option<(f64, f64)>>
where
    F: Fn(&[Vec<usize>]) -> Result<f64> + Sync,
{
    if resamples == 0 || sizes.contains(&0) {
        return Ok(None);
    }
    let values: Vec<f64> = (0..resamples)
        .into_par_iter()
        .map(|r| stat(&resample(sizes, seed, r)))
        .collect::<Result<Vec<f64>>>()?;
    let mut finite: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if finite.len() * 2 < resamples {
        return Ok(None);
    }
    finite.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let tail = (1.0 - LEVEL) / 2.0;
    Ok(Some((
        quantile(&finite, tail),
        quantile(&finite, 1.0 - tail),
    )))
}

/// Rows `idx` of a row-major `[N, dim]` matrix.
pub fn gather_rows(rows: &[f32], dim: usize, idx: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(idx.len() * dim);
    for &i in idx {
        out.extend_from_slice(&rows[i * dim..(i + 1) * dim]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        // numpy.quantile([1, 2, 3, 4], [0, 0.025, 0.5, 0.975, 1]) = 1, 1.075, 2.5, 3.925, 4
        for (q, want) in [
            (0.0, 1.0),
            (0.025, 1.075),
            (0.5, 2.5),
            (0.975, 3.925),
            (1.0, 4.0),
        ] {
            assert!((quantile(&v, q) - want).abs() < 1e-12, "q {q}");
        }
    }

    /// The bootstrap of a mean of three values, against the exact bootstrap distribution: all 27
    /// equally likely resamples enumerated directly. With many resamples the percentile interval
    /// must approach the exact distribution's percentiles.
    #[test]
    fn percentile_interval_matches_the_enumerated_bootstrap() {
        let x = [0.0, 1.0, 5.0];
        let mut exact = vec![];
        for a in 0..3 {
            for b in 0..3 {
                for c in 0..3 {
                    exact.push((x[a] + x[b] + x[c]) / 3.0);
                }
            }
        }
        exact.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (lo, hi) = interval(&[3], 20_000, 7, |idx| {
            Ok(idx[0].iter().map(|&i| x[i]).sum::<f64>() / 3.0)
        })
        .unwrap()
        .unwrap();
        // The exact 2.5 % and 97.5 % points of the 27-point distribution (each point has mass
        // 1/27 ≈ 3.7 %): the lowest value and the highest one.
        let (elo, ehi) = (exact[0], exact[26]);
        assert!(
            (lo - elo).abs() < 1e-9 && (hi - ehi).abs() < 1e-9,
            "{lo} {hi}"
        );
        // Four values: the 256 resamples enumerated, their exact percentiles by the same rule;
        // the sampled interval lands within one step (0.25) of them.
        let y = [0.0, 1.0, 2.0, 10.0];
        let mut exact = vec![];
        for k in 0..256usize {
            let idx = [k % 4, (k / 4) % 4, (k / 16) % 4, k / 64];
            exact.push(idx.iter().map(|&i| y[i]).sum::<f64>() / 4.0);
        }
        exact.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let (elo, ehi) = (quantile(&exact, 0.025), quantile(&exact, 0.975));
        let (lo, hi) = interval(&[4], 40_000, 11, |idx| {
            Ok(idx[0].iter().map(|&i| y[i]).sum::<f64>() / 4.0)
        })
        .unwrap()
        .unwrap();
        assert!(
            (lo - elo).abs() <= 0.25 && (hi - ehi).abs() <= 0.25,
            "{lo} {hi} vs {elo} {ehi}"
        );
        assert!(hi - lo > 2.0, "a real spread: {lo} {hi}");
        // Deterministic for a seed, independent of the thread count.
        let once = interval(&[5, 4], 50, 3, |idx| {
            Ok(idx[0].iter().sum::<usize>() as f64 - idx[1].iter().sum::<usize>() as f64)
        })
        .unwrap();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let again = pool
            .install(|| {
                interval(&[5, 4], 50, 3, |idx| {
                    Ok(idx[0].iter().sum::<usize>() as f64 - idx[1].iter().sum::<usize>() as f64)
                })
            })
            .unwrap();
        assert_eq!(once, again);
        assert_eq!(interval(&[0], 50, 3, |_| Ok(1.0)).unwrap(), None);
        assert_eq!(interval(&[4], 0, 3, |_| Ok(1.0)).unwrap(), None);
    }
}
