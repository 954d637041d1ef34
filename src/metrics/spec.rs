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
    /// CSAIL's Places365 ResNet-50 scene classifier, the paper's Inception Score network on
    /// Places-365 (`metrics.places365_weights` or the official download, pinned on first use).
    #[serde(rename = "places365_resnet50")]
    Places365,
}

impl ExtractorRef {
    /// The name the experiment file uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractorRef::Domain => "domain",
            ExtractorRef::InceptionV3 => "inception_v3",
            ExtractorRef::InceptionPaper => "inception_paper",
            ExtractorRef::Clip => "clip",
            ExtractorRef::Places365 => "places365_resnet50",
        }
    }
}

/// `metrics.protocol`: a named metric profile that fills `fid`, `is`, `clip` and
/// `inception.mode` where the file leaves them out (keys the file gives win).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The paper's official evaluation: clean-fid FID (InceptionV3, clean resize), the paper's
    /// Inception Score (torchvision's InceptionV3 with its official preprocessing; on Places-365
    /// the Places365 ResNet-50), OpenCLIP ViT-H-14 cosine similarity.
    Paper,
    /// The standard tools: pytorch-fid FID, torch-fidelity's Inception Score on the same FID
    /// InceptionV3, CLIP ViT-H-14 cosine similarity.
    Standard,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Paper => "paper",
            Protocol::Standard => "standard",
        }
    }
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
    /// A named profile (`paper` or `standard`) filling the extractor choices the file leaves out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
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
    /// A local copy of `resnet50_places365.pth.tar` for `places365_resnet50` (instead of the
    /// official download).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub places365_weights: Option<std::path::PathBuf>,
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
            protocol: None,
            places365_weights: None,
        }
    }
}

impl MetricsSpec {
    /// Fill what `protocol` decides and the file left out: `given(key)` says whether the file's
    /// `metrics:` block has `key` (`inception.mode` for the resize); `places` whether every
    /// dataset of the grid is a Places-365 one (the paper's IS network is then the Places365
    /// ResNet-50).
    pub fn apply_protocol(&mut self, given: impl Fn(&str) -> bool, places: bool) {
        let Some(p) = self.protocol else { return };
        let (fid, is, mode) = match p {
            Protocol::Paper => (
                ExtractorRef::InceptionV3,
                if places {
                    ExtractorRef::Places365
                } else {
                    ExtractorRef::InceptionPaper
                },
                preprocess::ResizeMode::Clean,
            ),
            Protocol::Standard => (
                ExtractorRef::InceptionV3,
                ExtractorRef::InceptionV3,
                preprocess::ResizeMode::PytorchFid,
            ),
        };
        if !given("fid") {
            self.fid = Some(fid);
        }
        if !given("is") {
            self.is = Some(is);
        }
        if !given("clip") {
            self.clip = Some(ExtractorRef::Clip);
        }
        if !given("inception.mode") {
            self.inception.mode = mode;
        }
    }

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
