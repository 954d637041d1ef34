//! The retrain oracle's outputs on the evaluation sets, computed once per group before its cells
//! run and then only read: every cell's FID to the oracle compares with them, and the oracle's
//! own cell evaluates them instead of generating them again.

use super::generate::generate;
use super::RunOptions;
use crate::config::grid::Cell;
use crate::config::Experiment;
use crate::data::ImageSet;
use crate::metrics::{self, Extracted, Extractor};
use crate::models::{FamilyConfig, Weights};
use crate::names::MethodName;
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::BTreeMap;

/// Which of the oracle's outputs a cell compares with: (set, evaluation mask, seed).
type Key = (String, String, u64);

fn key(set: &str, cell: &Cell) -> Key {
    (set.to_string(), cell.mask.to_string(), cell.seed)
}

/// The oracle's outputs through the FID extractor, and the images themselves where the oracle's
/// own cell is among the cells to run.
pub struct OracleOutput {
    pub features: Extracted,
    pub images: Option<Tensor>,
}

/// Per (set, evaluation mask, seed) the oracle's outputs; empty without an oracle or an FID.
#[derive(Default)]
pub struct OracleOutputs {
    map: BTreeMap<Key, OracleOutput>,
}

impl OracleOutputs {
    /// The oracle's outputs on the inputs of `cell` (same set, mask and seed).
    pub fn get(&self, set: &str, cell: &Cell) -> Option<&OracleOutput> {
        self.map.get(&key(set, cell))
    }

    /// The oracle's generated images on the inputs of `cell`, where they were kept.
    pub fn images(&self, set: &str, cell: &Cell) -> Option<&Tensor> {
        self.get(set, cell).and_then(|o| o.images.as_ref())
    }

    /// Generate what `cells` need with the oracle (`family` with `weights`; nothing without an
    /// oracle or an FID extractor `fid`), the (set, mask, seed) keys on the run's workers.
    pub fn compute(
        exp: &Experiment,
        (family, weights): (&FamilyConfig, Option<&Weights>),
        fid: Option<&dyn Extractor>,
        eval_sets: [(&'static str, &ImageSet); 2],
        cells: &[&Cell],
        opts: &RunOptions,
    ) -> Result<Self> {
        let (Some(fid), Some(weights)) = (fid, weights) else {
            return Ok(Self::default());
        };
        // Per key, a cell with its mask and seed, and whether the oracle's own cell needs the
        // images.
        let mut wanted: BTreeMap<Key, (&Cell, bool)> = BTreeMap::new();
        for c in cells {
            for (set, _) in eval_sets {
                let own = c.method.name == MethodName::Retrain;
                let e = wanted.entry(key(set, c)).or_insert((c, own));
                e.1 |= own;
            }
        }
        let oracle = family.build(weights, false, &opts.device)?;
        let keys: Vec<(&Key, &(&Cell, bool))> = wanted.iter().collect();
        let out = std::sync::Mutex::new(BTreeMap::new());
        let sets: BTreeMap<&str, &ImageSet> = eval_sets.into_iter().collect();
        crate::parallel::run_on_workers(opts.jobs.max(1), keys.len(), |i| {
            let (k, (cell, keep)) = keys[i];
            let images = generate(exp, cell, &*oracle, sets[k.0.as_str()])
                .with_context(|| format!("the retrain oracle, the {} set", k.0))?;
            let features = metrics::extract(fid, &images, exp.metrics.batch_size, false)?;
            let images = keep.then_some(images);
            out.lock()
                .expect("oracle outputs lock")
                .insert(k.clone(), OracleOutput { features, images });
            Ok(())
        })?;
        Ok(Self {
            map: out.into_inner().expect("oracle outputs lock"),
        })
    }
}
