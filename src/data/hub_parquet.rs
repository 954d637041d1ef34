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

/// `source: {kind: hub_parquet, ...}`. For the hub copies in [`KNOWN_LAYOUTS`], `repo` alone is
/// enough: the shard patterns and the class list default to that copy's layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetConfig {
    /// Dataset repository, e.g. `ILSVRC/imagenet-1k`.
    pub repo: String,
    #[serde(default = "main_rev")]
    pub revision: String,
    /// Shard files of the training split: a pattern with `*` (e.g. `data/train-*.parquet`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train: Option<String>,
    /// Shard files of the evaluation split.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<String>,
    #[serde(default = "image_col")]
    pub image_column: String,
    #[serde(default = "label_col")]
    pub label_column: String,
    /// The class list in label order: a file of the repository (or a local path starting with `/`
    /// or `.`). Text: the first field of each line; `.py` / `.json`: every quoted dictionary key,
    /// in order; `.md` (the dataset card, `README.md`): its `class_label` names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes_file: Option<String>,
}

/// Layouts of common hub copies: (repo, train shards, val shards, class list). Gated repositories
/// need a token (HF_TOKEN, or `huggingface-cli login`) and the dataset's terms accepted on the
/// hub. Written from the repositories' published file lists; this machine had no hub access to
/// re-check them, so a changed layout shows up as a clear "no file matches" error.
pub const KNOWN_LAYOUTS: [(&str, &str, &str, &str); 2] = [
    // ImageNet-1K (ILSVRC 2012), gated; 294 train / 14 validation shards, wnid-keyed classes.py.
    (
        "ILSVRC/imagenet-1k",
        "data/train-*.parquet",
        "data/validation-*.parquet",
        "classes.py",
    ),
    // Tiny ImageNet (200 ImageNet-1K classes, 64 px); class names on the dataset card.
    (
        "zh-plus/tiny-imagenet",
        "data/train-*.parquet",
        "data/valid-*.parquet",
        "README.md",
    ),
];

impl ParquetConfig {
    /// (train, val, classes_file): as written, else the known layout of `repo`.
    pub fn layout(&self) -> Result<(String, String, String)> {
        let known = KNOWN_LAYOUTS.iter().find(|k| k.0 == self.repo);
        let field = |v: &Option<String>, name: &str, k: Option<&str>| -> Result<String> {
            v.clone().or(k.map(str::to_string)).ok_or_else(|| {
                crate::error::user(format!(
                    "source.{name} is required for {} (its layout is not built in; built in: {})",
                    self.repo,
                    KNOWN_LAYOUTS.map(|k| k.0).join(", ")
                ))
            })
        };
        Ok((
            field(&self.train, "train", known.map(|k| k.1))?,
            field(&self.val, "val", known.map(|k| k.2))?,
            field(&self.classes_file, "classes_file", known.map(|k| k.3))?,
        ))
    }
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
    let (train, val, classes_file) = cfg.layout()?;
    HubShards::open(
        ShardedRepo {
            repo: &cfg.repo,
            revision: &cfg.revision,
            train: &train,
            val: &val,
            classes_file: &classes_file,
        },
        |_| {
            Ok(Box::new(Columns {
                image: cfg.image_column.clone(),
                label: cfg.label_column.clone(),
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_layouts_fill_in_and_unknown_repos_name_the_field() {
        let c: ParquetConfig = serde_yaml::from_str("repo: ILSVRC/imagenet-1k").unwrap();
        let (t, v, k) = c.layout().unwrap();
        assert_eq!(
            (t.as_str(), v.as_str(), k.as_str()),
            (
                "data/train-*.parquet",
                "data/validation-*.parquet",
                "classes.py"
            )
        );
        let c: ParquetConfig =
            serde_yaml::from_str("{repo: ILSVRC/imagenet-1k, val: 'x/*.parquet'}").unwrap();
        assert_eq!(c.layout().unwrap().1, "x/*.parquet");
        let c: ParquetConfig = serde_yaml::from_str("repo: me/mirror").unwrap();
        let e = format!("{:#}", c.layout().unwrap_err());
        assert!(e.contains("source.train is required for me/mirror"), "{e}");
    }
}
