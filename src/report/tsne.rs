//! Exact t-SNE (van der Maaten & Hinton 2008), for the paper's Figure 4: a few hundred CLIP
//! embeddings (generated vs ground truth × forget vs retain, 50 points per group). Perplexity-
//! calibrated Gaussian affinities, symmetrised; Student-t low-dimensional similarities; gradient
//! descent with early exaggeration (12 for 250 iterations), momentum 0.5 → 0.8, learning rate 200
//! and adaptive gains; initialisation N(0, 10⁻⁴) from a fixed seed. Deterministic.

use rand::Rng;

pub struct TsneParams {
    pub perplexity: f64,
    pub iterations: usize,
    pub seed: u64,
}

impl Default for TsneParams {
    fn default() -> Self {
        Self {
            perplexity: 20.0,
            iterations: 1000,
            seed: 0,
        }
    }
}

/// Row i's conditional affinities for precision `beta`, and their entropy (nats).
fn row_affinities(d: &[f64], i: usize, beta: f64, p: &mut [f64]) -> f64 {
    let mut sum = 0.0;
    for (j, pj) in p.iter_mut().enumerate() {
        *pj = if j == i { 0.0 } else { (-d[j] * beta).exp() };
        sum += *pj;
    }
    let sum = sum.max(1e-300);
    let mut h = 0.0;
    for (j, pj) in p.iter_mut().enumerate() {
        if j != i {
            h += beta * d[j] * *pj;
        }
        *pj /= sum;
    }
    sum.ln() + h / sum
}

/// Embed `n` rows of dimension `dim` (row-major) into 2-D.
pub fn tsne(x: &[f32], n: usize, dim: usize, params: &TsneParams) -> Vec<[f64; 2]> {
    if n < 2 {
        return vec![[0.0, 0.0]; n];
    }
    // Squared distances.
    let mut d = vec![0.0f64; n * n];
    for i in 0..n {
        for j in (i + 1)..n {
            let s: f64 = (0..dim)
                .map(|k| (x[i * dim + k] as f64 - x[j * dim + k] as f64).powi(2))
                .sum();
            d[i * n + j] = s;
            d[j * n + i] = s;
        }
    }
    // Perplexity calibration by bisection on beta = 1 / (2σ²).
    let target = params.perplexity.min((n - 1) as f64).ln();
    let mut p = vec![0.0f64; n * n];
    for i in 0..n {
        let (mut lo, mut hi, mut beta) = (0.0f64, f64::INFINITY, 1.0f64);
        let row = &d[i * n..(i + 1) * n];
        let mean = row.iter().sum::<f64>() / (n - 1) as f64;
        if mean > 0.0 {
            beta = 1.0 / mean;
        }
        for _ in 0..100 {
            let h = row_affinities(row, i, beta, &mut p[i * n..(i + 1) * n]);
            if (h - target).abs() < 1e-6 {
                break;
            }
            if h > target {
                lo = beta;
                beta = if hi.is_finite() {
                    (beta + hi) / 2.0
                } else {
                    beta * 2.0
                };
            } else {
                hi = beta;
                beta = (beta + lo) / 2.0;
            }
        }
    }
    // Symmetrise.
    let mut pij = vec![0.0f64; n * n];
    for i in 0..n {
        for j in 0..n {
            pij[i * n + j] = ((p[i * n + j] + p[j * n + i]) / (2.0 * n as f64)).max(1e-12);
        }
    }
    let mut rng = crate::util::rng("tsne", params.seed);
    let mut y: Vec<[f64; 2]> = (0..n)
        .map(|_| {
            let v = crate::util::normal_vec(&mut rng, 2);
            [v[0] as f64 * 1e-2, v[1] as f64 * 1e-2]
        })
        .collect();
    let _ = rng.random::<u32>();
    let mut update = vec![[0.0f64; 2]; n];
    let mut gains = vec![[1.0f64; 2]; n];
    let mut num = vec![0.0f64; n * n];
    for it in 0..params.iterations {
        let exaggeration = if it < 250 { 12.0 } else { 1.0 };
        let momentum = if it < 250 { 0.5 } else { 0.8 };
        let mut z = 0.0;
        for i in 0..n {
            for j in (i + 1)..n {
                let dy = [y[i][0] - y[j][0], y[i][1] - y[j][1]];
                let q = 1.0 / (1.0 + dy[0] * dy[0] + dy[1] * dy[1]);
                num[i * n + j] = q;
                num[j * n + i] = q;
                z += 2.0 * q;
            }
        }
        for i in 0..n {
            let mut g = [0.0f64; 2];
            for j in 0..n {
                if i == j {
                    continue;
                }
                let q = num[i * n + j];
                let coef = 4.0 * (exaggeration * pij[i * n + j] - q / z) * q;
                g[0] += coef * (y[i][0] - y[j][0]);
                g[1] += coef * (y[i][1] - y[j][1]);
            }
            for k in 0..2 {
                gains[i][k] = if (g[k] > 0.0) != (update[i][k] > 0.0) {
                    gains[i][k] + 0.2
                } else {
                    (gains[i][k] * 0.8).max(0.01)
                };
                update[i][k] = momentum * update[i][k] - 200.0 * gains[i][k] * g[k];
            }
        }
        for i in 0..n {
            y[i][0] += update[i][0];
            y[i][1] += update[i][1];
        }
        let c = [
            y.iter().map(|p| p[0]).sum::<f64>() / n as f64,
            y.iter().map(|p| p[1]).sum::<f64>() / n as f64,
        ];
        for p in y.iter_mut() {
            p[0] -= c[0];
            p[1] -= c[1];
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three well-separated Gaussian clusters in 10-D stay separated in 2-D: every point's nearest
    /// neighbour in the embedding belongs to its own cluster.
    #[test]
    fn separated_clusters_stay_separated() {
        let mut rng = crate::util::rng("t", 1);
        let (per, dim) = (40, 10);
        let mut x = vec![];
        let mut label = vec![];
        for c in 0..3 {
            for _ in 0..per {
                let noise = crate::util::normal_vec(&mut rng, dim);
                for (k, v) in noise.iter().enumerate() {
                    x.push(v * 0.5 + if k == c { 10.0 } else { 0.0 });
                }
                label.push(c);
            }
        }
        let n = 3 * per;
        let y = tsne(
            &x,
            n,
            dim,
            &TsneParams {
                perplexity: 20.0,
                iterations: 1000,
                seed: 0,
            },
        );
        let mut ok = 0;
        for i in 0..n {
            let nn = (0..n)
                .filter(|&j| j != i)
                .min_by(|&a, &b| {
                    let da = (y[a][0] - y[i][0]).powi(2) + (y[a][1] - y[i][1]).powi(2);
                    let db = (y[b][0] - y[i][0]).powi(2) + (y[b][1] - y[i][1]).powi(2);
                    da.partial_cmp(&db).unwrap()
                })
                .unwrap();
            ok += (label[nn] == label[i]) as usize;
        }
        assert_eq!(ok, n, "nearest neighbours outside their cluster");
        // Deterministic.
        let y2 = tsne(
            &x,
            n,
            dim,
            &TsneParams {
                perplexity: 20.0,
                iterations: 1000,
                seed: 0,
            },
        );
        assert_eq!(y, y2);
    }
}
