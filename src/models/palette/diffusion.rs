//! The diffusion process, apart from the network (as candle-transformers keeps its schedulers
//! apart from the UNet): β schedules as the official `make_beta_schedule`, their respacing, the
//! training noise levels and noisy images, and the ancestral restoration step of Palette's
//! `Network.p_sample` / `restoration`.
//!
//! Coefficients are computed in f64 and stored as f32, as the official code computes them in
//! numpy and registers f32 buffers. Noise always comes from the caller (the harness's seeded
//! streams), never from candle's RNG.

use super::config::BetaSchedule;
use anyhow::Result;
use candle_core::{Device, Tensor};

/// A β schedule and the buffers Palette derives from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub betas: Vec<f64>,
    /// ᾱ_t = Π_{s ≤ t} (1 − β_s), Palette's `gammas`.
    pub gammas: Vec<f64>,
}

impl Schedule {
    /// The official `make_beta_schedule` for `cfg`.
    pub fn new(cfg: &BetaSchedule) -> Self {
        let n = cfg.n_timestep;
        let (s, e) = (cfg.linear_start, cfg.linear_end);
        let linspace = |a: f64, b: f64, n: usize| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    if n == 1 {
                        a
                    } else {
                        a + (b - a) * i as f64 / (n - 1) as f64
                    }
                })
                .collect()
        };
        let warmup = |frac: f64| {
            let mut b = vec![e; n];
            let w = (n as f64 * frac) as usize;
            b[..w].copy_from_slice(&linspace(s, e, w));
            b
        };
        let betas = match cfg.schedule.as_str() {
            "quad" => linspace(s.sqrt(), e.sqrt(), n)
                .into_iter()
                .map(|v| v * v)
                .collect(),
            "warmup10" => warmup(0.1),
            "warmup50" => warmup(0.5),
            "const" => vec![e; n],
            "jsd" => linspace(n as f64, 1.0, n)
                .into_iter()
                .map(|v| 1.0 / v)
                .collect(),
            "cosine" => {
                let cs = cfg.cosine_s;
                let a: Vec<f64> = (0..=n)
                    .map(|i| {
                        let t = i as f64 / n as f64 + cs;
                        (t / (1.0 + cs) * std::f64::consts::FRAC_PI_2).cos().powi(2)
                    })
                    .collect();
                (0..n)
                    .map(|i| (1.0 - (a[i + 1] / a[0]) / (a[i] / a[0])).min(0.999))
                    .collect()
            }
            _ => linspace(s, e, n),
        };
        Self::from_betas(betas)
    }

    pub fn from_betas(betas: Vec<f64>) -> Self {
        let mut g = 1.0;
        let gammas = betas
            .iter()
            .map(|b| {
                g *= 1.0 - b;
                g
            })
            .collect();
        Self { betas, gammas }
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }
    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// `steps` evenly spaced timesteps of this schedule (guided-diffusion's respacing rule:
    /// `round(i · (T − 1) / (steps − 1))`), with β recomputed so that ᾱ at the kept timesteps is
    /// unchanged. `steps ≥ T` returns the schedule itself.
    pub fn respaced(&self, steps: usize) -> Self {
        let t = self.len();
        if steps >= t {
            return self.clone();
        }
        let kept: Vec<usize> = if steps <= 1 {
            vec![t - 1]
        } else {
            (0..steps)
                .map(|i| ((i as f64) * (t - 1) as f64 / (steps - 1) as f64).round() as usize)
                .collect()
        };
        let mut last = 1.0;
        let betas = kept
            .iter()
            .map(|&i| {
                let b = 1.0 - self.gammas[i] / last;
                last = self.gammas[i];
                b
            })
            .collect();
        // ᾱ at the kept steps exactly, not re-multiplied from the new β: with few steps a β
        // rounds to 1 (the test schedule's ᾱ falls to ~1e-39 at T), and the product would be 0,
        // making 1/√ᾱ infinite and every output NaN.
        let gammas = kept.iter().map(|&i| self.gammas[i]).collect();
        Self { betas, gammas }
    }

    fn gamma_prev(&self, t: usize) -> f64 {
        if t == 0 {
            1.0
        } else {
            self.gammas[t - 1]
        }
    }

    /// Palette's buffers at step `t`, each rounded to f32 as the official buffers are.
    pub fn coefficients(&self, t: usize) -> StepCoefficients {
        let (b, g, gp) = (self.betas[t], self.gammas[t], self.gamma_prev(t));
        let var = b * (1.0 - gp) / (1.0 - g);
        let f = |v: f64| v as f32 as f64;
        StepCoefficients {
            gamma: f(g),
            sqrt_recip_gammas: f((1.0 / g).sqrt()),
            sqrt_recipm1_gammas: f((1.0 / g - 1.0).sqrt()),
            posterior_mean_coef1: f(b * gp.sqrt() / (1.0 - g)),
            posterior_mean_coef2: f((1.0 - gp) * (1.0 - b).sqrt() / (1.0 - g)),
            posterior_log_variance_clipped: f(var.max(1e-20).ln()),
        }
    }

    /// A training noise level as `Network.forward` draws it: uniform between ᾱ_{t−1} and ᾱ_t
    /// for a timestep `t ∈ [1, T)` and a uniform `u ∈ [0, 1)`.
    pub fn training_gamma(&self, t: usize, u: f64) -> f64 {
        let (g1, g2) = (
            self.gammas[t - 1] as f32 as f64,
            self.gammas[t] as f32 as f64,
        );
        (g2 - g1) * u + g1
    }
}

/// The per-step scalars of the ancestral step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    pub gamma: f64,
    pub sqrt_recip_gammas: f64,
    pub sqrt_recipm1_gammas: f64,
    pub posterior_mean_coef1: f64,
    pub posterior_mean_coef2: f64,
    pub posterior_log_variance_clipped: f64,
}

/// The posterior mean and log-variance of one step (`p_mean_variance` with
/// `clip_denoised=True`): y0 predicted from the noise prediction and clipped to [−1, 1].
pub fn posterior(y_t: &Tensor, eps: &Tensor, c: &StepCoefficients) -> Result<(Tensor, f64)> {
    let y0 = ((y_t * c.sqrt_recip_gammas)? - (eps * c.sqrt_recipm1_gammas)?)?.clamp(-1f32, 1f32)?;
    let mean = ((y0 * c.posterior_mean_coef1)? + (y_t * c.posterior_mean_coef2)?)?;
    Ok((mean, c.posterior_log_variance_clipped))
}

/// The sample of the step: `mean + noise · exp(½ log σ²)`, without noise at `t = 0`.
pub fn ancestral(mean: &Tensor, logvar: f64, noise: Option<&Tensor>) -> Result<Tensor> {
    Ok(match noise {
        Some(n) => (mean + (n * (0.5 * logvar).exp())?)?,
        None => mean.clone(),
    })
}

/// `[B]` f32 noise levels.
pub fn gammas_tensor(g: &[f64], device: &Device) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        g.iter().map(|&v| v as f32).collect::<Vec<_>>(),
        g.len(),
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respacing_keeps_the_cumulative_products_at_kept_steps() {
        let s = Schedule::new(&BetaSchedule {
            schedule: "linear".into(),
            n_timestep: 2000,
            linear_start: 1e-4,
            linear_end: 0.09,
            cosine_s: 8e-3,
        });
        let r = s.respaced(50);
        assert_eq!(r.len(), 50);
        // Exactly, relative to ᾱ itself (it falls to ~1e-39 at T).
        assert_eq!(r.gammas[0], s.gammas[0]);
        assert_eq!(r.gammas[49], s.gammas[1999]);
        let mid = (25.0f64 * 1999.0 / 49.0).round() as usize;
        assert_eq!(r.gammas[25], s.gammas[mid]);
        // Few steps: a β rounds to 1, yet ᾱ stays positive and every coefficient finite (a
        // product re-multiplied from the β gave ᾱ = 0 and NaN outputs at ≤ 4 steps).
        for steps in [2, 3, 4, 8] {
            let r = s.respaced(steps);
            assert!(r.gammas.iter().all(|&g| g > 0.0), "{steps}: {:?}", r.gammas);
            for t in 0..r.len() {
                let c = r.coefficients(t);
                for v in [
                    c.gamma,
                    c.sqrt_recip_gammas,
                    c.sqrt_recipm1_gammas,
                    c.posterior_mean_coef1,
                    c.posterior_mean_coef2,
                    c.posterior_log_variance_clipped,
                ] {
                    assert!(v.is_finite(), "{steps} steps, step {t}: {c:?}");
                }
            }
        }
        assert_eq!(s.respaced(2000), s);
        // A step's posterior variance is below its β (the usual bound).
        for t in 1..r.len() {
            let c = r.coefficients(t);
            assert!(c.posterior_log_variance_clipped.exp() <= r.betas[t] * 1.0001);
        }
    }
}
