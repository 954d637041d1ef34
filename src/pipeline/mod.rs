//! `run`: the whole experiment, one way through: config → grid → data → original model →
//! extractor → for each unlearned model the grid needs: unlearn once (or load it, stored by an
//! earlier run) → for each of its unfinished cells (evaluation masks): generate → metrics →
//! store; then the report.
//!
//! | file         | what                                                                   |
//! |--------------|------------------------------------------------------------------------|
//! | `mod.rs`     | the run: grid, grouping, parallel unlearning jobs, summary              |
//! | `group.rs`   | what a (dataset, model) pair shares: data, original model, extractors    |
//! | `jobs.rs`    | a group's unlearning jobs on the workers, claimed in a shared folder     |
//! | `oracle.rs`  | the retrain oracle's outputs, computed once per group                   |
//! | `cell.rs`    | one unlearned model (trained or loaded) and the evaluation of its cells  |
//! | `evaluate.rs`| one cell's evaluation, step by step                                     |
//! | `generate.rs`| a model's outputs on an evaluation set under a cell's mask and seed      |
//! | `audit.rs`   | a cell's membership audit (per-image losses → the attack's AUC)         |
//! | `samples.rs` | sample sheets                                                           |
//! | `fetch.rs`   | `i2i-unlearn fetch`                                                     |

mod audit;
mod cell;
pub mod downloads;
mod evaluate;
mod fetch;
mod gate;
mod generate;
mod group;
mod identity;
mod jobs;
mod map_probe;
mod oracle;
pub mod price;
mod samples;

pub use fetch::fetch;

use crate::config::grid::{self, Cell, Shard};
use crate::config::Experiment;
use crate::progress::Progress;
use crate::store::{self, GridManifest, Store};
use anyhow::Result;
use candle_core::Device;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct RunOptions {
    pub shard: Option<Shard>,
    pub device: Device,
    pub cache_dir: PathBuf,
    /// Overrides the experiment's output folder.
    pub output: Option<PathBuf>,
    pub progress: Progress,
    /// Write inpainting samples (PNG) per cell.
    pub samples: bool,
    /// Cells run at the same time.
    pub jobs: usize,
}

/// Wall time per phase, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phases {
    pub data: f64,
    pub pretrain: f64,
    pub extractor: f64,
    /// Summed over unlearning runs (they may run in parallel).
    pub unlearn: f64,
    /// Summed over cells.
    pub evaluate: f64,
    /// Wall time of all cells (unlearning and evaluation, in parallel).
    pub cells_wall: f64,
    pub report: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub output: PathBuf,
    pub cells_in_grid: usize,
    pub cells_in_shard: usize,
    pub cells_run: usize,
    pub cells_skipped: usize,
    /// Unlearning runs done by this run (each serves every evaluation mask of its cells).
    pub models_unlearned: usize,
    pub phases: Phases,
}

pub(crate) fn out_dir_of(opts: &RunOptions, exp: &Experiment) -> PathBuf {
    opts.output.clone().unwrap_or_else(|| exp.output_dir())
}

/// Create the output folder (bad input, exit 2, naming the path given, when it is a file or
/// cannot be created or written).
pub(crate) fn prepare_output_dir(out_dir: &Path) -> Result<()> {
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(crate::error::user(format!(
            "output {} is a file, not a folder: give a folder (it is created if missing)",
            out_dir.display()
        )));
    }
    std::fs::create_dir_all(out_dir).map_err(|e| {
        crate::error::user(format!(
            "cannot create the output folder {}: {e}",
            out_dir.display()
        ))
    })?;
    let probe = out_dir.join(format!(".i2i-write-test-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .map_err(|e| {
            crate::error::user(format!(
                "the output folder {} cannot be written: {e}",
                out_dir.display()
            ))
        })?;
    std::fs::remove_file(&probe).ok();
    Ok(())
}

/// The family config and checkpoint of every model, resolved (config files downloaded where
/// needed) and checked against the masks before anything is written.
fn resolve_models(exp: &Experiment) -> Result<Vec<group::Resolved>> {
    let hub = if exp.models.iter().any(|m| m.weights.is_some()) {
        Some(crate::hub::Hub::from_env()?)
    } else {
        None
    };
    let mut resolved = vec![];
    for m in &exp.models {
        let (family, ck) = m.resolve(hub.as_ref())?;
        crate::config::check_masks(exp, &family, &m.name).map_err(|(path, msg)| {
            crate::error::user(format!("{}: {msg}", crate::locate::path_string(&path)))
        })?;
        resolved.push((family, ck));
    }
    Ok(resolved)
}

pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary> {
    let out_dir = out_dir_of(opts, exp);
    let resolved = resolve_models(exp)?;
    let fp = identity::fingerprints(exp, &resolved, &opts.progress)?;
    let all = grid::expand_with(exp, &fp);
    let cells = match opts.shard {
        Some(s) => s.select(all.clone()),
        None => all.clone(),
    };
    let store = Store::new(&out_dir);
    let dir = store.run_dir();
    let created = !out_dir.exists();
    prepare_output_dir(&out_dir)?;
    // Temporary files a killed run left behind.
    for d in [dir.cells(), out_dir.join("unlearned"), out_dir.clone()] {
        crate::util::clean_stale_temps(&d, crate::util::STALE_TEMP_AGE);
    }
    // A run that fails before it has any result (bad data, say) leaves no folder it created.
    let mut cleanup = Cleanup {
        dir: &out_dir,
        armed: created,
    };
    store::write_grid(
        &out_dir,
        &GridManifest {
            experiment: exp.name.clone(),
            cells: all.clone(),
            notes: grid::absent_rows(exp),
        },
    )?;
    crate::util::write_atomic(&dir.experiment(), serde_yaml::to_string(exp)?.as_bytes())?;
    let mut summary = RunSummary {
        output: out_dir.clone(),
        cells_in_grid: all.len(),
        cells_in_shard: cells.len(),
        ..Default::default()
    };
    let originals = identity::known_originals(exp, &resolved, &fp, &opts.cache_dir);
    let pending = pending_cells(&cells, &store, &originals, &opts.progress);
    summary.cells_skipped = cells.len() - pending.len();
    let p = &opts.progress;
    p.note(&format!(
        "{}: {} cells in the grid{}, {} already done, {} to run → {}",
        exp.name,
        all.len(),
        opts.shard
            .map(|s| format!(" ({} in shard {}/{})", cells.len(), s.k, s.n))
            .unwrap_or_default(),
        summary.cells_skipped,
        pending.len(),
        out_dir.display()
    ));
    // (dataset, model) → unlearned model → its pending cells (evaluation masks), in grid order.
    let mut groups: BTreeMap<(usize, usize), BTreeMap<String, Vec<&Cell>>> = BTreeMap::new();
    for c in &pending {
        groups
            .entry((c.dataset_idx, c.model_idx))
            .or_default()
            .entry(c.unlearn_key.clone())
            .or_default()
            .push(c);
    }
    let counter = cell::CellCounter::new(pending.len());
    for ((di, mi), mut by_key) in groups {
        let mut group =
            group::prepare_group(exp, (di, mi), &resolved[mi], &fp, opts, &mut summary.phases)?;
        // Now that the original is known: the group's stored cells from another original (already
        // checked above where the original was known then and is the same).
        let checked = originals.get(&(di, mi)) == Some(&group.original_sha);
        for c in cells
            .iter()
            .filter(|c| !checked && (c.dataset_idx, c.model_idx) == (di, mi))
        {
            if let store::Stored::Stale(why) = store.stored(&c.id, Some(&group.original_sha)) {
                opts.progress.warn(&format!(
                    "cell {} ({}): {why}; computing it again",
                    c.id, c.label
                ));
                store.remove(&c.id);
                let job = by_key.entry(c.unlearn_key.clone()).or_default();
                if !job.iter().any(|x| x.id == c.id) {
                    job.push(c);
                }
            }
        }
        let t = Instant::now();
        let group_cells: Vec<&Cell> = by_key.values().flatten().copied().collect();
        let fid = exp.metrics.fid.map(|r| group.extractors[&r].as_ref());
        group.oracle_outputs = oracle::OracleOutputs::compute(
            exp,
            (&group.family, group.oracle.as_ref()),
            fid,
            group.eval_sets(),
            &group_cells,
            opts,
        )?;
        summary.phases.evaluate += t.elapsed().as_secs_f64();
        let jobs: Vec<Vec<&Cell>> = by_key.into_values().collect();
        let totals = jobs::run_group(exp, &group, &jobs, opts, &store, &counter);
        summary.phases.unlearn += totals.unlearn_seconds;
        summary.phases.evaluate += totals.eval_seconds;
        summary.phases.cells_wall += t.elapsed().as_secs_f64();
        summary.cells_run += totals.cells;
        summary.models_unlearned += totals.unlearned;
        totals.result?;
    }
    let t = Instant::now();
    crate::report::build(
        std::slice::from_ref(&out_dir),
        &out_dir,
        crate::report::ReportOptions::default(),
        p,
    )?;
    summary.phases.report = t.elapsed().as_secs_f64();
    crate::util::write_atomic(&dir.last_run(), &serde_json::to_vec_pretty(&summary)?)?;
    dir.drop_claims_folder();
    cleanup.armed = false;
    Ok(summary)
}

/// The cells without a sound stored record. Stored records are reused only when sound (they
/// parse, sit under their own id and, where it is known, come from the current original model);
/// a stale one is reported, removed and computed again.
fn pending_cells<'a>(
    cells: &'a [Cell],
    store: &Store,
    originals: &BTreeMap<(usize, usize), String>,
    p: &crate::progress::Progress,
) -> Vec<&'a Cell> {
    let mut pending = vec![];
    for c in cells {
        let original = originals.get(&(c.dataset_idx, c.model_idx));
        match store.stored(&c.id, original.map(String::as_str)) {
            store::Stored::Sound => {}
            store::Stored::Missing => pending.push(c),
            store::Stored::Stale(why) => {
                p.warn(&format!(
                    "cell {} ({}): {why}; computing it again",
                    c.id, c.label
                ));
                store.remove(&c.id);
                pending.push(c);
            }
        }
    }
    pending
}

/// Removes an output folder this run created if the run ends early without any result (no
/// stored cell, no stored unlearned model, no quality-gate record): a failed command leaves the
/// file system as it found it, and a missed gate leaves its figures.
struct Cleanup<'a> {
    dir: &'a Path,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let empty = |sub: &str| {
            std::fs::read_dir(self.dir.join(sub)).map_or(true, |mut d| d.next().is_none())
        };
        let gate = std::fs::read_dir(self.dir).is_ok_and(|mut d| {
            d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("gate-")))
        });
        if self.armed && empty("cells") && empty("unlearned") && !gate {
            std::fs::remove_dir_all(self.dir).ok();
        }
    }
}
