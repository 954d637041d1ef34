//! The constrained step of `controllable`: minimise a forget objective F subject to a retain
//! objective R ≤ ε, one gradient step at a time.
//!
//! Each step descends along `∇F + λ ∇R`. With v = (R − ε) / s the violation relative to the
//! budget (s = max(ε, 1 % of the valid range), so a small budget is held as firmly as a large
//! one), the multiplier has three parts:
//!
//! - an **integral** part λ_I ← max(0, λ_I + κ_I · v) every step: a dual variable on the scaled
//!   violation, which holds the budget against a lasting drift;
//! - inside the budget (v < 0) nothing else: the step descends F (and spends the budget) as far as
//!   λ_I allows;
//! - at or beyond it (v ≥ 0) the **projection** max(0, −⟨∇F, ∇R⟩ / ‖∇R‖²), which removes from ∇F
//!   its component along ∇R where that component would raise R (at the budget R stays constant to
//!   first order while F falls along the boundary), and a **proportional** part κ_P · v, which
//!   turns the step toward lower R as the violation grows.
//!
//! κ_P and κ_I are `controllable.gain` and `controllable.integral_gain`. The projection comes from
//! the two gradients, which the split loss computes in separate backward passes anyway. Why all
//! three: the projection and the proportional part alone (scaled by the whole valid range, as a
//! first version had them) left the MAE quickstart's batch retain loss 1.2–8× above small budgets.
//! AdamW scales each coordinate, so a direction orthogonal to ∇R is not a step orthogonal to it,
//! and the stochastic batches add a drift; the integral part absorbs that drift
//! (docs/results.md).

use crate::train::TrainVar;
use anyhow::Result;
use candle_core::backprop::GradStore;
use serde::{Deserialize, Serialize};

/// The budget of a constrained run and its controller's state.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constraint {
    /// The retain budget ε.
    pub epsilon: f64,
    /// The valid range of ε (retain loss of the forget-optimal solution minus the original's).
    pub range: f64,
    /// The proportional gain κ_P on the violation.
    pub gain: f64,
    /// The integral gain κ_I: how fast the accumulated violation builds the multiplier up.
    pub integral_gain: f64,
    /// The accumulated part of the multiplier (a dual variable on the scaled violation).
    pub integral: f64,
}

impl Constraint {
    pub fn new(epsilon: f64, range: f64, gain: f64, integral_gain: f64) -> Self {
        Self {
            epsilon,
            range,
            gain,
            integral_gain,
            integral: 0.0,
        }
    }
    /// The violation, scaled by the budget itself (at least 1 % of the valid range), so that a
    /// small budget is held as firmly as a large one.
    pub fn violation(&self, retain: f64) -> f64 {
        (retain - self.epsilon) / self.epsilon.max(0.01 * self.range).max(f64::MIN_POSITIVE)
    }
    /// The multiplier of a step from the retain objective's value and the gradients' inner
    /// products `⟨∇F, ∇R⟩` and `‖∇R‖²`; updates the accumulated part.
    pub fn multiplier(&mut self, retain: f64, dot_fr: f64, norm_r2: f64) -> f64 {
        let v = self.violation(retain);
        self.integral = (self.integral + self.integral_gain * v).max(0.0);
        if v < 0.0 || !(norm_r2 > 0.0 && norm_r2.is_finite()) {
            // Inside the budget (the accumulated part still holds the boundary); or no retain
            // gradient to steer by (the original model is the retain objective's minimum).
            return self.integral;
        }
        self.integral + (-dot_fr / norm_r2).max(0.0) + self.gain * v
    }
}

/// `Σ_v ⟨a_v, b_v⟩` over the trained variables (in f64); a variable without a gradient in
/// either store counts zero.
pub fn dot(a: &GradStore, b: &GradStore, vars: &[TrainVar]) -> Result<f64> {
    let mut total = 0.0;
    for (_, v, _) in vars {
        if let (Some(x), Some(y)) = (a.get(v.as_tensor()), b.get(v.as_tensor())) {
            total += (x * y)?
                .to_dtype(candle_core::DType::F64)?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
    }
    Ok(total)
}

/// One constrained step's direction: `g_forget + λ g_retain` (in place of `g_forget`), with λ
/// from `c` (none: λ = 0, the forget objective alone). Returns λ and the direction.
pub fn combine(
    c: Option<&mut Constraint>,
    retain: f64,
    g_retain: &GradStore,
    mut g_forget: GradStore,
    vars: &[TrainVar],
) -> Result<(f64, GradStore)> {
    let lambda = match c {
        None => 0.0,
        Some(c) => c.multiplier(
            retain,
            dot(&g_forget, g_retain, vars)?,
            dot(g_retain, g_retain, vars)?,
        ),
    };
    if lambda > 0.0 {
        for (_, v, _) in vars {
            let Some(gr) = g_retain.get(v.as_tensor()) else {
                continue;
            };
            let scaled = (gr * lambda)?;
            let sum = match g_forget.get(v.as_tensor()) {
                Some(gf) => (gf + scaled)?,
                None => scaled,
            };
            g_forget.insert(v.as_tensor(), sum);
        }
    }
    Ok((lambda, g_forget))
}

/// Both objectives of a model, measured on the probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Objectives {
    pub retain: f64,
    pub forget: f64,
}

/// The two boundary solutions, which fix the valid range of the budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Boundary {
    /// The retain-optimal solution: the original model.
    pub original: Objectives,
    /// The forget-optimal solution: F alone for the run's steps.
    pub forget_optimal: Objectives,
    /// Its trace: (batch R, batch F) per step.
    pub trace: Vec<[f64; 2]>,
}

impl Boundary {
    /// The valid range of an absolute budget: [R at the original, R at the forget-optimal].
    pub fn range(&self) -> (f64, f64) {
        (self.original.retain, self.forget_optimal.retain)
    }
    /// The absolute budget of `epsilon` read as `spec.budget` says.
    pub fn budget(&self, epsilon: f64, spec: &crate::unlearn::ControllableSpec) -> f64 {
        match spec.budget {
            crate::unlearn::Budget::Absolute => epsilon,
            crate::unlearn::Budget::Relative => {
                let (lo, hi) = self.range();
                lo + epsilon * (hi - lo)
            }
        }
    }
}

/// What the constrained phase of a cell did, stored with its log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConstraintLog {
    /// The budget as given (`epsilons:`) and as a retain loss.
    pub epsilon: f64,
    pub budget: f64,
    pub boundary: Boundary,
    /// Both objectives of the unlearned model on the probe.
    #[serde(rename = "final")]
    pub end: Objectives,
    /// Whether the probe's retain loss is within the budget (1 % of the valid range allowed).
    pub kept: bool,
    /// (batch R, batch F, λ) per step.
    pub trace: Vec<[f64; 3]>,
}
