//! The experiment file's `metrics:` block: which extractor each metric uses and their settings.

use super::{clip, domain, inception, preprocess};
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
