//! Hub datasets stored as tar shards (plain, or gzipped: `.tar.gz` / `.tgz`): webdataset copies
//! (`timm/imagenet-1k-wds`: members `<key>.jpg` + `<key>.cls`), or archives of image files whose
//! class is in the file name (`ILSVRC/imagenet-1k`'s `train_images_*.tar.gz`:
//! `n01440764_10026_n01440764.JPEG`) or in a folder (`n01440764/x.JPEG`). Listing, sampling and
//! decoding are [`super::hub_shards`]'s; this file reads the archives.
//!
//! An image member is a file ending in `.jpg`, `.jpeg`, `.png` or `.webp` (any case); its key is
//! its path up to the first `.` of its file name (the webdataset convention).

use super::archive::MemberFn;
use super::hub_shards::{HubShards, ShardReader, ShardedRepo};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

fn main_rev() -> String {
    "main".into()
}
fn cls_ext() -> String {
    "cls".into()
}

/// Where an image's class is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TarLabel {
    /// A sibling member `<key>.<label_ext>` holding the label index as text (webdataset).
    #[default]
    Member,
    /// The file name's last `_`-separated field, a class identifier
    /// (`n01440764_10026_n01440764.JPEG`, `ILSVRC2012_val_00000001_n01751748.JPEG`).
    NameSuffix,
    /// The name of the folder holding the file, a class identifier (`n01440764/x.JPEG`).
    Dir,
}

/// `source: {kind: hub_tar, ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TarConfig {
    /// Dataset repository, e.g. `timm/imagenet-1k-wds`.
    pub repo: String,
    #[serde(default = "main_rev")]
    pub revision: String,
    /// Shard files of the training split: a pattern with `*` (e.g. `imagenet1k-train-*.tar`).
    pub train: String,
    /// Shard files of the evaluation split.
    pub val: String,
    /// Where each image's class is written.
    #[serde(default)]
    pub label: TarLabel,
    /// The extension of the label member (`label: member`).
    #[serde(default = "cls_ext")]
    pub label_ext: String,
    /// The class list in label order: a file of the repository (or a local path starting with `/`
    /// or `.`); see `hub_parquet`'s `classes_file`.
    pub classes_file: String,
}

const IMAGE_EXTS: [&str; 4] = ["jpg", "jpeg", "png", "webp"];

/// (key, extension) of a member path: the key is the path up to the first `.` of the file name.
fn split_key(path: &str) -> Option<(&str, &str)> {
    let base_start = path.rfind('/').map(|i| i + 1).unwrap_or(0);
    let dot = path[base_start..].find('.')? + base_start;
    Some((&path[..dot], &path[dot + 1..]))
}

struct Archive {
    label: TarLabel,
    label_ext: String,
    by_name: HashMap<String, usize>,
}

impl Archive {
    /// Walk the shard's regular-file members: `f(path, bytes)` for each, in archive order.
    /// Only members `want(path)` accepts are read into memory.
    fn walk(
        path: &Path,
        shard: &str,
        want: &dyn Fn(&str) -> bool,
        f: &mut MemberFn<'_>,
    ) -> Result<()> {
        let file = std::fs::File::open(path)?;
        let reader: Box<dyn Read> = if shard.ends_with(".gz") || shard.ends_with(".tgz") {
            Box::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        } else {
            Box::new(std::io::BufReader::new(file))
        };
        super::archive::walk_members(reader, &mut |p| want(p), f)
    }

    fn is_image(path: &str) -> bool {
        // The last extension decides (`x.seg.png` is a PNG).
        split_key(path)
            .and_then(|(_, ext)| ext.rsplit('.').next())
            .is_some_and(|last| IMAGE_EXTS.iter().any(|x| last.eq_ignore_ascii_case(x)))
    }

    /// The class of an image member from its name (`name_suffix`, `dir`).
    fn class_from_name(&self, path: &str) -> Option<usize> {
        match self.label {
            TarLabel::Member => None,
            TarLabel::NameSuffix => {
                let (key, _) = split_key(path)?;
                let base = key.rsplit('/').next()?;
                self.by_name.get(base.rsplit('_').next()?).copied()
            }
            TarLabel::Dir => {
                let dir = path.rsplit('/').nth(1)?;
                self.by_name.get(dir).copied()
            }
        }
    }
}

impl ShardReader for Archive {
    fn format(&self) -> &'static str {
        "tar"
    }

    fn index(&self, path: &Path, shard: &str) -> Result<Vec<(Option<usize>, String)>> {
        let mut images: Vec<(String, String)> = vec![]; // (key, member path)
        let mut labels: HashMap<String, Option<usize>> = HashMap::new();
        let label_ext = self.label_ext.clone();
        let member = self.label == TarLabel::Member;
        Self::walk(
            path,
            shard,
            &|p| member && split_key(p).is_some_and(|(_, e)| e == label_ext),
            &mut |p, bytes| {
                if Self::is_image(p) {
                    let (key, _) = split_key(p).expect("image has an extension");
                    images.push((key.to_string(), p.to_string()));
                } else if let Some(b) = bytes {
                    let (key, _) = split_key(p).expect("label has an extension");
                    let l = String::from_utf8_lossy(&b).trim().parse::<usize>().ok();
                    labels.insert(key.to_string(), l);
                }
                Ok(())
            },
        )?;
        Ok(images
            .into_iter()
            .map(|(key, p)| {
                let class = if member {
                    labels.get(&key).copied().flatten()
                } else {
                    self.class_from_name(&p)
                };
                (class, p)
            })
            .collect())
    }

    fn read(&self, path: &Path, shard: &str, rows: &[usize]) -> Result<Vec<Vec<u8>>> {
        // Image members are numbered in archive order, as `index` numbered them.
        let wanted: HashSet<usize> = rows.iter().copied().collect();
        let mut found: HashMap<usize, Vec<u8>> = HashMap::new();
        let counter = std::cell::Cell::new(0usize);
        let taken = std::cell::Cell::new(None::<usize>);
        Self::walk(
            path,
            shard,
            &|p| {
                if !Self::is_image(p) {
                    return false;
                }
                let i = counter.get();
                counter.set(i + 1);
                let w = wanted.contains(&i);
                taken.set(w.then_some(i));
                w
            },
            &mut |_, bytes| {
                if let (Some(i), Some(b)) = (taken.take(), bytes) {
                    found.insert(i, b);
                }
                Ok(())
            },
        )?;
        // A row may be asked for twice (two draws of one class, e.g. the pre-training set and
        // the membership audit's larger draw): clone, do not take.
        rows.iter()
            .map(|r| {
                found
                    .get(r)
                    .cloned()
                    .with_context(|| format!("image {r} of the index is missing (shard changed?)"))
            })
            .collect()
    }
}

/// Open a tar-sharded hub dataset.
pub fn open(cfg: &TarConfig) -> Result<HubShards> {
    HubShards::open(
        ShardedRepo {
            repo: &cfg.repo,
            revision: &cfg.revision,
            train: &cfg.train,
            val: &cfg.val,
            classes_file: &cfg.classes_file,
        },
        |classes| {
            Ok(Box::new(Archive {
                label: cfg.label,
                label_ext: cfg.label_ext.clone(),
                by_name: classes
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.clone(), i))
                    .collect(),
            }))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_names() {
        assert_eq!(split_key("a/b/x_1.jpg"), Some(("a/b/x_1", "jpg")));
        assert_eq!(split_key("a.b/x.seg.png"), Some(("a.b/x", "seg.png")));
        assert!(Archive::is_image("k.JPEG") && Archive::is_image("k.seg.png"));
        assert!(!Archive::is_image("k.cls") && !Archive::is_image("README"));
        let a = Archive {
            label: TarLabel::NameSuffix,
            label_ext: "cls".into(),
            by_name: [("n01".to_string(), 0), ("n02".to_string(), 1)].into(),
        };
        assert_eq!(a.class_from_name("train/n02_77_n02.JPEG"), Some(1));
        assert_eq!(
            a.class_from_name("ILSVRC2012_val_00000001_n01.JPEG"),
            Some(0)
        );
        assert_eq!(a.class_from_name("x_n99.JPEG"), None);
        let d = Archive {
            label: TarLabel::Dir,
            ..a
        };
        assert_eq!(d.class_from_name("train/n01/x.JPEG"), Some(0));
    }
}
