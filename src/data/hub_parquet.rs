//! Hub datasets stored as parquet shards with an encoded-image column (the hub's `{bytes, path}`
//! struct, or plain binary) and an integer label column — the layout of the hub's own parquet
//! copies (ILSVRC/imagenet-1k, the `refs/convert/parquet` branch of any image dataset). Listing,
//! sampling and decoding are [`super::hub_shards`]'s; this file reads the columns.

use super::hub_shards::{HubShards, ShardReader, ShardedRepo};
use anyhow::{Context, Result};
use polars::prelude::{DataType, ParquetReader as PlReader, SerReader};
use serde::{Deserialize, Serialize};
use std::path::Path;

fn main_rev() -> String {
    "main".into()
}
fn image_col() -> String {
    "image".into()
}
fn label_col() -> String {
    "label".into()
}

/// `source: {kind: hub_parquet, ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Dataset repository, e.g. `ILSVRC/imagenet-1k`.
    pub repo: String,
    #[serde(default = "main_rev")]
    pub revision: String,
    /// Shard files of the training split: a pattern with `*` (e.g. `data/train-*.parquet`).
    pub train: String,
    /// Shard files of the evaluation split.
    pub val: String,
    #[serde(default = "image_col")]
    pub image_column: String,
    #[serde(default = "label_col")]
    pub label_column: String,
    /// The class list in label order: a file of the repository (or a local path starting with `/`
    /// or `.`). Text: the first field of each line; `.py` / `.json`: every quoted dictionary key,
    /// in order; `.md` (the dataset card, `README.md`): its `class_label` names.
    pub classes_file: String,
}

struct Columns {
    image: String,
    label: String,
}

impl ShardReader for Columns {
    fn format(&self) -> &'static str {
        "parquet"
    }

    fn index(&self, path: &Path, _shard: &str) -> Result<Vec<(Option<usize>, String)>> {
        let df = PlReader::new(std::fs::File::open(path)?)
            .with_columns(Some(vec![self.label.as_str().into()]))
            .finish()
            .map_err(anyhow::Error::from)
            .with_context(|| format!("reading the label column `{}`", self.label))?;
        let labels = df.column(&self.label)?.cast(&DataType::Int64)?;
        Ok(labels
            .i64()?
            .iter()
            .enumerate()
            .map(|(row, l)| (l.filter(|&l| l >= 0).map(|l| l as usize), row.to_string()))
            .collect())
    }

    fn read(&self, path: &Path, _shard: &str, rows: &[usize]) -> Result<Vec<Vec<u8>>> {
        let df = PlReader::new(std::fs::File::open(path)?)
            .with_columns(Some(vec![self.image.as_str().into()]))
            .finish()
            .map_err(anyhow::Error::from)
            .with_context(|| format!("reading the image column `{}`", self.image))?;
        let col = df.column(&self.image)?.as_materialized_series().clone();
        let bytes = match col.dtype() {
            DataType::Struct(_) => col.struct_()?.field_by_name("bytes")?,
            DataType::Binary => col,
            other => anyhow::bail!(
                "image column `{}` has type {other:?}; expected binary or a struct with `bytes`",
                self.image
            ),
        };
        let bin = bytes.binary()?;
        Ok(rows
            .iter()
            .map(|&r| bin.get(r).map(|b| b.to_vec()).unwrap_or_default())
            .collect())
    }
}

/// Open a parquet-sharded hub dataset.
pub fn open(cfg: &ParquetConfig) -> Result<HubShards> {
    HubShards::open(
        ShardedRepo {
            repo: &cfg.repo,
            revision: &cfg.revision,
            train: &cfg.train,
            val: &cfg.val,
            classes_file: &cfg.classes_file,
        },
        |_| {
            Ok(Box::new(Columns {
                image: cfg.image_column.clone(),
                label: cfg.label_column.clone(),
            }))
        },
    )
}
