//! Inception Score: exp(E_x KL(p(y|x) ‖ p(y))), per split, from class logits, in f64.

use anyhow::Result;

/// `logits`: `[N, C]` row-major. Splits are consecutive chunks of N / splits rows (after the
/// optional permutation `perm`); the remainder is dropped, as torch-fidelity does. Returns the mean
/// and the population standard deviation of the per-split scores.
pub fn inception_score(
    logits: &[f32],
    classes: usize,
    splits: usize,
    perm: Option<&[usize]>,
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
    // Softmax in f64.
    let probs: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let row = &logits[i * classes..(i + 1) * classes];
            let m = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let e: Vec<f64> = row.iter().map(|&x| (x as f64 - m).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|x| x / s).collect()
        })
        .collect();
    let order: Vec<usize> = perm.map(|p| p.to_vec()).unwrap_or_else(|| (0..n).collect());
    let size = n / splits;
    let mut scores = Vec::with_capacity(splits);
    for k in 0..splits {
        let part: Vec<&Vec<f64>> = order[k * size..(k + 1) * size]
            .iter()
            .map(|&i| &probs[i])
            .collect();
        let py: Vec<f64> = (0..classes)
            .map(|c| part.iter().map(|p| p[c]).sum::<f64>() / part.len() as f64)
            .collect();
        let kl: f64 = part
            .iter()
            .map(|p| {
                p.iter()
                    .zip(&py)
                    .map(|(&pi, &qi)| {
                        if pi > 0.0 {
                            pi * (pi.ln() - qi.ln())
                        } else {
                            0.0
                        }
                    })
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
}
