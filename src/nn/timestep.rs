//! Sinusoidal embeddings of a continuous noise level or timestep (guided-diffusion's
//! `timestep_embedding`, which Palette calls `gamma_embedding` and feeds the noise level ᾱ itself).

use anyhow::Result;
use candle_core::{DType, Tensor};

/// `[cos(g·f_0) … cos(g·f_{h−1}), sin(g·f_0) … sin(g·f_{h−1})]` with `f_i = exp(−ln(max_period)
/// · i / h)`, `h = dim / 2`, and a zero column when `dim` is odd: `[B]` → `[B, dim]`, f32.
pub fn sinusoidal(values: &Tensor, dim: usize, max_period: f64) -> Result<Tensor> {
    let half = dim / 2;
    let dev = values.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(max_period.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let freqs = Tensor::from_vec(freqs, (1, half), dev)?;
    let b = values.dim(0)?;
    let args = values
        .to_dtype(DType::F32)?
        .reshape((b, 1))?
        .broadcast_mul(&freqs)?;
    let mut parts = vec![args.cos()?, args.sin()?];
    if dim % 2 == 1 {
        parts.push(Tensor::zeros((b, 1), DType::F32, dev)?);
    }
    Ok(Tensor::cat(&parts, 1)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn matches_the_formula_and_pads_odd_widths() {
        let g = Tensor::new(&[0.25f32, 0.9], &Device::Cpu).unwrap();
        let e = sinusoidal(&g, 5, 10000.0)
            .unwrap()
            .to_vec2::<f32>()
            .unwrap();
        for (row, gv) in e.iter().zip([0.25f64, 0.9]) {
            assert_eq!(row.len(), 5);
            for i in 0..2 {
                let f = (-(10000f64.ln()) * i as f64 / 2.0).exp();
                assert!((row[i] as f64 - (gv * f).cos()).abs() < 1e-6);
                assert!((row[2 + i] as f64 - (gv * f).sin()).abs() < 1e-6);
            }
            assert_eq!(row[4], 0.0);
        }
    }
}
