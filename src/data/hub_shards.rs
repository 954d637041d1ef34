//! A dataset repository on the Hugging Face hub stored as shards of labelled, encoded images —
//! parquet files ([`super::hub_parquet`]) or tar archives ([`super::hub_tar`]). This file holds
//! what both share: listing the shards, reading the class list, choosing images, decoding.
//!
//! Shards are downloaded (resumed, verified) through [`crate::hub::Hub`] into the shared cache,
//! in sorted order and only until every class the run needs has enough images: with
//! class-sorted shards that is only the shards holding those classes; with shuffled shards, as
//! many as it takes. Images are chosen per class by a seeded draw among those found.

use super::{Draw, Split};
use crate::error::user;
use crate::hub::{Hub, RepoRef};
use anyhow::{Context, Result};
use rand::seq::SliceRandom;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One shard format: what a shard's images are labelled, and their bytes.
pub trait ShardReader: Send + Sync {
    /// `parquet`, `tar`: for logs.
    fn format(&self) -> &'static str;
    /// Every image of the shard, in shard order: its class (an index into the class list; None
    /// when it has no label or one outside the list) and its name within the shard (for
    /// manifests: a row number or a member path).
    fn index(&self, path: &Path, shard: &str) -> Result<Vec<(Option<usize>, String)>>;
    /// The encoded bytes of the images at `rows` (positions in [`ShardReader::index`]'s order,
    /// ascending), in that order.
    fn read(&self, path: &Path, shard: &str, rows: &[usize]) -> Result<Vec<Vec<u8>>>;
}

/// `*` matches any run of characters.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s.ends_with(last) || s.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
}

/// Class identifiers from a class-list file's text.
/// `.md` (a hub dataset card): the `class_label` names of the card's YAML header, in label order.
pub fn parse_class_list(name: &str, text: &str) -> Vec<String> {
    if name.ends_with(".md") {
        card_class_names(text)
    } else if name.ends_with(".py") || name.ends_with(".json") {
        // Quoted strings followed by `:` (dictionary keys), in order.
        let mut out = vec![];
        let b = text.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'"' || b[i] == b'\'' {
                let q = b[i];
                if let Some(len) = text[i + 1..].find(q as char) {
                    let tok = &text[i + 1..i + 1 + len];
                    let after = text[i + 2 + len..].trim_start();
                    if after.starts_with(':') {
                        out.push(tok.to_string());
                    }
                    i += len + 2;
                    continue;
                }
            }
            i += 1;
        }
        out
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect()
    }
}

/// The first `class_label: names:` of a dataset card's YAML header (`'0': n01440764`, …, or a
/// list), ordered by label.
fn card_class_names(text: &str) -> Vec<String> {
    let body = text.trim_start_matches('\u{feff}');
    let Some(rest) = body.strip_prefix("---") else {
        return vec![];
    };
    let Some(end) = rest.find("\n---") else {
        return vec![];
    };
    let Ok(y) = serde_yaml::from_str::<serde_yaml::Value>(&rest[..end]) else {
        return vec![];
    };
    fn find(v: &serde_yaml::Value) -> Option<Vec<String>> {
        use serde_yaml::Value;
        match v {
            Value::Mapping(m) => {
                if let Some(names) = m
                    .get("class_label")
                    .and_then(|c| c.get("names"))
                    .filter(|n| !n.is_null())
                {
                    let scalar = |v: &Value| match v {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    };
                    return match names {
                        Value::Sequence(s) => s.iter().map(scalar).collect(),
                        Value::Mapping(m) => {
                            let mut pairs: Vec<(usize, String)> = m
                                .iter()
                                .filter_map(|(k, v)| {
                                    let k = scalar(k)?.parse().ok()?;
                                    Some((k, scalar(v)?))
                                })
                                .collect();
                            pairs.sort();
                            Some(pairs.into_iter().map(|(_, v)| v).collect())
                        }
                        _ => None,
                    };
                }
                m.values().find_map(find)
            }
            Value::Sequence(s) => s.iter().find_map(find),
            _ => None,
        }
    }
    find(&y).unwrap_or_default()
}

/// A prepared draw's images: (id, name, encoded bytes).
type Encoded = Vec<(u64, String, Vec<u8>)>;

#[derive(Default)]
struct State {
    /// Shards scanned so far, per split.
    scanned: [usize; 2],
    /// Local paths of downloaded shards, per split and shard index.
    paths: HashMap<(usize, usize), PathBuf>,
    /// class → (shard, row) of every image seen, per split.
    index: [BTreeMap<usize, Vec<(usize, usize)>>; 2],
    /// Names of the images of scanned shards: (split, shard) → name per row.
    names: HashMap<(usize, usize), Vec<String>>,
    /// Prepared draws: (split, class, n, seed) → (id, name, bytes).
    ready: HashMap<(usize, usize, usize, u64), Encoded>,
}

/// Where a sharded hub dataset is: the fields every shard format shares.
pub struct ShardedRepo<'a> {
    pub repo: &'a str,
    pub revision: &'a str,
    pub train: &'a str,
    pub val: &'a str,
    pub classes_file: &'a str,
}

pub struct HubShards {
    hub: Hub,
    repo: RepoRef,
    classes: Vec<String>,
    shards: [Vec<String>; 2],
    reader: Box<dyn ShardReader>,
    state: Mutex<State>,
}

impl HubShards {
    /// List the shards, read the class list, then build the reader from it.
    pub fn open(
        at: ShardedRepo<'_>,
        reader: impl FnOnce(&[String]) -> Result<Box<dyn ShardReader>>,
    ) -> Result<Self> {
        let hub = Hub::from_env()?;
        let repo = RepoRef::dataset(at.repo, at.revision);
        let files = hub.list_files(&repo).map_err(crate::hub::to_anyhow)?;
        let pick = |pat: &str| -> Result<Vec<String>> {
            let v: Vec<String> = files
                .iter()
                .filter(|f| glob_match(pat, f))
                .cloned()
                .collect();
            if v.is_empty() {
                return Err(user(format!(
                    "{repo}: no file matches `{pat}` (it has {} files)",
                    files.len()
                )));
            }
            Ok(v)
        };
        let shards = [pick(at.train)?, pick(at.val)?];
        // A path starting with `/` or `.` is on this machine; anything else is a repository file
        // (so `README.md` is the dataset card, never the working directory's README).
        let list_path = if at.classes_file.starts_with(['/', '.']) {
            let local = PathBuf::from(at.classes_file);
            if !local.is_file() {
                return Err(user(format!(
                    "classes_file {} does not exist",
                    local.display()
                )));
            }
            local
        } else {
            hub.file(&repo, at.classes_file)
                .map_err(crate::hub::to_anyhow)?
        };
        let text = std::fs::read_to_string(&list_path)
            .with_context(|| format!("reading {}", list_path.display()))?;
        let classes = parse_class_list(at.classes_file, &text);
        if classes.is_empty() {
            return Err(user(format!(
                "{}: no class identifiers found",
                at.classes_file
            )));
        }
        let reader = reader(&classes)?;
        Ok(Self {
            hub,
            repo,
            classes,
            shards,
            reader,
            state: Mutex::new(State::default()),
        })
    }

    fn shard_path(&self, st: &mut State, split: usize, shard: usize) -> Result<PathBuf> {
        if let Some(p) = st.paths.get(&(split, shard)) {
            return Ok(p.clone());
        }
        let p = self
            .hub
            .file(&self.repo, &self.shards[split][shard])
            .map_err(crate::hub::to_anyhow)?;
        st.paths.insert((split, shard), p.clone());
        Ok(p)
    }

    /// Download and index the next shard of `split`; false when none is left.
    fn scan_next(&self, st: &mut State, split: usize) -> Result<bool> {
        let shard = st.scanned[split];
        if shard >= self.shards[split].len() {
            return Ok(false);
        }
        let path = self.shard_path(st, split, shard)?;
        let name = &self.shards[split][shard];
        let rows = self
            .reader
            .index(&path, name)
            .with_context(|| format!("indexing {} shard {name}", self.reader.format()))?;
        let mut names = Vec::with_capacity(rows.len());
        for (row, (class, n)) in rows.into_iter().enumerate() {
            if let Some(c) = class.filter(|&c| c < self.classes.len()) {
                st.index[split].entry(c).or_default().push((shard, row));
            }
            names.push(n);
        }
        st.names.insert((split, shard), names);
        st.scanned[split] += 1;
        Ok(true)
    }

    /// Download and index shards of `split` until every class of `needs` in that split has its
    /// `n` images (or the shards run out); returns that split's (class, n) pairs. Every image a
    /// seeded draw can choose then lies in a downloaded shard.
    fn scan_for(
        &self,
        st: &mut State,
        needs: &[(usize, Split, usize)],
        split: usize,
    ) -> Result<Vec<(usize, usize)>> {
        let mine: Vec<(usize, usize)> = needs
            .iter()
            .filter(|(_, s, _)| *s as usize == split)
            .map(|(c, _, n)| (*c, *n))
            .collect();
        while mine
            .iter()
            .any(|(c, n)| st.index[split].get(c).map(|v| v.len()).unwrap_or(0) < *n)
        {
            if !self.scan_next(st, split)? {
                break;
            }
        }
        Ok(mine)
    }

    /// Make the draws `needs` (class, split, n) ready: index shards until every class has
    /// `n` images (or the shards run out), choose the images, read their bytes shard by shard.
    fn prepare_all(&self, needs: &[(usize, Split, usize)], seed: u64) -> Result<()> {
        let mut st = self.state.lock().expect("state lock");
        for split in 0..2 {
            let mine = self.scan_for(&mut st, needs, split)?;
            // Seeded choice per class among the images found.
            let mut by_shard: BTreeMap<usize, Vec<(usize, usize, usize)>> = BTreeMap::new(); // shard → (row, class, n)
            for &(c, n) in &mine {
                if st.ready.contains_key(&(split, c, n, seed)) {
                    continue;
                }
                let mut rows = st.index[split].get(&c).cloned().unwrap_or_default();
                // The stream name predates the tar format; kept so parquet draws stay the same.
                rows.shuffle(&mut crate::util::rng(
                    "parquet-sample",
                    crate::util::mix(&[seed, c as u64, split as u64]),
                ));
                rows.truncate(n);
                rows.sort_unstable();
                for &(shard, row) in &rows {
                    by_shard.entry(shard).or_default().push((row, c, n));
                }
                st.ready.insert((split, c, n, seed), vec![]);
            }
            for (shard, mut rows) in by_shard {
                rows.sort_unstable();
                let path = self.shard_path(&mut st, split, shard)?;
                let shard_name = &self.shards[split][shard];
                let idx: Vec<usize> = rows.iter().map(|r| r.0).collect();
                let bytes = self.reader.read(&path, shard_name, &idx).with_context(|| {
                    format!("reading {} shard {shard_name}", self.reader.format())
                })?;
                anyhow::ensure!(
                    bytes.len() == rows.len(),
                    "{shard_name}: {} of {} images read",
                    bytes.len(),
                    rows.len()
                );
                for ((row, c, n), b) in rows.into_iter().zip(bytes) {
                    let name = format!("{shard_name}#{}", st.names[&(split, shard)][row]);
                    st.ready
                        .get_mut(&(split, c, n, seed))
                        .expect("inserted")
                        .push((crate::util::fnv1a64(name.as_bytes()), name, b));
                }
            }
        }
        Ok(())
    }
}

impl super::DataSource for HubShards {
    fn describe(&self) -> String {
        format!(
            "hub dataset {} ({} classes; {} + {} {} shards)",
            self.repo,
            self.classes.len(),
            self.shards[0].len(),
            self.shards[1].len(),
            self.reader.format()
        )
    }

    fn classes(&self) -> Vec<String> {
        self.classes.clone()
    }

    fn prepare(&self, needs: &[(usize, Split, usize)], seed: u64) -> Result<()> {
        self.prepare_all(needs, seed)
    }

    fn download(&self, needs: &[(usize, Split, usize)]) -> Result<()> {
        let mut st = self.state.lock().expect("state lock");
        for split in 0..2 {
            self.scan_for(&mut st, needs, split)?;
        }
        Ok(())
    }

    fn draw(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Draw> {
        let key = (split as usize, class, n, seed);
        if !self
            .state
            .lock()
            .expect("state lock")
            .ready
            .contains_key(&key)
        {
            self.prepare_all(&[(class, split, n)], seed)?;
        }
        let (items, available) = {
            let st = self.state.lock().expect("state lock");
            (
                st.ready[&key].clone(),
                st.index[split as usize]
                    .get(&class)
                    .map(|v| v.len())
                    .unwrap_or(0),
            )
        };
        let decoded: Vec<(u64, String, Result<image::RgbImage>)> = items
            .into_par_iter()
            .map(|(id, name, b)| {
                let r = super::folder::decode_rgb_checked(&b);
                (id, name, r)
            })
            .collect();
        Ok(Draw::from_decoded(class, available, decoded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dataset_card_class_names() {
        let card = "---\nlicense: x\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: label\n    dtype:\n      class_label:\n        names:\n          '0': n01443537\n          '2': n01629819\n          '1': goldfish, Carassius auratus\n---\n# Card\n";
        assert_eq!(
            parse_class_list("README.md", card),
            ["n01443537", "goldfish, Carassius auratus", "n01629819"]
        );
        assert!(parse_class_list("README.md", "# no header").is_empty());
    }

    #[test]
    fn globs_and_class_lists() {
        assert!(glob_match(
            "data/train-*.parquet",
            "data/train-00001-of-00004.parquet"
        ));
        assert!(!glob_match(
            "data/train-*.parquet",
            "data/validation-0.parquet"
        ));
        assert!(glob_match("*", "x"));
        assert!(glob_match("a*b*c", "aXbYc") && !glob_match("a*b*c", "aXc"));
        let py = "IMAGENET2012_CLASSES = OrderedDict(\n    {\n        \"n01440764\": \"tench, Tinca tinca\",\n        'n01443537': 'goldfish',\n    }\n)\n";
        assert_eq!(
            parse_class_list("classes.py", py),
            ["n01440764", "n01443537"]
        );
        assert_eq!(
            parse_class_list("c.txt", "/a/abbey 0\n/b/barn 1\n"),
            ["/a/abbey", "/b/barn"]
        );
    }
}
