//! Local image folders: class sub-folders (`train/<class>/…`, nested folders allowed) or a label
//! file (`<path> <class>` per line), per split. Class identifiers come from a class-list file
//! (label order) or, without one, are the sorted folder names. Every image's bytes are decoded by
//! content; unreadable files are reported, not dropped silently.

use super::{folder, Draw, Split};
use crate::error::user;
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How a class is read from a file's folder.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassFrom {
    /// The first folder under the split's `dir` (`train/n01443537/images/x.JPEG` → `n01443537`).
    #[default]
    FirstDir,
    /// The whole folder path under `dir`, with a leading `/` (`train/a/abbey/x.jpg` → `/a/abbey`),
    /// as Places class names are written.
    DirPath,
}

/// One split's layout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderSplit {
    /// Folder of the split's images, relative to `root`.
    pub dir: String,
    /// A label file relative to `root`: lines `<path relative to dir> <class>`, the class an
    /// identifier or an index into the class list. Without it, classes come from sub-folders.
    #[serde(default)]
    pub labels: Option<String>,
    /// How sub-folders name classes (without a label file).
    #[serde(default)]
    pub class_from: ClassFrom,
}

/// `source: {kind: image_folder, ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    /// The dataset's folder (a relative path is relative to the experiment file's folder).
    pub root: PathBuf,
    /// A class-list file relative to `root` (first field of each line: the class identifier, in
    /// label order). Without it: the sorted classes found in the train split.
    #[serde(default)]
    pub classes: Option<String>,
    pub train: FolderSplit,
    pub val: FolderSplit,
}

pub struct ImageFolder {
    cfg: FolderConfig,
    classes: Vec<String>,
    /// Per split: class index → files (sorted).
    files: [BTreeMap<usize, Vec<PathBuf>>; 2],
}

fn read_lines(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| user(format!("cannot read {}: {e}", path.display())))?;
    Ok(text
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect())
}

impl ImageFolder {
    pub fn open(cfg: FolderConfig) -> Result<Self> {
        if !cfg.root.is_dir() {
            return Err(user(format!(
                "image folder {} does not exist",
                cfg.root.display()
            )));
        }
        let mut classes: Vec<String> = match &cfg.classes {
            Some(f) => read_lines(&cfg.root.join(f))?
                .into_iter()
                .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
                .collect(),
            None => vec![],
        };
        let fixed = !classes.is_empty();
        let mut raw: [Vec<(String, PathBuf)>; 2] = [vec![], vec![]];
        for (si, split) in [&cfg.train, &cfg.val].into_iter().enumerate() {
            let dir = cfg.root.join(&split.dir);
            if !dir.is_dir() {
                return Err(user(format!(
                    "image folder split {} does not exist",
                    dir.display()
                )));
            }
            raw[si] = match &split.labels {
                Some(lf) => {
                    let lf = cfg.root.join(lf);
                    read_lines(&lf)?
                        .into_iter()
                        .map(|l| {
                            let mut it = l.split_whitespace();
                            let (p, c) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
                            if p.is_empty() || c.is_empty() {
                                return Err(user(format!(
                                    "{}: line `{l}` is not `<path> <class>`",
                                    lf.display()
                                )));
                            }
                            let class = match (c.parse::<usize>(), fixed) {
                                (Ok(i), true) => classes.get(i).cloned().ok_or_else(|| {
                                    user(format!(
                                        "{}: label {i} is beyond the {} classes",
                                        lf.display(),
                                        classes.len()
                                    ))
                                })?,
                                _ => c.to_string(),
                            };
                            Ok((class, dir.join(p)))
                        })
                        .collect::<Result<Vec<_>>>()?
                }
                None => folder::list_images(&dir)?
                    .into_iter()
                    .filter_map(|p| {
                        let rel = p.strip_prefix(&dir).ok()?.parent()?.to_path_buf();
                        let class = match split.class_from {
                            ClassFrom::FirstDir => rel
                                .components()
                                .next()?
                                .as_os_str()
                                .to_string_lossy()
                                .to_string(),
                            ClassFrom::DirPath => format!("/{}", rel.to_string_lossy()),
                        };
                        Some((class, p))
                    })
                    .collect(),
            };
        }
        if !fixed {
            let mut set: Vec<String> = raw[0].iter().map(|(c, _)| c.clone()).collect();
            set.sort();
            set.dedup();
            classes = set;
        }
        let index: std::collections::HashMap<&str, usize> = classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i))
            .collect();
        let mut files: [BTreeMap<usize, Vec<PathBuf>>; 2] = [BTreeMap::new(), BTreeMap::new()];
        for si in 0..2 {
            for (c, p) in &raw[si] {
                // Files of classes outside the class list (e.g. sub-folders the list does not name)
                // are not part of the dataset.
                if let Some(&i) = index.get(c.as_str()) {
                    files[si].entry(i).or_default().push(p.clone());
                }
            }
            for v in files[si].values_mut() {
                v.sort();
            }
        }
        Ok(Self {
            cfg,
            classes,
            files,
        })
    }

    /// How many images class `c` has in `split`.
    pub fn count(&self, c: usize, split: Split) -> usize {
        self.files[split as usize]
            .get(&c)
            .map(|v| v.len())
            .unwrap_or(0)
    }
}

impl super::DataSource for ImageFolder {
    fn describe(&self) -> String {
        format!(
            "image folder {} ({} classes)",
            self.cfg.root.display(),
            self.classes.len()
        )
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn draw(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Draw> {
        let all = self.files[split as usize]
            .get(&class)
            .cloned()
            .unwrap_or_default();
        let available = all.len();
        // A seeded choice of n files, kept in path order.
        let mut idx: Vec<usize> = (0..available).collect();
        idx.shuffle(&mut crate::util::rng(
            "folder-sample",
            crate::util::mix(&[seed, class as u64, split as u64]),
        ));
        idx.truncate(n);
        idx.sort_unstable();
        let chosen: Vec<&PathBuf> = idx.iter().map(|&i| &all[i]).collect();
        let decoded: Vec<(u64, String, Result<image::RgbImage>)> = chosen
            .par_iter()
            .map(|p| {
                let name = p
                    .strip_prefix(&self.cfg.root)
                    .unwrap_or(p)
                    .display()
                    .to_string();
                let r = std::fs::read(p)
                    .with_context(|| format!("reading {}", p.display()))
                    .and_then(|b| folder::decode_rgb_checked(&b));
                (crate::util::fnv1a64(name.as_bytes()), name, r)
            })
            .collect();
        Ok(Draw::from_decoded(class, available, decoded))
    }
}
