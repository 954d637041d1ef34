//! The one place that opens or fetches a downloaded extractor (both InceptionV3 variants, CLIP):
//! which file each reads, pinned downloads into the cache, local files where the settings give
//! them. The domain extractor is trained by the pipeline instead (`domain.rs`).

use super::inception::{InceptionExtractor, Variant};
use super::preprocess::ResizeMode;
use super::{clip, Extractor, ExtractorRef, MetricsSpec};
use anyhow::Result;
use candle_core::Device;
use std::path::{Path, PathBuf};

/// The weights file of an InceptionV3 variant: `local` if given, else its pinned download
/// (fetched into the cache on first use).
pub fn inception_weights(variant: Variant, local: Option<&Path>) -> Result<PathBuf> {
    let file = match variant {
        Variant::Fid => crate::weights::FID_INCEPTION,
        Variant::ImageNet => crate::weights::TORCHVISION_INCEPTION,
    };
    crate::weights::resolve(&file, local, &crate::hub::HubConfig::from_env())
}

/// An InceptionV3 extractor of `variant` under a resize protocol and feature dimension.
pub fn inception(
    variant: Variant,
    local: Option<&Path>,
    mode: ResizeMode,
    dims: usize,
    dev: &Device,
) -> Result<InceptionExtractor> {
    let path = inception_weights(variant, local)?;
    InceptionExtractor::load(&path, variant, mode, dims, dev)
}

/// What `r` reads from the network under `spec` (variant, local override, mode, dims), for the
/// Inception variants.
fn inception_of(
    r: ExtractorRef,
    spec: &MetricsSpec,
) -> Option<(Variant, Option<&Path>, ResizeMode, usize)> {
    let s = &spec.inception;
    match r {
        ExtractorRef::InceptionV3 => Some((Variant::Fid, s.weights.as_deref(), s.mode, s.dims)),
        ExtractorRef::InceptionPaper => Some((
            Variant::ImageNet,
            s.paper_weights.as_deref(),
            ResizeMode::PaperIs,
            2048,
        )),
        ExtractorRef::Domain | ExtractorRef::Clip | ExtractorRef::Places365 => None,
    }
}

/// The Places365 ResNet-50's weights: `local` if given, else the official download (pinned on
/// first download, with a warning on stderr then).
pub fn places365_weights(local: Option<&Path>) -> Result<(PathBuf, String)> {
    let (path, sha, warning) = crate::weights::resolve_first_pinned(
        super::places365::WEIGHTS_URL,
        super::places365::WEIGHTS_NAME,
        local,
        &crate::hub::HubConfig::from_env(),
    )?;
    if let Some(w) = warning {
        eprintln!("warning: {w}");
    }
    Ok((path, sha))
}

/// A downloaded extractor as the experiment's metrics configure it; `None` for the domain
/// extractor, which the pipeline trains.
pub fn open(
    r: ExtractorRef,
    spec: &MetricsSpec,
    dev: &Device,
) -> Result<Option<Box<dyn Extractor>>> {
    if let Some((variant, local, mode, dims)) = inception_of(r, spec) {
        return Ok(Some(Box::new(inception(variant, local, mode, dims, dev)?)));
    }
    Ok(match r {
        ExtractorRef::Clip => Some(Box::new(clip::ClipExtractor::load(&spec.clip_model, dev)?)),
        ExtractorRef::Places365 => {
            let (path, _) = places365_weights(spec.places365_weights.as_deref())?;
            Some(Box::new(super::places365::Places365Extractor::load(
                &path, dev,
            )?))
        }
        _ => None,
    })
}

/// Fetch what `r` reads from the network into the caches without loading it; a line saying
/// where it is (`None`: nothing to download).
pub fn fetch(
    r: ExtractorRef,
    spec: &MetricsSpec,
    hub: Option<&crate::hub::Hub>,
) -> Result<Option<String>> {
    if let Some((variant, local, _, _)) = inception_of(r, spec) {
        let path = inception_weights(variant, local)?;
        return Ok(Some(format!("extractor {r:?}: {}", path.display())));
    }
    Ok(match r {
        ExtractorRef::Clip => {
            let ck = crate::weights::checkpoint::resolve(&spec.clip_model, hub)?;
            Some(format!(
                "extractor clip: {} → {}",
                ck.origin,
                ck.weights.display()
            ))
        }
        ExtractorRef::Places365 => {
            let (path, sha) = places365_weights(spec.places365_weights.as_deref())?;
            Some(format!(
                "extractor places365_resnet50: {} (sha256 {sha})",
                path.display()
            ))
        }
        _ => None,
    })
}
