//! Identity by content: the fingerprints of what an experiment names only by path (local image
//! folders, checkpoint files), the cache keys of pre-trainings, and the original model every
//! stored cell must come from. A checkpoint overwritten in place or a class folder renamed gives
//! new keys, so nothing computed from the old content is reused; a stored record or unlearned
//! model from another original is found stale and computed again.

use crate::config::grid::{self, Fingerprints};
use crate::config::Experiment;
use crate::models::FamilyConfig;
use crate::progress::Progress;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// A model's family config and, when it starts from one, its resolved checkpoint.
pub type Resolved = (FamilyConfig, Option<crate::weights::checkpoint::Checkpoint>);

/// The fingerprints of the experiment's local data folders and checkpoints.
pub fn fingerprints(exp: &Experiment, resolved: &[Resolved], p: &Progress) -> Result<Fingerprints> {
    let mut fp = Fingerprints::default();
    for d in &exp.datasets {
        let f = match d.effective_source().local_path() {
            Some(root) if root.is_dir() => Some(
                crate::data::folder::fingerprint(root)
                    .with_context(|| format!("fingerprinting dataset `{}`", d.name))?,
            ),
            _ => None,
        };
        if let Some(f) = &f {
            p.note(&format!(
                "dataset `{}`: content fingerprint {} of the files under {}",
                d.name,
                &f[..12],
                d.effective_source()
                    .local_path()
                    .map(|r| r.display().to_string())
                    .unwrap_or_default()
            ));
        }
        fp.data.push(f);
    }
    for ((_, ck), m) in resolved.iter().zip(&exp.models) {
        let f = ck
            .as_ref()
            .map(|c| {
                c.sha256()
                    .with_context(|| format!("hashing the weights of model `{}`", m.name))
            })
            .transpose()?;
        fp.weights.push(f);
    }
    Ok(fp)
}

/// The cache key of a pre-training here on every class of dataset `di` but `exclude` (nothing:
/// the original model; the forget classes: the retrain oracle).
pub fn pretrain_key(
    exp: &Experiment,
    (di, mi): (usize, usize),
    family: &FamilyConfig,
    exclude: &[usize],
    fp: &Fingerprints,
) -> String {
    let (d, m) = (&exp.datasets[di], &exp.models[mi]);
    let mut desc = serde_json::json!({
        "what": "pretrain", "v": grid::PROTOCOL_VERSION, "source": d.effective_source(),
        "per_class": d.pretrain_per_class.unwrap_or(d.train_per_class), "sample_seed": d.sample_seed,
        "family": m.family, "config": family, "pretrain": m.pretrain,
    });
    if !exclude.is_empty() {
        // The oracle's key adds the excluded classes; the original's stays as it was.
        desc["exclude"] = serde_json::json!(exclude);
    }
    if let Some(f) = fp.data(di) {
        desc["data_content"] = serde_json::json!(f);
    }
    crate::util::content_hash(&desc)[..16].to_string()
}

/// The SHA-256 of the original model of each (dataset, model) pair, where it is known without
/// computing anything: a checkpoint's, or the seal of a cached pre-training.
pub fn known_originals(
    exp: &Experiment,
    resolved: &[Resolved],
    fp: &Fingerprints,
    cache_dir: &Path,
) -> BTreeMap<(usize, usize), String> {
    let mut out = BTreeMap::new();
    for di in 0..exp.datasets.len() {
        for (mi, (family, ck)) in resolved.iter().enumerate() {
            let sha = match (ck, fp.weights(mi)) {
                (Some(_), Some(w)) => Some(w.to_string()),
                (Some(_), None) => None,
                (None, _) => {
                    let key = pretrain_key(exp, (di, mi), family, &[], fp);
                    crate::store::sealed::recorded(&crate::pretrain::cache_path(cache_dir, &key))
                }
            };
            if let Some(s) = sha {
                out.insert((di, mi), s);
            }
        }
    }
    out
}
