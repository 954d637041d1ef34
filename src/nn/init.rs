//! Deterministic weight initialisation (seeded ChaCha streams), independent of candle's global RNG.

use crate::util::normal_vec;
use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Xavier-uniform for a weight whose first dimension is fan-out and the rest fan-in.
pub fn xavier_uniform(rng: &mut ChaCha8Rng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let fan_out = shape[0];
    let fan_in: usize = shape[1..].iter().product();
    let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| ((rng.random::<f64>() * 2.0 - 1.0) * a) as f32)
        .collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// Kaiming-normal (fan-in, ReLU gain) for convolutions.
pub fn kaiming_normal(rng: &mut ChaCha8Rng, shape: &[usize], device: &Device) -> Result<Tensor> {
    let fan_in: usize = shape[1..].iter().product();
    let std = (2.0 / fan_in as f64).sqrt() as f32;
    normal(rng, shape, std, device)
}

pub fn normal(rng: &mut ChaCha8Rng, shape: &[usize], std: f32, device: &Device) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = normal_vec(rng, n).into_iter().map(|x| x * std).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// Fixed 2-D sine-cosine position embeddings as MAE builds them: `[1 + g², dim]` with a zero row
/// for the class token; the first half of each row encodes the column, the second the row.
pub fn sincos_2d(dim: usize, grid: usize, cls_token: bool, device: &Device) -> Result<Tensor> {
    anyhow::ensure!(
        dim % 4 == 0,
        "sin-cos position embedding needs a dimension divisible by 4, got {dim}"
    );
    let half = dim / 2;
    let quarter = half / 2;
    let omega: Vec<f64> = (0..quarter)
        .map(|i| 1.0 / 10000f64.powf(i as f64 / (half as f64 / 2.0)))
        .collect();
    let rows = grid * grid + usize::from(cls_token);
    let mut out = vec![0f32; rows * dim];
    let off = usize::from(cls_token);
    for i in 0..grid {
        for j in 0..grid {
            let r = off + i * grid + j;
            for (k, w) in omega.iter().enumerate() {
                let (a, b) = (j as f64 * w, i as f64 * w);
                out[r * dim + k] = a.sin() as f32;
                out[r * dim + quarter + k] = a.cos() as f32;
                out[r * dim + half + k] = b.sin() as f32;
                out[r * dim + half + quarter + k] = b.cos() as f32;
            }
        }
    }
    Ok(Tensor::from_vec(out, (1, rows, dim), device)?)
}
