//! Metrics: an [`Extractor`] turns images into features (and, where it has them, class logits);
//! FID, Inception Score and embedding similarity are computed from those.
//!
//! A number is only meaningful with its protocol (extractor, weights hash, resize, feature
//! dimension, N): [`Extractor::protocol`] names it and every result row carries it.
//!
//! The embedded default uses a small CNN trained on the dataset's own classes ([`domain`]),
//! labelled "domain extractor", never "Inception". InceptionV3 and CLIP are further extractors.

pub mod commands;
pub mod domain;
pub mod fid;
pub mod inception;
pub mod is;
pub mod kid;
pub mod np_random;
pub mod preprocess;

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Which extractor a metric uses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractorRef {
    /// A small CNN trained on the dataset's forget + retain classes (see [`domain::DomainSpec`]).
    Domain,
}

/// The `metrics:` block of the experiment file. A metric set to `null` is skipped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSpec {
    /// Fréchet distance between generated and ground-truth features, per set.
    pub fid: Option<ExtractorRef>,
    /// Inception Score of the generated images (from the extractor's class posteriors).
    pub is: Option<ExtractorRef>,
    /// Mean cosine similarity between each generated image's embedding and its ground truth's
    /// (the paper's CLIP column).
    pub clip: Option<ExtractorRef>,
    /// Number of splits for the Inception Score.
    pub is_splits: usize,
    /// Images per forward pass during evaluation.
    pub batch_size: usize,
    /// Settings of the domain extractor.
    pub domain: domain::DomainSpec,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            fid: Some(ExtractorRef::Domain),
            is: Some(ExtractorRef::Domain),
            clip: Some(ExtractorRef::Domain),
            is_splits: 10,
            batch_size: 100,
            domain: domain::DomainSpec::default(),
        }
    }
}

impl MetricsSpec {
    pub fn validate(&self) -> std::result::Result<(), (Vec<crate::config::locate::Seg>, String)> {
        use crate::config::locate::Seg::Key;
        if self.is_splits == 0 {
            return Err((vec![Key("is_splits")], "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err((vec![Key("batch_size")], "must be at least 1".into()));
        }
        self.domain
            .validate()
            .map_err(|(k, m)| (vec![Key("domain"), Key(k)], m))
    }
}

/// Turns images into features.
pub trait Extractor {
    /// The exact protocol: name, weights hash, input size / resize, feature dimension.
    fn protocol(&self) -> String;
    /// Feature dimension.
    fn dim(&self) -> usize;
    /// `[N, d]` features of `[N, 3, S, S]` images in [0, 1].
    fn features(&self, images: &Tensor) -> Result<Tensor>;
    /// `[N, C]` class logits, if the extractor has a classifier head.
    fn logits(&self, images: &Tensor) -> Result<Option<Tensor>>;
}

/// Features (and logits) of an image set, computed in batches.
pub struct Extracted {
    /// `[N, d]` row-major.
    pub features: Vec<f32>,
    pub logits: Option<Vec<f32>>,
    pub n: usize,
    pub dim: usize,
    pub classes: usize,
}

pub fn extract(
    ex: &dyn Extractor,
    images: &Tensor,
    batch: usize,
    want_logits: bool,
) -> Result<Extracted> {
    let n = images.dim(0)?;
    let mut features = Vec::with_capacity(n * ex.dim());
    let mut logits: Option<Vec<f32>> = None;
    let mut classes = 0;
    let mut start = 0;
    while start < n {
        let b = batch.min(n - start);
        let x = images.narrow(0, start, b)?;
        features.extend(crate::nn::to_vec_f32(&ex.features(&x)?)?);
        if want_logits {
            if let Some(l) = ex.logits(&x)? {
                classes = l.dim(1)?;
                logits
                    .get_or_insert_with(Vec::new)
                    .extend(crate::nn::to_vec_f32(&l)?);
            }
        }
        start += b;
    }
    Ok(Extracted {
        features,
        logits,
        n,
        dim: ex.dim(),
        classes,
    })
}

/// Mean cosine similarity between row i of `a` and row i of `b`.
pub fn mean_cosine(a: &[f32], b: &[f32], dim: usize) -> f64 {
    let n = a.len() / dim;
    let mut total = 0.0;
    for i in 0..n {
        let (x, y) = (&a[i * dim..(i + 1) * dim], &b[i * dim..(i + 1) * dim]);
        let dot: f64 = x.iter().zip(y).map(|(p, q)| *p as f64 * *q as f64).sum();
        let nx: f64 = x.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|p| (*p as f64).powi(2)).sum::<f64>().sqrt();
        total += dot / (nx * ny).max(1e-12);
    }
    total / n.max(1) as f64
}

/// One metric value with its protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricValue {
    pub metric: String,
    pub value: f64,
    pub n: usize,
    pub protocol: String,
}

/// Seed of the fixed shuffle before the Inception Score's splits (the images come ordered by
/// class; unshuffled splits would each see one class).
pub const IS_SHUFFLE_SEED: u64 = 2020;

/// FID / IS / similarity of generated images against their ground truth.
pub fn evaluate_set(
    spec: &MetricsSpec,
    ex: &dyn Extractor,
    generated: &Tensor,
    truth: &Extracted,
) -> Result<Vec<MetricValue>> {
    let want_logits = spec.is.is_some();
    let gen = extract(ex, generated, spec.batch_size, want_logits)?;
    let n = gen.n;
    anyhow::ensure!(
        n == truth.n,
        "generated and ground-truth sets differ in size: {n} vs {}",
        truth.n
    );
    let proto = ex.protocol();
    let mut out = vec![];
    if spec.fid.is_some() {
        let a = fid::Stats::from_rows(&gen.features, gen.dim)?;
        let b = fid::Stats::from_rows(&truth.features, truth.dim)?;
        let small = if n < gen.dim {
            "; N < d: singular covariances"
        } else {
            ""
        };
        out.push(MetricValue {
            metric: "fid".into(),
            value: fid::frechet_distance(&a, &b)?,
            n,
            protocol: format!(
                "FID generated-vs-truth, {proto}, f64 stats, symmetric-eigen sqrt{small}"
            ),
        });
    }
    if spec.is.is_some() {
        let logits = gen.logits.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the extractor has no classifier head for the Inception Score")
        })?;
        let perm = is::shuffled(n, IS_SHUFFLE_SEED);
        let (mean, std) = is::inception_score(logits, gen.classes, spec.is_splits, Some(&perm))?;
        let p = format!(
            "IS, {proto}, {} classes, f64 softmax, {} splits after a fixed shuffle (seed {IS_SHUFFLE_SEED})",
            gen.classes, spec.is_splits
        );
        out.push(MetricValue {
            metric: "is".into(),
            value: mean,
            n,
            protocol: p.clone(),
        });
        out.push(MetricValue {
            metric: "is_split_std".into(),
            value: std,
            n,
            protocol: p,
        });
    }
    if spec.clip.is_some() {
        out.push(MetricValue {
            metric: "clip".into(),
            value: mean_cosine(&gen.features, &truth.features, gen.dim),
            n,
            protocol: format!("mean cosine(generated, own truth), {proto}"),
        });
    }
    Ok(out)
}
