//! The results store: one JSON file per finished cell under `<output>/cells/<id>.json`, written
//! atomically (temporary file, fsync, rename). A killed run leaves either a whole record or none,
//! so a re-run skips exactly the finished cells, never duplicates a row and never loses one.
//! Shards of a grid (`--shard k/n`) write disjoint files; `report` merges any number of folders.

pub mod claim;
mod run_dir;
pub mod sealed;
pub mod verify;

pub use run_dir::{get_or_make, RunDir};

use crate::config::grid::Cell;
use crate::unlearn::trainer::UnlearnLog;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One number: a metric of a set (forget | retain) of one cell, with its protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub cell: String,
    pub experiment: String,
    pub dataset: String,
    pub model: String,
    pub family: String,
    pub method: String,
    pub label: String,
    pub alpha: Option<f64>,
    pub mask: String,
    pub seed: u64,
    pub set: String,
    pub metric: String,
    pub value: f64,
    pub n: u64,
    pub protocol: String,
    /// The value's 95 % bootstrap interval over the images (`metrics.bootstrap`), where one was
    /// computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_low: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_high: Option<f64>,
}

/// Where a record came from.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub tool: String,
    pub protocol_version: u32,
    /// SHA-256 of the original model's weights (safetensors file).
    pub original_weights_sha256: String,
    pub device: String,
    pub threads: usize,
    /// Seconds since the Unix epoch.
    pub finished_at: u64,
}

/// Everything a finished cell produced.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CellRecord {
    pub cell: Cell,
    pub experiment: String,
    pub rows: Vec<Row>,
    pub unlearn: Option<UnlearnLog>,
    pub unlearn_seconds: f64,
    pub eval_seconds: f64,
    pub provenance: Provenance,
}

/// A results folder.
pub struct Store {
    dir: RunDir,
}

impl Store {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: RunDir::new(dir),
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every path of the folder.
    pub fn run_dir(&self) -> &RunDir {
        &self.dir
    }

    fn cell_path(&self, id: &str) -> PathBuf {
        self.dir.cell(id)
    }

    pub fn is_done(&self, id: &str) -> bool {
        self.cell_path(id).is_file()
    }

    /// Whether cell `id` is stored soundly: a record that parses, is stored under its own id and,
    /// where `original` (the SHA-256 of the original model) is known, comes from that model.
    pub fn stored(&self, id: &str, original: Option<&str>) -> Stored {
        let p = self.cell_path(id);
        let Ok(bytes) = std::fs::read(&p) else {
            return Stored::Missing;
        };
        let rec: CellRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            Err(e) => return Stored::Stale(format!("{} is not a cell record ({e})", p.display())),
        };
        if rec.cell.id != id {
            return Stored::Stale(format!(
                "{} holds the record of cell {}, not {id}",
                p.display(),
                rec.cell.id
            ));
        }
        let was = &rec.provenance.original_weights_sha256;
        match original {
            Some(o) if o != was => Stored::Stale(format!(
                "{} was computed from another original model (SHA-256 {}…, now {}…)",
                p.display(),
                &was[..12.min(was.len())],
                &o[..12.min(o.len())]
            )),
            _ => Stored::Sound,
        }
    }

    /// Remove a stale record.
    pub fn remove(&self, id: &str) {
        std::fs::remove_file(self.cell_path(id)).ok();
    }

    /// Write a finished cell (atomic).
    pub fn put(&self, rec: &CellRecord) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(rec)?;
        crate::util::write_atomic(&self.cell_path(&rec.cell.id), &bytes)
    }

    /// Every record of a folder, sorted by cell id.
    pub fn records(&self) -> Result<Vec<CellRecord>> {
        let cells = self.dir.cells();
        if !cells.is_dir() {
            return Ok(vec![]);
        }
        let mut out = vec![];
        let mut entries: Vec<_> = std::fs::read_dir(&cells)
            .with_context(|| format!("listing {}", cells.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.extension().is_some_and(|e| e == "json")
                    && !p
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or(".")
                        .starts_with('.')
            })
            .collect();
        entries.sort();
        for p in entries {
            let text =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let rec: CellRecord = serde_json::from_str(&text).with_context(|| {
                format!(
                    "{} is not a cell record (delete it to recompute the cell)",
                    p.display()
                )
            })?;
            out.push(rec);
        }
        Ok(out)
    }
}

/// What [`Store::stored`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stored {
    Missing,
    Sound,
    /// A record that must not be used, and why.
    Stale(String),
}

/// The cells an experiment expects, written at the start of a run so `report` knows which records
/// belong to the current grid.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GridManifest {
    pub experiment: String,
    pub cells: Vec<Cell>,
    /// Rows the experiment asks for that the grid cannot have, and why (shown under the tables).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

pub fn write_grid(dir: &Path, m: &GridManifest) -> Result<()> {
    crate::util::write_atomic(&RunDir::new(dir).grid(), &serde_json::to_vec_pretty(m)?)
}

pub fn read_grid(dir: &Path) -> Result<Option<GridManifest>> {
    let p = RunDir::new(dir).grid();
    if !p.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    Ok(Some(
        serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?,
    ))
}
