//! Places-365 from its official archives (`source: {kind: places365}`): MIT CSAIL's 256-px
//! Places365-Standard files at <http://data.csail.mit.edu/places/places365/>, or the same files in
//! a folder on this machine.
//!
//! - `filelist_places365-standard.tar` holds the class list (`categories_places365.txt`,
//!   `/a/airfield 0`) and the labels of both splits (`places365_train_standard.txt`:
//!   `/a/airfield/00000001.jpg 0`; `places365_val.txt`: `Places365_val_00000001.jpg 165`).
//! - `train_256_places365standard.tar` (24 GB, members `data_256/a/airfield/00000001.jpg`) and
//!   `val_256.tar` (501 MB, members `val_256/Places365_val_00000001.jpg`) hold the images.
//!
//! Each archive is downloaded once into `<hub cache>/i2i-unlearn-data/places365/` (resumed, MD5
//! checked against the published hash), then only the classes a run draws from are extracted,
//! one pass per archive for all of them, into a folder per class; a class is marked complete
//! only when its pass ended with the archive's hash checked, so a killed pass is redone and
//! never leaves a class half there. Images are chosen per class by a seeded draw among those the
//! file list names, so the choice needs no image.

use super::archive::{self, Local};
use super::{Draw, Split};
use crate::error::user;
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// The official files' folder.
pub const BASE_URL: &str = "http://data.csail.mit.edu/places/places365/";

/// The MD5 sums MIT CSAIL publishes for its files (the ones torchvision checks too).
const PUBLISHED_MD5: [(&str, &str); 3] = [
    (
        "filelist_places365-standard.tar",
        "35a0585fee1fa656440f3ab298f8479c",
    ),
    (
        "train_256_places365standard.tar",
        "53ca1c756c3d1e7809517cc47c5561c5",
    ),
    ("val_256.tar", "e27b17d8d44f4af9a78502beb927f808"),
];

/// The sizes CSAIL's download page states, for the price before a run (offline).
pub const PUBLISHED_SIZE: [(&str, &str); 2] = [
    ("train_256_places365standard.tar", "24 GB"),
    ("val_256.tar", "501 MB"),
];

const CATEGORIES: &str = "categories_places365.txt";
const LISTS: [&str; 2] = ["places365_train_standard.txt", "places365_val.txt"];

fn base_url() -> String {
    BASE_URL.into()
}
fn train_archive() -> String {
    "train_256_places365standard.tar".into()
}
fn val_archive() -> String {
    "val_256.tar".into()
}
fn filelist() -> String {
    "filelist_places365-standard.tar".into()
}

/// `source: {kind: places365, ...}`; every field has the official default.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Places365Config {
    /// Where the files are: a URL folder, or a folder on this machine holding the archives as
    /// downloaded (a relative path is relative to the experiment file's folder).
    #[serde(default = "base_url")]
    pub base: String,
    /// The training images' archive.
    #[serde(default = "train_archive")]
    pub train: String,
    /// The validation images' archive (the paper's evaluation images).
    #[serde(default = "val_archive")]
    pub val: String,
    /// The archive of class list and label files.
    #[serde(default = "filelist")]
    pub filelist: String,
}

impl Default for Places365Config {
    fn default() -> Self {
        Self {
            base: base_url(),
            train: train_archive(),
            val: val_archive(),
            filelist: filelist(),
        }
    }
}

impl Places365Config {
    /// The archives by role: (what, file name, published MD5).
    pub fn files(&self) -> [(&'static str, &str, Option<&'static str>); 3] {
        let md5 = |n: &str| PUBLISHED_MD5.iter().find(|(f, _)| *f == n).map(|(_, h)| *h);
        [
            ("class list and labels", &self.filelist, md5(&self.filelist)),
            ("train images", &self.train, md5(&self.train)),
            ("val images", &self.val, md5(&self.val)),
        ]
    }

    /// Whether `base` is a URL (else a folder on this machine).
    pub fn is_remote(&self) -> bool {
        self.base.starts_with("http://") || self.base.starts_with("https://")
    }

    /// The folder downloads and extracted classes go to.
    pub fn cache_dir(&self, hub: &crate::hub::HubConfig) -> PathBuf {
        let key = &crate::util::sha256_hex(self.base.trim_end_matches('/').as_bytes())[..12];
        hub.cache_dir
            .join("i2i-unlearn-data")
            .join(format!("places365-{key}"))
    }
}

/// One label list: per class, the listed names (in list order).
type ByClass = Vec<Vec<String>>;

pub struct Places365 {
    cfg: Places365Config,
    cache: PathBuf,
    offline: bool,
    classes: Vec<String>,
    /// Label list text per split, parsed on first use.
    lists: [String; 2],
    parsed: [OnceLock<ByClass>; 2],
    /// One extraction pass at a time.
    extracting: Mutex<()>,
}

/// `name label` lines.
fn parse_list(text: &str, n_classes: usize) -> Result<ByClass> {
    let mut out = vec![vec![]; n_classes];
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        if l.is_empty() {
            continue;
        }
        let (name, label) = l
            .rsplit_once(char::is_whitespace)
            .with_context(|| format!("line {}: `{l}` is not `name label`", i + 1))?;
        let c: usize = label
            .trim()
            .parse()
            .ok()
            .filter(|&c| c < n_classes)
            .with_context(|| format!("line {}: label `{label}` is not a class index", i + 1))?;
        out[c].push(name.trim().trim_start_matches('/').to_string());
    }
    Ok(out)
}

impl Places365 {
    pub fn open(cfg: Places365Config) -> Result<Self> {
        let hub = crate::hub::HubConfig::from_env();
        let cache = cfg.cache_dir(&hub);
        let me = Self {
            cache,
            offline: hub.offline,
            classes: vec![],
            lists: Default::default(),
            parsed: Default::default(),
            extracting: Mutex::new(()),
            cfg,
        };
        me.load_lists()
    }

    /// The label files, from their extracted copies or from the file-list archive.
    fn load_lists(mut self) -> Result<Self> {
        let dir = self.cache.join("filelist");
        let names = [CATEGORIES, LISTS[0], LISTS[1]];
        if !names.iter().all(|n| dir.join(n).is_file()) {
            let a = self.archive(0)?;
            let found = archive::read_text_members(&a, &names)?;
            for n in names {
                let (_, text) = found
                    .iter()
                    .find(|(f, _)| f == n)
                    .ok_or_else(|| user(format!("{}: has no member {n}", a.path.display())))?;
                crate::util::write_atomic(&dir.join(n), text.as_bytes())?;
            }
        }
        let read =
            |n: &str| std::fs::read_to_string(dir.join(n)).with_context(|| format!("reading {n}"));
        self.classes = super::hub_shards::parse_class_list(CATEGORIES, &read(CATEGORIES)?);
        if self.classes.is_empty() {
            return Err(user(format!("{CATEGORIES}: no classes")));
        }
        self.lists = [read(LISTS[0])?, read(LISTS[1])?];
        Ok(self)
    }

    /// Archive `i` of [`Places365Config::files`], on this machine (downloaded if need be).
    fn archive(&self, i: usize) -> Result<Local> {
        let (what, name, md5) = self.cfg.files()[i];
        let a = archive::resolve(
            &self.cfg.base,
            name,
            md5,
            &self.cache.join("archives"),
            self.offline,
        )
        .with_context(|| format!("Places-365 {what}"))?;
        if let Some(w) = &a.warning {
            eprintln!("warning: {w}");
        }
        Ok(a)
    }

    fn list(&self, split: Split) -> Result<&ByClass> {
        let s = split as usize;
        if let Some(l) = self.parsed[s].get() {
            return Ok(l);
        }
        let l = parse_list(&self.lists[s], self.classes.len())
            .with_context(|| format!("reading {}", LISTS[s]))?;
        Ok(self.parsed[s].get_or_init(|| l))
    }

    fn split_dir(&self, split: Split) -> PathBuf {
        self.cache.join(["train", "val"][split as usize])
    }

    fn done_marker(&self, split: Split, class: usize) -> PathBuf {
        self.split_dir(split).join(format!("{class:03}.done"))
    }

    fn image_path(&self, split: Split, class: usize, name: &str) -> PathBuf {
        let base = name.rsplit('/').next().unwrap_or(name);
        self.split_dir(split).join(format!("{class:03}")).join(base)
    }

    /// Extract every listed image of `classes` from `split`'s archive, in one pass, unless
    /// already there.
    fn ensure(&self, split: Split, classes: &[usize]) -> Result<()> {
        let _one = self.extracting.lock().expect("extraction lock");
        let mut todo: Vec<usize> = classes
            .iter()
            .copied()
            .filter(|&c| !self.done_marker(split, c).is_file())
            .collect();
        todo.sort_unstable();
        todo.dedup();
        if todo.is_empty() {
            return Ok(());
        }
        let list = self.list(split)?;
        let mut wanted: HashMap<&str, usize> = HashMap::new();
        for &c in &todo {
            for n in &list[c] {
                wanted.insert(n.as_str(), c);
            }
        }
        let a = self.archive(1 + split as usize)?;
        eprintln!(
            "extracting {} classes ({} images) of {}",
            todo.len(),
            wanted.len(),
            a.path.display()
        );
        let mut found = vec![0usize; self.classes.len()];
        archive::extract(&a, &mut |member| {
            // `data_256/a/airfield/1.jpg` is listed as `/a/airfield/1.jpg`: try the member's
            // path, then without its first folder.
            let hit = wanted.get(member).map(|&c| (c, member)).or_else(|| {
                let (_, rest) = member.split_once('/')?;
                wanted.get(rest).map(|&c| (c, rest))
            })?;
            found[hit.0] += 1;
            Some(self.image_path(split, hit.0, hit.1))
        })?;
        for &c in &todo {
            if found[c] == 0 && !list[c].is_empty() {
                return Err(user(format!(
                    "{}: none of the {} images {} lists for class {} is in it: is it the Places365-Standard 256-px archive?",
                    a.path.display(),
                    list[c].len(),
                    LISTS[split as usize],
                    self.classes[c]
                )));
            }
            let body = format!(
                "{{\"listed\": {}, \"extracted\": {}}}\n",
                list[c].len(),
                found[c]
            );
            crate::util::write_atomic(&self.done_marker(split, c), body.as_bytes())?;
        }
        Ok(())
    }

    fn ensure_needs(&self, needs: &[(usize, Split, usize)]) -> Result<()> {
        for split in [Split::Train, Split::Val] {
            let cs: Vec<usize> = needs
                .iter()
                .filter(|(_, s, n)| *s == split && *n > 0)
                .map(|(c, _, _)| *c)
                .collect();
            self.ensure(split, &cs)?;
        }
        Ok(())
    }
}

impl super::DataSource for Places365 {
    fn describe(&self) -> String {
        let cache = self.cache.join("archives");
        let checks: Vec<String> = self
            .cfg
            .files()
            .iter()
            .map(|(_, name, md5)| {
                let e = archive::expected(&self.cfg.base, name, *md5, &cache);
                format!("{name}: {}", e.describe())
            })
            .collect();
        format!(
            "Places-365 official archives at {} ({} classes; {})",
            self.cfg.base,
            self.classes.len(),
            checks.join("; ")
        )
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn prepare(&self, needs: &[(usize, Split, usize)], _seed: u64) -> Result<()> {
        self.ensure_needs(needs)
    }

    fn download(&self, needs: &[(usize, Split, usize)]) -> Result<()> {
        self.ensure_needs(needs)
    }

    fn draw(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Draw> {
        self.ensure(split, &[class])?;
        let names = &self.list(split)?[class];
        let mut order: Vec<usize> = (0..names.len()).collect();
        order.shuffle(&mut crate::util::rng(
            "places365-sample",
            crate::util::mix(&[seed, class as u64, split as u64]),
        ));
        order.truncate(n);
        let decoded: Vec<(u64, String, Result<image::RgbImage>)> = order
            .par_iter()
            .map(|&i| {
                let name = &names[i];
                let id = crate::util::fnv1a64(format!("places365:{name}").as_bytes());
                let path = self.image_path(split, class, name);
                let r = read_image(&path);
                (id, name.clone(), r)
            })
            .collect();
        Ok(Draw::from_decoded(class, names.len(), decoded))
    }
}

fn read_image(path: &Path) -> Result<image::RgbImage> {
    let b = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("listed but not in the archive"),
        _ => anyhow::anyhow!("{}: {e}", path.display()),
    })?;
    super::folder::decode_rgb_checked(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_and_defaults() {
        let l = parse_list("/a/airfield/1.jpg 0\n/b/bus/indoor/2.jpg 1\n\nx.jpg 1\n", 2).unwrap();
        assert_eq!(l[0], ["a/airfield/1.jpg"]);
        assert_eq!(l[1], ["b/bus/indoor/2.jpg", "x.jpg"]);
        let e = parse_list("x.jpg 7\n", 2).unwrap_err();
        assert!(format!("{e:#}").contains("line 1"), "{e:#}");
        let c = Places365Config::default();
        assert!(c.is_remote());
        assert!(c.files().iter().all(|(_, _, md5)| md5.is_some()));
        let local = Places365Config {
            base: "/data/places".into(),
            ..c
        };
        assert!(!local.is_remote());
    }
}
