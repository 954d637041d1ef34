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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtractorRef {
    /// A small CNN trained on the dataset's forget + retain classes (see [`domain::DomainSpec`]).
    Domain,
    /// pytorch-fid's FID InceptionV3 (settings in `metrics.inception`).
    InceptionV3,
    /// torchvision's ImageNet InceptionV3 with the paper's official Inception Score protocol
    /// (256 px PIL bilinear, CIFAR normalisation, bilinear to 299, contiguous splits).
    InceptionPaper,
    /// A CLIP vision tower (`metrics.clip_model`; the paper's ViT-H-14 by default).
    Clip,
}

/// `metrics.inception`: the InceptionV3 extractor's protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InceptionSpec {
    /// pytorch-fid, clean or torch-fidelity.
    pub mode: preprocess::ResizeMode,
    /// 64, 192, 768 or 2048.
    pub dims: usize,
    /// A local weights file instead of the pinned download.
    pub weights: Option<std::path::PathBuf>,
    /// A local file of torchvision's ImageNet InceptionV3 weights for `inception_paper` (instead
    /// of the pinned download).
    pub paper_weights: Option<std::path::PathBuf>,
}

impl Default for InceptionSpec {
    fn default() -> Self {
        Self {
            mode: preprocess::ResizeMode::PytorchFid,
            dims: 2048,
            weights: None,
            paper_weights: None,
        }
    }
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
    /// Kernel Inception Distance (unbiased; 100 subsets of at most 1000), off by default.
    pub kid: Option<ExtractorRef>,
    /// Number of splits for the Inception Score.
    pub is_splits: usize,
    /// Images per forward pass during evaluation.
    pub batch_size: usize,
    /// Settings of the domain extractor.
    pub domain: domain::DomainSpec,
    /// Settings of the InceptionV3 extractor.
    pub inception: InceptionSpec,
    /// The CLIP checkpoint of the `clip` extractor: a hub id or a folder.
    pub clip_model: String,
    /// Bootstrap resamples behind the 95 % interval of every FID, IS, similarity and audit AUC
    /// (0: no intervals). Each resample recomputes the statistic (for FID a d × d matrix square
    /// root: with 2048-d Inception features ≈ 1 s each on 2 cores).
    pub bootstrap: usize,
}

impl Default for MetricsSpec {
    fn default() -> Self {
        Self {
            fid: Some(ExtractorRef::Domain),
            is: Some(ExtractorRef::Domain),
            clip: Some(ExtractorRef::Domain),
            kid: None,
            is_splits: 10,
            batch_size: 100,
            domain: domain::DomainSpec::default(),
            inception: InceptionSpec::default(),
            clip_model: clip::PAPER_CLIP.to_string(),
            bootstrap: 200,
        }
    }
}

impl MetricsSpec {
    pub fn validate(&self) -> std::result::Result<(), (Vec<crate::locate::Seg>, String)> {
        use crate::locate::Seg::Key;
        if self.is_splits == 0 {
            return Err((vec![Key("is_splits")], "must be at least 1".into()));
        }
        if self.batch_size == 0 {
            return Err((vec![Key("batch_size")], "must be at least 1".into()));
        }
        if (1..20).contains(&self.bootstrap) {
            return Err((
                vec![Key("bootstrap")],
                format!(
                    "{} resamples cannot place a 95 % interval: use at least 20 (200 is the default), or 0 for no intervals",
                    self.bootstrap
                ),
            ));
        }
        if !inception::DIMS.contains(&self.inception.dims) {
            return Err((
                vec![Key("inception"), Key("dims")],
                "must be 64, 192, 768 or 2048".into(),
            ));
        }
        if self.is == Some(ExtractorRef::InceptionV3) && self.inception.dims != 2048 {
            return Err((
                vec![Key("inception"), Key("dims")],
                "the Inception Score needs the 2048-d pool3 features".into(),
            ));
        }
        self.domain
            .validate()
            .map_err(|(k, m)| (vec![Key("domain"), Key(k)], m))
    }

    /// The extractors the enabled metrics use, each once.
    pub fn extractors(&self) -> Vec<ExtractorRef> {
        let mut v: Vec<ExtractorRef> = [self.fid, self.is, self.clip, self.kid]
            .into_iter()
            .flatten()
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

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

/// FID / IS / similarity / KID of generated images against their ground truth (`truth` holds
/// the ground truth's features per extractor), with bootstrap intervals over the
/// generated / truth pairs (`spec.bootstrap` resamples, drawn from `seed`); also returns the
/// generated images' features per extractor.
pub fn evaluate_set(
    spec: &MetricsSpec,
    extractors: &Extractors,
    generated: &Tensor,
    truth: &std::collections::BTreeMap<ExtractorRef, Extracted>,
    seed: u64,
) -> Result<(
    Vec<MetricValue>,
    std::collections::BTreeMap<ExtractorRef, Extracted>,
)> {
    let mut gen: std::collections::BTreeMap<ExtractorRef, Extracted> =
        std::collections::BTreeMap::new();
    for r in spec.extractors() {
        let want_logits = spec.is == Some(r);
        gen.insert(
            r,
            extract(extractors[&r], generated, spec.batch_size, want_logits)?,
        );
    }
    let mut out = vec![];
    let boot = |name: &str| crate::util::mix(&[seed, crate::util::fnv1a64(name.as_bytes())]);
    let ci_note = |n: usize| {
        if spec.bootstrap > 0 {
            format!(
                "; 95% bootstrap interval over the {n} generated/truth pairs ({} resamples)",
                spec.bootstrap
            )
        } else {
            String::new()
        }
    };
    if let Some(r) = spec.fid {
        out.push(fid_pair(
            "fid",
            "generated-vs-truth",
            &gen[&r],
            &truth[&r],
            &extractors[&r].protocol(),
            spec.bootstrap,
            boot("fid"),
        )?);
    }
    if let Some(r) = spec.is {
        let g = &gen[&r];
        let logits = g.logits.as_ref().ok_or_else(|| {
            anyhow::anyhow!("the extractor has no classifier head for the Inception Score")
        })?;
        let ex = extractors[&r];
        let rule = ex.is_rule();
        let perm = np_random::RandomState::new(SHUFFLE_SEED).permutation(g.n);
        let score = |logits: &[f32]| -> Result<(f64, f64)> {
            match rule {
                IsRule::TorchFidelity => {
                    is::inception_score(logits, g.classes, spec.is_splits, Some(&perm))
                }
                IsRule::Paper => is::inception_score_with(
                    logits,
                    g.classes,
                    spec.is_splits,
                    None,
                    is::Splits::Floor,
                ),
            }
        };
        let (mean, std) = score(logits)?;
        let how = match rule {
            IsRule::TorchFidelity => format!(
                "{} splits after numpy RandomState({SHUFFLE_SEED}).permutation",
                spec.is_splits
            ),
            IsRule::Paper => format!(
                "{} contiguous splits of floor(N/{}) (the paper's official code)",
                spec.is_splits, spec.is_splits
            ),
        };
        // The same rule on each resample of the generated images.
        let ci = bootstrap::interval(&[g.n], spec.bootstrap, boot("is"), |idx| {
            Ok(score(&bootstrap::gather_rows(logits, g.classes, &idx[0]))?.0)
        })?;
        let p = format!(
            "IS, {}, {} classes, f64 softmax, {how}{}",
            ex.protocol(),
            g.classes,
            if spec.bootstrap > 0 {
                format!(
                    "; 95% bootstrap interval over the {} generated images ({} resamples)",
                    g.n, spec.bootstrap
                )
            } else {
                String::new()
            }
        );
        out.push(MetricValue {
            metric: "is".into(),
            value: mean,
            n: g.n,
            protocol: p.clone(),
            ci,
        });
        out.push(MetricValue {
            metric: "is_split_std".into(),
            value: std,
            n: g.n,
            protocol: p,
            ci: None,
        });
    }
    if let Some(r) = spec.clip {
        let (g, t) = (&gen[&r], &truth[&r]);
        let per_pair: Vec<f64> = (0..g.n)
            .map(|i| {
                let rows = i * g.dim..(i + 1) * g.dim;
                mean_cosine(&g.features[rows.clone()], &t.features[rows], g.dim)
            })
            .collect();
        let ci = bootstrap::interval(&[g.n], spec.bootstrap, boot("clip"), |idx| {
            Ok(idx[0].iter().map(|&i| per_pair[i]).sum::<f64>() / g.n as f64)
        })?;
        out.push(MetricValue {
            metric: "clip".into(),
            value: mean_cosine(&g.features, &t.features, g.dim),
            n: g.n,
            protocol: format!(
                "mean cosine(generated, own truth), {}{}",
                extractors[&r].protocol(),
                ci_note(g.n)
            ),
            ci,
        });
    }
    if let Some(r) = spec.kid {
        let (g, t) = (&gen[&r], &truth[&r]);
        let (mean, std) = kid::kid(&g.features, &t.features, g.dim, 100, 1000, SHUFFLE_SEED)?;
        let p = format!(
            "KID generated-vs-truth, {}, (x.y/d+1)^3 kernel, 100 subsets of {}, numpy RandomState({SHUFFLE_SEED})",
            extractors[&r].protocol(),
            g.n.min(t.n).min(1000)
        );
        out.push(MetricValue {
            metric: "kid".into(),
            value: mean,
            n: g.n,
            protocol: p.clone(),
            ci: None,
        });
        out.push(MetricValue {
            metric: "kid_subset_std".into(),
            value: std,
            n: g.n,
            protocol: p,
            ci: None,
        });
    }
    Ok((out, gen))
}

/// The Fréchet distance between two feature sets of paired images (row i of `a` and of `b` come
/// from the same input), with its bootstrap interval over the pairs: `metric` names the row,
/// `what` the two sets in the protocol.
pub fn fid_pair(
    metric: &str,
    what: &str,
    a: &Extracted,
    b: &Extracted,
    extractor_protocol: &str,
    resamples: usize,
    seed: u64,
) -> Result<MetricValue> {
    anyhow::ensure!(
        a.n == b.n && a.dim == b.dim,
        "the two sets of a Fréchet distance differ: {} × {} vs {} × {}",
        a.n,
        a.dim,
        b.n,
        b.dim
    );
    let value = fid::frechet_distance(
        &fid::Stats::from_rows(&a.features, a.dim)?,
        &fid::Stats::from_rows(&b.features, b.dim)?,
    )?;
    let ci = bootstrap::interval(&[a.n], resamples, seed, |idx| {
        let x = fid::Stats::from_rows(&bootstrap::gather_rows(&a.features, a.dim, &idx[0]), a.dim)?;
        let y = fid::Stats::from_rows(&bootstrap::gather_rows(&b.features, b.dim, &idx[0]), b.dim)?;
        fid::frechet_distance(&x, &y)
    })?;
    let small = if a.n < a.dim {
        "; N < d: singular covariances, biased"
    } else {
        ""
    };
    let interval = if resamples > 0 {
        format!(
            "; 95% bootstrap interval over the {} pairs ({resamples} resamples)",
            a.n
        )
    } else {
        String::new()
    };
    Ok(MetricValue {
        metric: metric.into(),
        value,
        n: a.n,
        protocol: format!(
            "FID {what}, {extractor_protocol}, f64 stats, symmetric-eigen sqrt{small}{interval}"
        ),
        ci,
    })
}
