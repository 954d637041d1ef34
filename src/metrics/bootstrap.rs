//! Bootstrap intervals: a statistic recomputed on resamples of its images (drawn with
//! replacement, seeded), summarised by the percentile interval of those recomputations, shifted
//! by the resamples' bias for the statistics that resampling itself biases (IS, FID:
//! [`interval_bias_corrected`]).
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
    Ok(summarise(sizes, resamples, seed, stat)?.map(|(lo, hi, _)| (lo, hi)))
}

/// The bias-corrected [`LEVEL`] interval of a statistic whose resamples are biased: the
/// percentile interval shifted by the bootstrap's estimate of that bias (the resamples' mean
/// minus the full-sample `value`). Resampling with replacement repeats images, which by itself
/// lowers the Inception Score and raises a Fréchet distance, so their percentile intervals can
/// exclude their own value (seen: IS 1.9881 outside [1.7960, 1.9874] at 50 resamples). Shifted,
/// the interval keeps the resamples' spread and contains `value` whenever the resamples' mean
/// lies within their own percentile interval. For an unbiased statistic (a mean) the shift is
/// the resampling noise of the mean and the interval is the percentile one.
pub fn interval_bias_corrected<F>(
    sizes: &[usize],
    resamples: usize,
    seed: u64,
    value: f64,
    stat: F,
) -> Result<Option<(f64, f64)>>
where
    F: Fn(&[Vec<usize>]) -> Result<f64> + Sync,
{
    Ok(
        summarise(sizes, resamples, seed, stat)?.map(|(lo, hi, mean)| {
            let bias = mean - value;
            (lo - bias, hi - bias)
        }),
    )
}

/// The percentile interval and the mean of the finite resampled values.
fn summarise<F>(
    sizes: &[usize],
    resamples: usize,
    seed: u64,
    stat: F,
) -> Result<Option<(f64, f64, f64)>>
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
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    Ok(Some((
        quantile(&finite, tail),
        quantile(&finite, 1.0 - tail),
        mean,
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
        assert_eq!(
            interval_bias_corrected(&[4], 0, 3, 1.0, |_| Ok(1.0)).unwrap(),
            None
        );
        assert_eq!(interval(&[4], 0, 3, |_| Ok(1.0)).unwrap(), None);
    }

    /// The Inception Score of resampled image sets is biased low (repeated images make the
    /// marginal class distribution less diverse), so the full-sample value can sit above the
    /// top of its percentile interval; the bias-corrected interval contains it.
    #[test]
    fn is_intervals_contain_their_value() {
        use rand::SeedableRng;
        let (n, classes) = (50, 10);
        let mut misses = 0;
        for trial in 0..20u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(trial);
            // Confident predictions spread over the classes: IS well above 1.
            let logits: Vec<f32> = (0..n * classes)
                .map(|i| {
                    let (img, c) = (i / classes, i % classes);
                    let hit = (img * 7 + trial as usize) % classes == c;
                    (if hit { 4.0 } else { 0.0 }) + rng.random_range(0.0..2.0f32)
                })
                .collect();
            let score = |l: &[f32]| {
                crate::metrics::is::inception_score_with(
                    l,
                    classes,
                    1,
                    None,
                    crate::metrics::is::Splits::Floor,
                )
                .unwrap()
                .0
            };
            let value = score(&logits);
            let stat = |idx: &[Vec<usize>]| Ok(score(&gather_rows(&logits, classes, &idx[0])));
            let (lo, hi) = interval(&[n], 50, trial, stat).unwrap().unwrap();
            if !(lo <= value && value <= hi) {
                misses += 1;
            }
            let (lo, hi) = interval_bias_corrected(&[n], 50, trial, value, stat)
                .unwrap()
                .unwrap();
            assert!(
                lo <= value && value <= hi,
                "trial {trial}: {value} outside [{lo}, {hi}]"
            );
        }
        assert!(
            misses > 0,
            "the percentile interval misses IS at 50 resamples (the reason for the correction)"
        );
    }
}
