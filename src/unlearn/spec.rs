//! The unlearning trainer's settings (`unlearn:` in the experiment file), shared by every method
//! that trains.

use crate::masks::MaskSpec;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The masks images are seen through while unlearning (`unlearn.mask`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnlearnMask {
    /// The family's own random training masks (MAE: random patches at `mask_ratio`), as the
    /// official code unlearns. One unlearned model is then evaluated under every mask of `masks:`.
    #[default]
    Family,
    /// The cell's evaluation mask (an ablation: one unlearning per evaluation mask).
    Task,
    /// One explicit mask for every unlearning step.
    Fixed(MaskSpec),
}

impl UnlearnMask {
    pub fn describe(&self) -> String {
        match self {
            UnlearnMask::Family => "family".into(),
            UnlearnMask::Task => "task".into(),
            UnlearnMask::Fixed(m) => m.to_string(),
        }
    }
}

impl Serialize for UnlearnMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.describe())
    }
}

impl<'de> Deserialize<'de> for UnlearnMask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "family" => Ok(UnlearnMask::Family),
            "task" => Ok(UnlearnMask::Task),
            other => other.parse::<MaskSpec>().map(UnlearnMask::Fixed).map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{other}` is not an unlearning mask: use `family` (the family's training masks, the default), `task` (the evaluation mask) or a mask spec ({e})"
                ))
            }),
        }
    }
}

/// Which pixels the noise image's mean and standard deviation are taken over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoiseStats {
    /// The whole step batch, retain and forget images together (the official code).
    #[default]
    Batch,
    /// The forget images only.
    Forget,
}

crate::train::with_optimiser! {
/// The unlearning trainer's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnlearnSpec {
    pub steps: usize,
    /// Retain (or proxy) images per step.
    pub retain_batch: usize,
    /// Forget images per step.
    pub forget_batch: usize,
    /// Gradient accumulation: each step averages this many micro-batches.
    pub grad_accum: usize,
    /// The masks of the unlearning steps: `family` (default), `task`, or a mask spec.
    pub mask: UnlearnMask,
    /// Where the noise image's statistics come from: `batch` (default) or `forget`.
    pub noise_stats: NoiseStats,
    /// RandomResizedCrop + horizontal flip of every training batch (the paper's MAE recipe);
    /// off when absent. `augment: {}` takes the paper's values (scale 0.2–1, ratio 3/4–4/3, flip).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub augment: Option<crate::data::augment::AugmentSpec>,
}
}

impl Default for UnlearnSpec {
    fn default() -> Self {
        Self {
            steps: 300,
            retain_batch: 32,
            forget_batch: 32,
            grad_accum: 1,
            lr: 1e-3,
            min_lr: 0.0,
            warmup_steps: 30,
            weight_decay: 0.05,
            betas: [0.9, 0.95],
            grad_clip: 3.0,
            mask: UnlearnMask::Family,
            noise_stats: NoiseStats::Batch,
            augment: None,
        }
    }
}

impl UnlearnSpec {
    /// The evaluation mask an unlearning run depends on: only with `mask: task`.
    pub fn depends_on_eval_mask(&self) -> bool {
        self.mask == UnlearnMask::Task
    }
}

/// How `epsilons:` state the retain budget of `controllable`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// A position in the valid range: 0 = the original model's retain loss (the retain-optimal
    /// boundary solution), 1 = the forget-optimal model's.
    #[default]
    Relative,
    /// The retain loss itself (the embedding MSE of the retain term).
    Absolute,
}

/// `controllable:`, the settings of the constrained method (docs/methods.md).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllableSpec {
    /// How `epsilons:` are read.
    pub budget: Budget,
    /// The proportional gain κ_P: how strongly a step is turned toward lower retain loss per unit
    /// of violation (relative to the budget); the step also keeps the retain loss constant to
    /// first order at the budget.
    pub gain: f64,
    /// The integral gain κ_I: how fast a lasting violation builds the multiplier up (a dual
    /// variable on the relative violation), which holds the budget against a drift the
    /// proportional part alone leaves (Adam's per-coordinate scaling, stochastic batches).
    pub integral_gain: f64,
    /// Images per set (retain, forget), spread over its classes, on which both objectives are
    /// measured at the boundary solutions and at the end (the values stored with the cell).
    pub probe: usize,
}

impl Default for ControllableSpec {
    fn default() -> Self {
        Self {
            budget: Budget::Relative,
            gain: 1.0,
            integral_gain: 0.1,
            probe: 64,
        }
    }
}

impl ControllableSpec {
    pub fn is_default(&self) -> bool {
        self == &Self::default()
    }
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.gain.is_finite() && self.gain > 0.0) {
            return Err((
                "gain",
                format!("must be a finite number > 0, got {}", self.gain),
            ));
        }
        if !(self.integral_gain.is_finite() && self.integral_gain >= 0.0) {
            return Err((
                "integral_gain",
                format!("must be a finite number ≥ 0, got {}", self.integral_gain),
            ));
        }
        if self.probe == 0 {
            return Err(("probe", "must be at least 1".into()));
        }
        Ok(())
    }
}
