//! Unlearning methods and the trainer that runs them.
//!
//! A method is one implementation of [`Method`]: which part of the model it trains ([`Scope`]) and
//! its loss on one step's retain and forget batches. [`method`] is the registry from the YAML name.
//! The losses follow docs/methods.md (see each file); α weights every method's forget term. A
//! method only talks to the family-neutral [`I2IModel`]: embeddings, outputs and training losses
//! of prepared [`ModelInput`]s.

mod closure;
pub mod constrained;
pub mod controllable;
mod max_loss;
mod noisy_label;
mod ours;
mod random_encoder;
mod retain_label;
pub mod spec;
pub mod trainer;

pub use spec::{Budget, ControllableSpec, NoiseStats, UnlearnMask, UnlearnSpec};

pub use crate::models::Scope;
use crate::models::{I2IModel, ModelInput};
use anyhow::Result;
use candle_core::{DType, Tensor};
use rand_chacha::ChaCha8Rng;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt;

pub use crate::names::MethodName;

/// Where the retain term's images come from.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RetainSource {
    /// The real retain set D_R.
    #[default]
    Real,
    /// A proxy: the dataset's `proxy_classes` (no access to D_R needed).
    Proxy,
}

/// The noise image whose original-encoder embedding is the forget target.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum NoiseKind {
    /// Gaussian with the batch's pixel mean and std (`unlearn.noise_stats`), clamped to [0, 1].
    #[default]
    Normal,
    /// U[0, 1].
    Uniform,
    /// The batch's mean pixel value everywhere.
    Constant,
}

impl NoiseKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoiseKind::Normal => "normal",
            NoiseKind::Uniform => "uniform",
            NoiseKind::Constant => "constant",
        }
    }
}

/// A method entry: `ours`, or `{name: ours, retain: proxy, noise: uniform}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct MethodSpec {
    pub name: MethodName,
    pub retain: RetainSource,
    pub noise: NoiseKind,
}

impl MethodSpec {
    pub fn plain(name: MethodName) -> Self {
        Self {
            name,
            retain: RetainSource::Real,
            noise: NoiseKind::Normal,
        }
    }
    /// A unique key within an experiment.
    pub fn key(&self) -> String {
        let mut k = self.name.as_str().to_string();
        if self.retain == RetainSource::Proxy {
            k.push_str("+proxy");
        }
        if self.noise != NoiseKind::Normal {
            k.push('+');
            k.push_str(self.noise.as_str());
        }
        k
    }
    /// The row label in tables: "Ours (proxy D_R)", "Ours (uniform noise)" …
    pub fn label(&self) -> String {
        let mut l = self.name.display().to_string();
        let mut extra = vec![];
        if self.retain == RetainSource::Proxy {
            extra.push("proxy D_R".to_string());
        }
        if self.noise != NoiseKind::Normal {
            extra.push(format!("{} noise", self.noise.as_str()));
        }
        if !extra.is_empty() {
            l.push_str(&format!(" ({})", extra.join(", ")));
        }
        l
    }
    /// Position in the paper's table (proxy variants after the plain method).
    pub fn order(&self) -> (usize, RetainSource, NoiseKind) {
        let i = MethodName::ALL
            .iter()
            .position(|m| *m == self.name)
            .unwrap_or(99);
        (i, self.retain, self.noise)
    }
}

impl<'de> Deserialize<'de> for MethodSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MethodSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a method name or a mapping {name, retain, noise}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<MethodSpec, E> {
                let name = MethodName::deserialize(de::value::StrDeserializer::<E>::new(s))?;
                Ok(MethodSpec::plain(name))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MethodSpec, A::Error> {
                let (mut name, mut retain, mut noise) = (None, None, None);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "name" => name = Some(map.next_value::<MethodName>()?),
                        "retain" => retain = Some(map.next_value::<RetainSource>()?),
                        "noise" => noise = Some(map.next_value::<NoiseKind>()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["name", "retain", "noise"],
                            ))
                        }
                    }
                }
                let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
                let spec = MethodSpec {
                    name,
                    retain: retain.unwrap_or_default(),
                    noise: noise.unwrap_or_default(),
                };
                if spec.retain == RetainSource::Proxy && !name.takes_proxy() {
                    let takes: Vec<&str> = MethodName::ALL
                        .iter()
                        .filter(|m| m.takes_proxy())
                        .map(|m| m.as_str())
                        .collect();
                    return Err(de::Error::custom(format!(
                        "`retain: proxy` applies to the methods whose retain term keeps the original model ({}), not `{}`",
                        takes.join(", "),
                        name.as_str()
                    )));
                }
                Ok(spec)
            }
        }
        d.deserialize_any(V)
    }
}

/// One step's data, prepared once and seen identically by student and teacher.
pub struct StepBatch {
    /// Retain (or proxy) images with their masks and per-step randomness.
    pub retain: ModelInput,
    /// Forget images with theirs.
    pub forget: ModelInput,
    /// Scalar mean and (unbiased) standard deviation of the pixels the noise image is drawn with
    /// (the whole batch by default, `unlearn.noise_stats`).
    pub noise_stats: (f32, f32),
}

/// What a method may use besides the batch.
pub struct Ctx<'a> {
    pub student: &'a dyn I2IModel,
    /// The frozen original model.
    pub teacher: &'a dyn I2IModel,
    pub alpha: f64,
    pub noise: NoiseKind,
    /// Reproduce the official code's per-sample `(1 ± l)` weighting of the mixed batch.
    pub paper_compat: bool,
}

/// A loss and its two terms (for logs).
pub struct Loss {
    pub total: Tensor,
    pub retain: Tensor,
    pub forget: Tensor,
}

impl Loss {
    /// `retain + w · forget`.
    fn sum(retain: Tensor, forget: Tensor, w: f64) -> Result<Self> {
        Ok(Self {
            total: (&retain + (&forget * w)?)?,
            retain,
            forget,
        })
    }
}

/// One part of a [`Split`] loss: computes its term (building its own graph).
pub type Part<'a> = Box<dyn FnOnce() -> Result<Tensor> + Send + 'a>;

/// A loss `retain + w · forget` whose two terms share no computation (each has its own forward
/// passes of student and teacher), so that each term's forward and backward pass can run on a
/// core of its own. Each variable's gradient is then the sum of the two parts' gradients, the
/// same two contributions one backward pass over the whole loss adds.
pub struct Split<'a> {
    /// The retain term, as [`Loss::retain`] records it.
    pub retain: Part<'a>,
    /// The forget term, as [`Loss::forget`] records it.
    pub forget: Part<'a>,
    pub w: f64,
}

impl Split<'_> {
    /// Both terms one after the other, as one loss whose graph spans both.
    pub fn loss(self) -> Result<Loss> {
        let retain = (self.retain)()?;
        Loss::sum(retain, (self.forget)()?, self.w)
    }
}

/// An unlearning method.
pub trait Method {
    fn name(&self) -> MethodName;
    fn scope(&self) -> Scope;
    /// The loss of one step; by default the [`Split`]'s terms one after the other (a method
    /// defines `loss`, `split`, or both).
    fn loss(&self, ctx: &Ctx, batch: &StepBatch, rng: &mut ChaCha8Rng) -> Result<Loss> {
        match self.split(ctx, batch, rng)? {
            Some(split) => split.loss(),
            None => anyhow::bail!("method `{}` defines no loss", self.name().as_str()),
        }
    }
    /// The same loss as a [`Split`], for methods whose terms share no computation that needs a
    /// gradient (frozen teacher outputs may be computed first and shared); the trainer then runs
    /// the two terms at the same time when it has two threads. Drawing from `rng` as `loss`
    /// does (a part may draw while it runs), so that either route sees the same randomness.
    /// `None` (returned before drawing anything, as the trainer then calls `loss` with the same
    /// stream): use `loss`.
    fn split<'a>(
        &self,
        _ctx: &'a Ctx<'a>,
        _batch: &'a StepBatch,
        _rng: &'a mut ChaCha8Rng,
    ) -> Result<Option<Split<'a>>> {
        Ok(None)
    }
}

struct Original;
impl Method for Original {
    fn name(&self) -> MethodName {
        MethodName::Original
    }
    fn scope(&self) -> Scope {
        Scope::None
    }
    fn loss(&self, _: &Ctx, _: &StepBatch, _: &mut ChaCha8Rng) -> Result<Loss> {
        anyhow::bail!("the original model is not trained")
    }
}

struct Retrain;
impl Method for Retrain {
    fn name(&self) -> MethodName {
        MethodName::Retrain
    }
    fn scope(&self) -> Scope {
        Scope::None
    }
    fn loss(&self, _: &Ctx, _: &StepBatch, _: &mut ChaCha8Rng) -> Result<Loss> {
        anyhow::bail!("the retrain oracle is pre-trained without the forget classes, not unlearned")
    }
}

/// The registry: YAML name → implementation.
pub fn method(name: MethodName) -> Box<dyn Method> {
    match name {
        MethodName::Original => Box::new(Original),
        MethodName::Retrain => Box::new(Retrain),
        MethodName::MaxLoss => Box::new(max_loss::MaxLoss),
        MethodName::NoisyLabel => Box::new(noisy_label::NoisyLabel),
        MethodName::RetainLabel => Box::new(retain_label::RetainLabel),
        MethodName::RandomEncoder => Box::new(random_encoder::RandomEncoder),
        MethodName::Ours => Box::new(ours::Ours),
        MethodName::Controllable => Box::new(controllable::Controllable),
    }
}

/// Scalar mean and unbiased standard deviation over all elements of `ts` together (as
/// `torch.mean` / `torch.std` of their concatenation).
pub fn scalar_stats(ts: &[&Tensor]) -> Result<(f32, f32)> {
    let mut n = 0usize;
    let mut sum = 0f64;
    for t in ts {
        n += t.elem_count();
        sum += t.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    }
    anyhow::ensure!(n > 0, "statistics of an empty batch");
    let mean = sum / n as f64;
    let mut ss = 0f64;
    for t in ts {
        ss += t
            .to_dtype(DType::F64)?
            .affine(1.0, -mean)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    let var = ss / (n.max(2) - 1) as f64;
    Ok((mean as f32, var.sqrt() as f32))
}

/// A noise image batch shaped like `x` (pixels in [0, 1]); `stats` = (mean, std) of `normal`
/// noise and the value of `constant` noise.
pub fn noise_like(
    x: &Tensor,
    kind: NoiseKind,
    (mean, std): (f32, f32),
    rng: &mut ChaCha8Rng,
) -> Result<Tensor> {
    use rand::Rng;
    let n = x.elem_count();
    let v: Vec<f32> = match kind {
        NoiseKind::Normal => crate::util::normal_vec(rng, n)
            .into_iter()
            .map(|z| (mean + std * z).clamp(0.0, 1.0))
            .collect(),
        NoiseKind::Uniform => (0..n).map(|_| rng.random::<f32>()).collect(),
        NoiseKind::Constant => vec![mean; n],
    };
    Ok(Tensor::from_vec(v, x.shape(), x.device())?)
}

/// Standard normal tensor shaped like `t`.
pub fn gaussian_like(t: &Tensor, rng: &mut ChaCha8Rng) -> Result<Tensor> {
    Ok(Tensor::from_vec(
        crate::util::normal_vec(rng, t.elem_count()),
        t.shape(),
        t.device(),
    )?)
}

/// `n` indices cycling through `0..b` (the official code's `tile(...)[:n]`).
pub fn cycle_index(b: usize, n: usize, dev: &candle_core::Device) -> Result<Tensor> {
    let idx: Vec<u32> = (0..n).map(|i| (i % b) as u32).collect();
    Ok(Tensor::from_vec(idx, n, dev)?)
}

/// The official code's mixed batch: retain and forget samples in a shuffled order, `true` for
/// retain. Drawn from the step's stream (the official batches come from a shuffled loader).
pub fn mixed_order(r: usize, f: usize, rng: &mut ChaCha8Rng) -> Vec<bool> {
    use rand::seq::SliceRandom;
    let mut v: Vec<bool> = std::iter::repeat_n(true, r)
        .chain(std::iter::repeat_n(false, f))
        .collect();
    v.shuffle(rng);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_specs_parse_from_strings_and_maps() {
        let v: Vec<MethodSpec> = serde_yaml::from_str(
            "- ours\n- {name: ours, retain: proxy}\n- {name: ours, noise: uniform}\n",
        )
        .unwrap();
        assert_eq!(v[0], MethodSpec::plain(MethodName::Ours));
        assert_eq!(v[1].label(), "Ours (proxy D_R)");
        assert_eq!(v[2].key(), "ours+uniform");
        let e = serde_yaml::from_str::<Vec<MethodSpec>>("- forget_all\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown variant `forget_all`") && e.contains("random_encoder"),
            "{e}"
        );
        let e = serde_yaml::from_str::<Vec<MethodSpec>>("- {name: max_loss, retain: proxy}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("retain term keeps"), "{e}");
    }
}
