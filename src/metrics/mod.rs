//! Metrics: an [`Extractor`] turns images into features (and, where it has them, class logits);
//! FID, Inception Score and embedding similarity are computed from those.
//!
//! A number is only meaningful with its protocol (extractor, weights hash, resize, feature
//! dimension, N): [`Extractor::protocol`] names it and every result row carries it.
//!
//! The embedded default uses a small CNN trained on the dataset's own classes ([`domain`]),
//! labelled "domain extractor", never "Inception". InceptionV3 and CLIP are further extractors.

pub mod audit;
pub mod bootstrap;
pub mod clip;
pub mod commands;
pub mod domain;
mod evaluate;
pub mod fid;
pub mod inception;
pub mod is;
pub mod kid;
pub mod np_random;
pub mod open;
pub mod places365;
pub mod preprocess;
mod spec;

pub use evaluate::{evaluate_set, fid_pair, FeatureSets};
pub use spec::{ExtractorRef, InceptionSpec, MetricsSpec, Protocol};

use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Every named output of one forward pass of an extractor.
pub struct ExtractorOutput {
    /// `[N, d]` features.
    pub features: Tensor,
    /// `[N, C]` class logits, where the extractor has a classifier head (the ones the Inception
    /// Score of its protocol uses).
    pub logits: Option<Tensor>,
}

/// Turns images into features (and logits), in one forward pass.
pub trait Extractor: Send + Sync {
    /// The exact protocol: name, weights hash, input size / resize, feature dimension.
    fn protocol(&self) -> String;
    /// Feature dimension.
    fn dim(&self) -> usize;
    /// One forward pass over `[N, 3, S, S]` images in [0, 1].
    fn forward(&self, images: &Tensor) -> Result<ExtractorOutput>;
    /// How the Inception Score is computed from this extractor's logits.
    fn is_rule(&self) -> IsRule {
        IsRule::TorchFidelity
    }
    /// `[N, d]` features.
    fn features(&self, images: &Tensor) -> Result<Tensor> {
        Ok(self.forward(images)?.features)
    }
}

/// The split rule of an Inception Score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IsRule {
    /// torch-fidelity: numpy `RandomState(2020)` shuffle, splits at `i·N/s`.
    TorchFidelity,
    /// The paper's official evaluation: contiguous splits of `⌊N/s⌋`, remainder dropped.
    Paper,
}

/// Features (and logits) of an image set, computed in batches.
#[derive(Clone, Debug)]
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
        let out = ex.forward(&x)?;
        features.extend(crate::nn::to_vec_f32(&out.features)?);
        if want_logits {
            if let Some(l) = out.logits {
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

/// `[N, 3, H, W]` images in [0, 1] as 8-bit RGB (rounded), the form the reference tools read
/// from files.
pub fn to_rgb8(images: &Tensor) -> Result<Vec<image::RgbImage>> {
    let (n, c, h, w) = images.dims4()?;
    anyhow::ensure!(c == 3, "expected RGB images");
    let v = crate::nn::to_vec_f32(images)?;
    Ok((0..n)
        .map(|i| {
            let mut img = image::RgbImage::new(w as u32, h as u32);
            for y in 0..h {
                for x in 0..w {
                    let px = |ch: usize| {
                        (v[((i * 3 + ch) * h + y) * w + x].clamp(0.0, 1.0) * 255.0).round() as u8
                    };
                    img.put_pixel(x as u32, y as u32, image::Rgb([px(0), px(1), px(2)]));
                }
            }
            img
        })
        .collect())
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
    /// The bootstrap interval ([`bootstrap::LEVEL`]), where one was computed.
    #[serde(default)]
    pub ci: Option<(f64, f64)>,
}

/// Seed of numpy's `RandomState` that shuffles before the Inception Score's splits and draws
/// KID's subsets, as torch-fidelity does (the sets come ordered by class; unshuffled splits would
/// each see one class).
pub const SHUFFLE_SEED: u32 = 2020;

/// The extractors of a run, by reference, with the ground truth's features of each set.
pub type Extractors<'a> = std::collections::BTreeMap<ExtractorRef, &'a dyn Extractor>;
