//! Kernel Inception Distance (Bińkowski et al. 2018) as torch-fidelity computes it: the unbiased
//! MMD² with the polynomial kernel k(x, y) = (γ xᵀy + 1)³, γ = 1 / d, averaged over subsets of at
//! most `subset_size` rows drawn without replacement by numpy's `RandomState(seed)`; returns the
//! mean and the population std over subsets. Computed in f64.

use super::np_random::RandomState;
use anyhow::Result;

fn mmd2(x: &[&[f32]], y: &[&[f32]], d: usize) -> f64 {
    let gamma = 1.0 / d as f64;
    let k = |a: &[f32], b: &[f32]| -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum();
        (gamma * dot + 1.0).powi(3)
    };
    let m = x.len() as f64;
    let mut kxx = 0.0;
    let mut kyy = 0.0;
    let mut kxy = 0.0;
    for i in 0..x.len() {
        for j in 0..x.len() {
            if i != j {
                kxx += k(x[i], x[j]);
                kyy += k(y[i], y[j]);
            }
            kxy += k(x[i], y[j]);
        }
    }
    kxx / (m * (m - 1.0)) + kyy / (m * (m - 1.0)) - 2.0 * kxy / (m * m)
}

fn rows<'a>(f: &'a [f32], idx: &[usize], d: usize) -> Vec<&'a [f32]> {
    idx.iter().map(|&i| &f[i * d..(i + 1) * d]).collect()
}

/// KID between two `[n, d]` row-major feature sets.
pub fn kid(
    a: &[f32],
    b: &[f32],
    d: usize,
    subsets: usize,
    subset_size: usize,
    seed: u32,
) -> Result<(f64, f64)> {
    let (na, nb) = (a.len() / d, b.len() / d);
    let m = subset_size.min(na).min(nb);
    anyhow::ensure!(
        m >= 2,
        "KID needs at least 2 images per set, got {na} and {nb}"
    );
    let mut rng = RandomState::new(seed);
    let mut vals = Vec::with_capacity(subsets);
    for _ in 0..subsets {
        let ia = rng.choice_without_replacement(na, m);
        let ib = rng.choice_without_replacement(nb, m);
        vals.push(mmd2(&rows(a, &ia, d), &rows(b, &ib, d), d));
    }
    let mean = vals.iter().sum::<f64>() / subsets as f64;
    let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / subsets as f64).sqrt();
    Ok((mean, std))
}
