//! `i2i-unlearn fetch`: everything a grid would download, into the caches.

use crate::config::Experiment;
use crate::data::split::Splits;
use crate::metrics::ExtractorRef;
use anyhow::{Context, Result};
use std::time::Instant;

/// `i2i-unlearn fetch`: download everything `run` would read from the network (dataset shards,
/// checkpoints, extractor weights) into the caches, so that a later run works offline
/// (HF_HUB_OFFLINE=1). Each item is reported through `p`; returns how many items were resolved.
pub fn fetch(exp: &Experiment, p: &crate::progress::Progress) -> Result<usize> {
    let mut items = 0;
    let mut hub_cell: Option<crate::hub::Hub> = None;
    fn hub(cell: &mut Option<crate::hub::Hub>) -> Result<&crate::hub::Hub> {
        if cell.is_none() {
            *cell = Some(crate::hub::Hub::from_env()?);
        }
        Ok(cell.as_ref().expect("hub"))
    }
    let mut pretrained = false;
    for m in &exp.models {
        if m.weights.is_some() {
            let (_, ck) = m.resolve(Some(hub(&mut hub_cell)?))?;
            if let Some(ck) = ck {
                p.note(&format!(
                    "model `{}`: checkpoint {} → {}",
                    m.name,
                    ck.origin,
                    ck.weights.display()
                ));
            }
        } else {
            let committed = m.pretrained.clone().unwrap_or_default();
            // Pre-training images are needed unless both the original and the oracle are
            // committed files.
            pretrained |= committed.original.is_none() || committed.oracle.is_none();
            let how = match &committed.original {
                Some(f) => format!("committed pre-training {f} (nothing to download)"),
                None => "pre-trained by `run` (nothing to download)".into(),
            };
            p.note(&format!("model `{}`: {how}", m.name));
        }
        items += 1;
    }
    for d in &exp.datasets {
        let t = Instant::now();
        let (source, needs) = Splits::fetch(d, pretrained)
            .with_context(|| format!("fetching dataset `{}`", d.name))?;
        if d.effective_source().is_present() {
            p.note(&format!(
                "dataset `{}`: {source}: on this machine, nothing to download",
                d.name
            ));
        } else {
            p.note(&format!(
                "dataset `{}`: {source}: {needs} (class, split) draws available offline ({:.1} s)",
                d.name,
                t.elapsed().as_secs_f64()
            ));
        }
        items += 1;
    }
    for r in exp.metrics.extractors() {
        let h = match r {
            ExtractorRef::Clip => Some(hub(&mut hub_cell)?),
            _ => None,
        };
        match crate::metrics::open::fetch(r, &exp.metrics, h)? {
            Some(line) => {
                p.note(&line);
                items += 1;
            }
            None => p.note("extractor domain: trained by `run` (nothing to download)"),
        }
    }
    Ok(items)
}
