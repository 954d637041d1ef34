//! The training loop shared by pre-training, the domain classifier and unlearning: AdamW with
//! two parameter groups (weight decay decided per variable by the model family), linear warm-up
//! then half-cosine learning rate, global-norm gradient clipping, gradient accumulation, and
//! epoch-shuffled batch sampling.
//!
//! Written here rather than using `candle_nn::AdamW`, which has no parameter groups and no
//! clipping. Parameters are visited in name order, so runs are deterministic.

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};

/// Declares a settings struct (`pretrain:`, `unlearn:`, `metrics.domain:`) with the optimiser
/// fields every trainer shares, written once here, and `optim()` / `validate_optim()` for them.
/// The fields stay flat in the YAML (serde's `flatten` cannot be combined with
/// `deny_unknown_fields`, which gives the one-line unknown-field errors).
macro_rules! with_optimiser {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Peak learning rate, reached after the warm-up.
            pub lr: f64,
            /// Learning rate at the end of the half-cosine decay.
            pub min_lr: f64,
            /// Steps of linear warm-up.
            pub warmup_steps: usize,
            /// AdamW weight decay, on the variables the model decides.
            pub weight_decay: f64,
            /// AdamW β1 and β2.
            pub betas: [f64; 2],
            /// Clip the global gradient norm to this value (0 = off).
            pub grad_clip: f64,
        }

        impl $name {
            /// The optimiser of a run of `total_steps` steps.
            pub fn optim(&self, total_steps: usize) -> $crate::train::OptimSpec {
                $crate::train::OptimSpec {
                    lr: self.lr,
                    min_lr: self.min_lr,
                    warmup_steps: self.warmup_steps,
                    total_steps,
                    weight_decay: self.weight_decay,
                    betas: self.betas,
                    eps: 1e-8,
                    grad_clip: self.grad_clip,
                }
            }

            /// Check the optimiser fields: `(field, message)` for the first bad one.
            pub fn validate_optim(&self) -> std::result::Result<(), (&'static str, String)> {
                $crate::train::validate_optim(
                    self.lr,
                    self.min_lr,
                    self.weight_decay,
                    self.betas,
                    self.grad_clip,
                )
            }
        }
    };
}
pub(crate) use with_optimiser;

/// The checks of [`with_optimiser`]'s fields.
pub fn validate_optim(
    lr: f64,
    min_lr: f64,
    weight_decay: f64,
    betas: [f64; 2],
    grad_clip: f64,
) -> std::result::Result<(), (&'static str, String)> {
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(("lr", format!("must be a positive number, got {lr}")));
    }
    if !(min_lr >= 0.0 && min_lr <= lr) {
        return Err(("min_lr", format!("must be in [0, lr], got {min_lr}")));
    }
    if !(weight_decay >= 0.0 && weight_decay.is_finite()) {
        return Err((
            "weight_decay",
            format!("must be a number ≥ 0, got {weight_decay}"),
        ));
    }
    if !betas.iter().all(|b| (0.0..1.0).contains(b)) {
        return Err(("betas", format!("each must be in [0, 1), got {betas:?}")));
    }
    if !(grad_clip >= 0.0 && grad_clip.is_finite()) {
        return Err((
            "grad_clip",
            format!("must be a number ≥ 0 (0 = off), got {grad_clip}"),
        ));
    }
    Ok(())
}

/// Optimiser settings of one run.
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

/// Epoch-shuffled sampling without replacement within an epoch.
pub struct Sampler {
    order: Vec<usize>,
    pos: usize,
}

impl Sampler {
    pub fn new(n: usize) -> Self {
        Self {
            order: (0..n).collect(),
            pos: n,
        }
    }
    pub fn next(&mut self, b: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Vec<usize> {
        use rand::seq::SliceRandom;
        let mut out = Vec::with_capacity(b);
        while out.len() < b {
            if self.pos == self.order.len() {
                self.order.shuffle(rng);
                self.pos = 0;
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }

    /// The epoch order and the position in it, to resume from ([`Sampler::restore`]).
    pub fn state(&self) -> (&[usize], usize) {
        (&self.order, self.pos)
    }

    /// The sampler that [`Sampler::state`] saw.
    pub fn restore(order: Vec<usize>, pos: usize) -> Result<Self> {
        anyhow::ensure!(pos <= order.len(), "sampler position {pos} past its epoch");
        Ok(Self { order, pos })
    }
}

/// A variable to optimise: its name, the variable, and whether it gets weight decay.
pub type TrainVar = (String, Var, bool);

/// Optimiser state of one parameter: plain vectors updated in place on CPU (no allocation per
/// step), tensors elsewhere.
enum Moments {
    Cpu { m: Vec<f32>, v: Vec<f32> },
    Tensors { m: Tensor, v: Tensor },
}

struct Slot {
    name: String,
    var: Var,
    moments: Moments,
    decay: bool,
}

/// One AdamW update of a contiguous f32 CPU parameter, in place, with the gradient scaled by
/// `scale` (clipping) on the fly.
struct AdamInPlace<'a> {
    m: std::cell::RefCell<&'a mut [f32]>,
    v: std::cell::RefCell<&'a mut [f32]>,
    lr: f32,
    b1: f32,
    b2: f32,
    c1: f32,
    c2: f32,
    eps: f32,
    decay: f32,
    scale: f32,
}

impl candle_core::InplaceOp2 for AdamInPlace<'_> {
    fn name(&self) -> &'static str {
        "i2i-adamw"
    }

    fn cpu_fwd(
        &self,
        s1: &mut candle_core::CpuStorage,
        l1: &candle_core::Layout,
        s2: &candle_core::CpuStorage,
        l2: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let (Some((a1, b1)), Some((a2, b2))) = (l1.contiguous_offsets(), l2.contiguous_offsets())
        else {
            candle_core::bail!("i2i-adamw: non-contiguous parameter or gradient")
        };
        let theta = match s1 {
            candle_core::CpuStorage::F32(v) => &mut v[a1..b1],
            _ => candle_core::bail!("i2i-adamw: f32 parameters only"),
        };
        let g = &s2.as_slice::<f32>()?[a2..b2];
        let mut m = self.m.borrow_mut();
        let mut v = self.v.borrow_mut();
        let k = [
            self.scale, self.b1, self.b2, self.c1, self.c2, self.eps, self.decay, self.lr,
        ];
        adam_update(theta, g, &mut m, &mut v, k);
        Ok(())
    }
}

crate::multiversion! {
    /// One AdamW update of `theta` in place; `k` = [scale, b1, b2, c1, c2, eps, decay, lr].
    fn adam_update(theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], k: [f32; 8]) {
        let [scale, b1, b2, c1, c2, eps, decay, lr] = k;
        let n = theta.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            let gi = g[i] * scale;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let update = (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
            theta[i] = theta[i] * (1.0 - decay) - lr * update;
        }
    }
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
    pub fn new(mut vars: Vec<TrainVar>, spec: OptimSpec) -> Result<Self> {
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var, decay)| {
                let t = var.as_tensor();
                let moments = if t.device().is_cpu()
                    && t.dtype() == candle_core::DType::F32
                    && t.is_contiguous()
                {
                    Moments::Cpu {
                        m: vec![0.0; t.elem_count()],
                        v: vec![0.0; t.elem_count()],
                    }
                } else {
                    let z = t.zeros_like()?;
                    Moments::Tensors { m: z.clone(), v: z }
                };
                Ok(Slot {
                    decay,
                    name,
                    moments,
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
            sq += sum_sq(g)?;
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
            let decay = if slot.decay {
                lr * self.spec.weight_decay
            } else {
                0.0
            };
            match &mut slot.moments {
                Moments::Cpu { m, v } => {
                    let g = g.contiguous()?;
                    let op = AdamInPlace {
                        m: std::cell::RefCell::new(m.as_mut_slice()),
                        v: std::cell::RefCell::new(v.as_mut_slice()),
                        lr: lr as f32,
                        b1: b1 as f32,
                        b2: b2 as f32,
                        c1: c1 as f32,
                        c2: c2 as f32,
                        eps: self.spec.eps as f32,
                        decay: decay as f32,
                        scale: scale as f32,
                    };
                    slot.var.as_tensor().inplace_op2(&g, &op)?;
                }
                Moments::Tensors { m, v } => {
                    let g = if scale != 1.0 { (g * scale)? } else { g };
                    *m = ((&*m * b1)? + (&g * (1.0 - b1))?)?;
                    *v = ((&*v * b2)? + (g.sqr()? * (1.0 - b2))?)?;
                    let update = ((&*m / c1)? / ((&*v / c2)?.sqrt()? + self.spec.eps)?)?;
                    let theta = (slot.var.as_tensor() * (1.0 - decay))?;
                    slot.var.set(&(theta - (update * lr)?)?)?;
                }
            }
        }
        Ok(StepInfo {
            lr,
            grad_norm: norm,
        })
    }
}

/// The optimiser's state: its step count and each variable's first and second moments, by name.
pub struct AdamState {
    pub t: usize,
    pub moments: Vec<(String, Tensor, Tensor)>,
}

impl AdamW {
    /// The state to resume from ([`AdamW::restore`]).
    pub fn state(&self) -> Result<AdamState> {
        let moments = self
            .slots
            .iter()
            .map(|s| {
                let (m, v) = match &s.moments {
                    Moments::Cpu { m, v } => {
                        let shape = s.var.as_tensor().shape();
                        let cpu = &candle_core::Device::Cpu;
                        (
                            Tensor::from_slice(m, shape, cpu)?,
                            Tensor::from_slice(v, shape, cpu)?,
                        )
                    }
                    Moments::Tensors { m, v } => (m.clone(), v.clone()),
                };
                Ok((s.name.clone(), m, v))
            })
            .collect::<Result<_>>()?;
        Ok(AdamState { t: self.t, moments })
    }

    /// Continue from `state`: every variable's moments must be there, with its shape.
    pub fn restore(&mut self, state: AdamState) -> Result<()> {
        let mut by_name: std::collections::HashMap<_, _> = state
            .moments
            .into_iter()
            .map(|(n, m, v)| (n, (m, v)))
            .collect();
        for slot in &mut self.slots {
            let (m, v) = by_name
                .remove(&slot.name)
                .ok_or_else(|| anyhow::anyhow!("no optimiser moments for `{}`", slot.name))?;
            let shape = slot.var.as_tensor().shape().clone();
            anyhow::ensure!(
                m.shape() == &shape && v.shape() == &shape,
                "optimiser moments of `{}` have shape {:?}, the variable {shape:?}",
                slot.name,
                m.shape()
            );
            match &mut slot.moments {
                Moments::Cpu { m: mm, v: vv } => {
                    *mm = m
                        .flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1()?;
                    *vv = v
                        .flatten_all()?
                        .to_dtype(candle_core::DType::F32)?
                        .to_vec1()?;
                }
                Moments::Tensors { m: mm, v: vv } => {
                    let dev = slot.var.as_tensor().device();
                    *mm = m.to_device(dev)?;
                    *vv = v.to_device(dev)?;
                }
            }
        }
        anyhow::ensure!(
            by_name.is_empty(),
            "optimiser moments for variables the model does not have: {:?}",
            by_name.keys().collect::<Vec<_>>()
        );
        self.t = state.t;
        Ok(())
    }
}

/// Σ g², in f64 on CPU without temporaries.
fn sum_sq(g: &Tensor) -> Result<f64> {
    if g.device().is_cpu() && g.dtype() == candle_core::DType::F32 {
        let (storage, layout) = g.storage_and_layout();
        if let (candle_core::Storage::Cpu(cpu), Some((a, b))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(cpu.as_slice::<f32>()?[a..b]
                .iter()
                .map(|&x| x as f64 * x as f64)
                .sum());
        }
    }
    Ok(g.sqr()?
        .sum_all()?
        .to_dtype(candle_core::DType::F64)?
        .to_scalar::<f64>()?)
}

/// Add `src`'s gradients for `vars` into `acc`.
pub fn accumulate(acc: &mut GradStore, src: &GradStore, vars: &[TrainVar]) -> Result<()> {
    for (_, v, _) in vars {
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

    /// The in-place CPU update and the tensor update give the same parameters.
    #[test]
    fn in_place_and_tensor_updates_agree() {
        let dev = Device::Cpu;
        let run = |cpu_path: bool| {
            let x =
                Var::from_tensor(&Tensor::new(&[[3f32, -2.0], [0.5, 1.0]], &dev).unwrap()).unwrap();
            let mut s = spec();
            s.weight_decay = 0.1;
            s.grad_clip = 0.5;
            let mut opt = AdamW::new(vec![("w".into(), x.clone(), true)], s).unwrap();
            if !cpu_path {
                let z = x.as_tensor().zeros_like().unwrap();
                opt.slots[0].moments = Moments::Tensors { m: z.clone(), v: z };
            }
            for _ in 0..5 {
                let loss = (x.as_tensor().sqr().unwrap().sum_all().unwrap() * 3.0).unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            x.as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap()
        };
        let (a, b) = (run(true), run(false));
        for (p, q) in a.iter().zip(&b) {
            // f32 scalars in place vs f64 scalars in the tensor path (lr = 1 magnifies rounding).
            assert!((p - q).abs() < 1e-4, "{a:?} vs {b:?}");
        }
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
        let mut opt = AdamW::new(vec![("x".into(), x.clone(), true)], s).unwrap();
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
