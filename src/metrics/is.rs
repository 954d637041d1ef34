//! Inception Score: exp(E_x KL(p(y|x) ‖ p(y))) per split, from class logits, in f64.
//!
//! Two split rules exist in the wild: torch-fidelity's chunks `[i·N/s, (i+1)·N/s)` (every image
//! used, after a seeded shuffle) and the official inception-score code's `[k·⌊N/s⌋, (k+1)·⌊N/s⌋)`
//! (the remainder dropped, no shuffle). The score is the mean over splits; the spread is the
//! population standard deviation (numpy's `np.std`).

use anyhow::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Splits {
    /// torch-fidelity: boundaries `i·N/s`.
    TorchFidelity,
    /// inception-score-pytorch: equal chunks of `⌊N/s⌋`, remainder dropped.
    Floor,
}

/// `logits`: `[N, C]` row-major; `perm`: the order to read them in (a shuffle), if any.
pub fn inception_score(
    logits: &[f32],
    classes: usize,
    splits: usize,
    perm: Option<&[usize]>,
) -> Result<(f64, f64)> {
    inception_score_with(logits, classes, splits, perm, Splits::TorchFidelity)
}

pub fn inception_score_with(
    logits: &[f32],
    classes: usize,
    splits: usize,
    perm: Option<&[usize]>,
    rule: Splits,
) -> Result<(f64, f64)> {
    anyhow::ensure!(
        classes > 0 && logits.len() % classes == 0,
        "logits do not split into {classes} classes"
    );
    let n = logits.len() / classes;
    anyhow::ensure!(
        splits >= 1 && n >= splits,
        "the Inception Score needs at least {splits} images (one per split), got {n}"
    );
    // log-softmax in f64.
    let log_p: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let row = &logits[i * classes..(i + 1) * classes];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b as f64));
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            row.iter().map(|&x| x as f64 - lse).collect()
        })
        .collect();
    let order: Vec<usize> = perm.map(|p| p.to_vec()).unwrap_or_else(|| (0..n).collect());
    let mut scores = Vec::with_capacity(splits);
    for k in 0..splits {
        let (a, b) = match rule {
            Splits::TorchFidelity => (k * n / splits, (k + 1) * n / splits),
            Splits::Floor => (k * (n / splits), (k + 1) * (n / splits)),
        };
        let part: Vec<&Vec<f64>> = order[a..b].iter().map(|&i| &log_p[i]).collect();
        let log_py: Vec<f64> = (0..classes)
            .map(|c| (part.iter().map(|lp| lp[c].exp()).sum::<f64>() / part.len() as f64).ln())
            .collect();
        let kl: f64 = part
            .iter()
            .map(|lp| {
                lp.iter()
                    .zip(&log_py)
                    .map(|(&l, &q)| l.exp() * (l - q))
                    .sum::<f64>()
            })
            .sum::<f64>()
            / part.len() as f64;
        scores.push(kl.exp());
    }
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let var = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    Ok((mean, var.sqrt()))
}

/// A fixed permutation of `0..n` (Fisher–Yates on a seeded ChaCha stream).
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    use rand::seq::SliceRandom;
    let mut v: Vec<usize> = (0..n).collect();
    v.shuffle(&mut crate::util::rng("is-splits", seed));
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confident_uniform_classes_score_the_class_count() {
        // 4 classes, one-hot-ish predictions spread evenly: IS → 4.
        let mut logits = vec![];
        for i in 0..40 {
            for c in 0..4 {
                logits.push(if i % 4 == c { 50.0 } else { 0.0 });
            }
        }
        let (m, s) = inception_score(&logits, 4, 2, None).unwrap();
        assert!((m - 4.0).abs() < 1e-6 && s < 1e-9, "{m} {s}");
        // Uninformative predictions: IS = 1.
        let (m, _) = inception_score(&vec![0.0; 40 * 4], 4, 1, None).unwrap();
        assert!((m - 1.0).abs() < 1e-12);
    }

    #[test]
    fn split_rules_differ_only_in_the_remainder() {
        let logits: Vec<f32> = (0..23 * 3)
            .map(|i| ((i * 7919) % 13) as f32 / 3.0)
            .collect();
        let a = inception_score_with(&logits, 3, 4, None, Splits::TorchFidelity).unwrap();
        let b = inception_score_with(&logits, 3, 4, None, Splits::Floor).unwrap();
        assert_ne!(a, b);
        let even: Vec<f32> = logits[..20 * 3].to_vec();
        let a = inception_score_with(&even, 3, 4, None, Splits::TorchFidelity).unwrap();
        let b = inception_score_with(&even, 3, 4, None, Splits::Floor).unwrap();
        assert_eq!(a, b);
    }
}
