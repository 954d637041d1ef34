//! The training loop shared by pre-training, the domain classifier and unlearning: AdamW with
//! two parameter groups (no weight decay on biases, norms and tokens), linear warm-up then
//! half-cosine learning rate, global-norm gradient clipping, gradient accumulation.
//!
//! Written here rather than using `candle_nn::AdamW`, which has no parameter groups and no
//! clipping. Parameters are visited in name order, so runs are deterministic.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Optimiser settings.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimSpec {
    pub lr: f64,
    pub min_lr: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    pub grad_clip: f64,
}

/// Learning rate at `step` (0-based): linear warm-up to `lr`, then half-cosine down to `min_lr`.
pub fn lr_at(spec: &OptimSpec, step: usize) -> f64 {
    if spec.warmup_steps > 0 && step < spec.warmup_steps {
        return spec.lr * (step + 1) as f64 / spec.warmup_steps as f64;
    }
    let rest = spec.total_steps.saturating_sub(spec.warmup_steps).max(1);
    let t = (step - spec.warmup_steps.min(step)) as f64 / rest as f64;
    spec.min_lr + (spec.lr - spec.min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos())
}

/// Whether a parameter gets weight decay: matrices and convolution kernels do; biases, norms,
/// class / mask tokens and position embeddings do not.
pub fn decays(name: &str, var: &Var) -> bool {
    var.rank() >= 2 && !name.contains("token") && !name.contains("pos") && !name.contains("norm")
}

struct Slot {
    name: String,
    var: Var,
    m: Tensor,
    v: Tensor,
    decay: bool,
}

/// AdamW over named variables.
pub struct AdamW {
    slots: Vec<Slot>,
    spec: OptimSpec,
    t: usize,
}

/// What one optimiser step saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepInfo {
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

impl AdamW {
    pub fn new(mut vars: Vec<(String, Var)>, spec: OptimSpec) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let z = var.as_tensor().zeros_like()?;
                Ok(Slot {
                    decay: decays(&name, &var),
                    name,
                    m: z.clone(),
                    v: z,
                    var,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { slots, spec, t: 0 })
    }

    pub fn var_names(&self) -> Vec<&str> {
        self.slots.iter().map(|s| s.name.as_str()).collect()
    }

    /// One update from `grads` (a missing gradient counts as zero). Clips the global norm.
    pub fn step(&mut self, grads: &GradStore) -> Result<StepInfo> {
        let lr = lr_at(&self.spec, self.t);
        self.t += 1;
        let mut sq = 0f64;
        let gs: Vec<Option<Tensor>> = self
            .slots
            .iter()
            .map(|s| grads.get(s.var.as_tensor()).cloned())
            .collect();
        for g in gs.iter().flatten() {
            sq += g
                .sqr()?
                .sum_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_scalar::<f64>()?;
        }
        let norm = sq.sqrt();
        anyhow::ensure!(
            norm.is_finite(),
            "the gradient norm is {norm}: training diverged"
        );
        let scale = if self.spec.grad_clip > 0.0 && norm > self.spec.grad_clip {
            self.spec.grad_clip / (norm + 1e-6)
        } else {
            1.0
        };
        let [b1, b2] = self.spec.betas;
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        for (slot, g) in self.slots.iter_mut().zip(gs) {
            let Some(g) = g else { continue };
            let g = if scale != 1.0 { (g * scale)? } else { g };
            slot.m = ((&slot.m * b1)? + (&g * (1.0 - b1))?)?;
            slot.v = ((&slot.v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let update = ((&slot.m / c1)? / ((&slot.v / c2)?.sqrt()? + self.spec.eps)?)?;
            let mut theta = slot.var.as_tensor().clone();
            if slot.decay && self.spec.weight_decay > 0.0 {
                theta = (theta * (1.0 - lr * self.spec.weight_decay))?;
            }
            slot.var.set(&(theta - (update * lr)?)?)?;
        }
        Ok(StepInfo {
            lr,
            grad_norm: norm,
        })
    }
}

/// Add `src`'s gradients for `vars` into `acc`.
pub fn accumulate(acc: &mut GradStore, src: &GradStore, vars: &[(String, Var)]) -> Result<()> {
    for (_, v) in vars {
        if let Some(g) = src.get(v.as_tensor()) {
            let sum = match acc.get(v.as_tensor()) {
                Some(a) => (a + g)?,
                None => g.clone(),
            };
            acc.insert(v.as_tensor(), sum);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn spec() -> OptimSpec {
        OptimSpec {
            lr: 1.0,
            min_lr: 0.1,
            warmup_steps: 10,
            total_steps: 110,
            weight_decay: 0.0,
            betas: [0.9, 0.999],
            eps: 1e-8,
            grad_clip: 0.0,
        }
    }

    #[test]
    fn schedule_warms_up_then_decays_to_min() {
        let s = spec();
        assert!((lr_at(&s, 0) - 0.1).abs() < 1e-12);
        assert!((lr_at(&s, 9) - 1.0).abs() < 1e-12);
        assert!((lr_at(&s, 10) - 1.0).abs() < 1e-12);
        assert!((lr_at(&s, 60) - 0.55).abs() < 1e-9);
        assert!((lr_at(&s, 110) - 0.1).abs() < 1e-12);
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_clips() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::new(&[3f32, -2.0], &dev).unwrap()).unwrap();
        let mut s = spec();
        s.lr = 0.1;
        s.min_lr = 0.1;
        s.warmup_steps = 0;
        s.grad_clip = 1.0;
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], s).unwrap();
        let mut first = None;
        for _ in 0..300 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            let info = opt.step(&loss.backward().unwrap()).unwrap();
            first.get_or_insert(info.grad_norm);
        }
        assert!((first.unwrap() - (36f64 + 16.0).sqrt()).abs() < 1e-4);
        let v = x.as_tensor().to_vec1::<f32>().unwrap();
        assert!(v.iter().all(|a| a.abs() < 0.05), "{v:?}");
    }
}
