//! `i2i-unlearn verify DIR`: re-checks everything a results folder's tables rest on and lists
//! what is stale or corrupt.
//!
//! - the manifests (`grid.json`, `experiment.yaml`, `data-*.json`, `last_run.json`) parse;
//! - every cell record parses, is stored under its own id, and comes from the same original
//!   model as the other records of its (dataset, model) pair (the majority's SHA-256);
//! - every unlearned model matches its seal, its log names its own key and the original model
//!   of its cells;
//! - every cache entry the folder used (`uses/`: pre-trainings, domain extractors) is still there
//!   and matches both the SHA-256 recorded when it was used and its own seal.
//!
//! Cells of the grid without a record are listed as missing (an unfinished run): not a fault.

use super::{sealed, CellRecord, RunDir, Store};
use crate::unlearn::trainer::UnlearnLog;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

/// What `verify` found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// Files checked.
    pub checked: usize,
    /// Stale or corrupt files, one line each.
    pub problems: Vec<String>,
    /// Cells of the grid without a record.
    pub missing: Vec<String>,
}

impl Verdict {
    pub fn sound(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Check the results folder `dir`.
pub fn verify(dir: &Path) -> Result<Verdict> {
    let rd = RunDir::new(dir);
    let mut v = Verdict::default();
    manifests(&rd, &mut v);
    let grid = super::read_grid(dir).ok().flatten();
    let mut records = cell_records(&rd, &mut v);
    // Records of an earlier grid are not reported; they are not compared either.
    if let Some(g) = &grid {
        let ids: std::collections::BTreeSet<&str> = g.cells.iter().map(|c| c.id.as_str()).collect();
        records.retain(|id, _| ids.contains(id.as_str()));
    }
    // The original model of each (dataset, model) pair: the majority of its records.
    let mut by_pair: BTreeMap<(String, String), BTreeMap<String, Vec<String>>> = BTreeMap::new();
    for r in records.values() {
        by_pair
            .entry((r.cell.dataset.clone(), r.cell.model.clone()))
            .or_default()
            .entry(r.provenance.original_weights_sha256.clone())
            .or_default()
            .push(r.cell.id.clone());
    }
    let mut original: BTreeMap<(String, String), String> = BTreeMap::new();
    for (pair, shas) in &by_pair {
        let (main, _) = shas
            .iter()
            .max_by_key(|(_, ids)| ids.len())
            .expect("one at least");
        original.insert(pair.clone(), main.clone());
        for (sha, ids) in shas.iter().filter(|(s, _)| *s != main) {
            for id in ids {
                v.problems.push(format!(
                    "{}: computed from another original model (SHA-256 {}…) than the other cells of {}/{} ({}…)",
                    rd.cell(id).display(),
                    short(sha),
                    pair.0,
                    pair.1,
                    short(main)
                ));
            }
        }
    }
    if let Some(g) = &grid {
        for c in &g.cells {
            if !records.contains_key(&c.id) {
                v.missing.push(format!(
                    "{} ({}, {}, {})",
                    c.id, c.dataset, c.model, c.label
                ));
            }
        }
    }
    // Unlearned models: the pair each key belongs to, from the grid's cells.
    let pair_of: BTreeMap<String, (String, String)> = grid
        .iter()
        .flat_map(|g| &g.cells)
        .map(|c| (c.unlearn_key.clone(), (c.dataset.clone(), c.model.clone())))
        .collect();
    unlearned(&rd, &pair_of, &original, &mut v);
    uses(&rd, &mut v);
    Ok(v)
}

fn short(s: &str) -> &str {
    &s[..12.min(s.len())]
}

fn manifests(rd: &RunDir, v: &mut Verdict) {
    let mut json = vec![rd.grid(), rd.last_run()];
    if let Ok(entries) = std::fs::read_dir(rd.path()) {
        let mut data: Vec<_> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                let n = crate::weights::checkpoint::file_name(p);
                n.starts_with("data-") && n.ends_with(".json")
            })
            .collect();
        data.sort();
        json.extend(data);
    }
    for p in json.into_iter().filter(|p| p.exists()) {
        v.checked += 1;
        let ok = std::fs::read(&p)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        if ok.is_none() {
            v.problems.push(format!("{}: not valid JSON", p.display()));
        }
    }
    if !rd.grid().exists() {
        v.problems.push(format!(
            "{}: missing (not a results folder, or the run never started)",
            rd.grid().display()
        ));
    }
    let exp = rd.experiment();
    if exp.exists() {
        v.checked += 1;
        let text = std::fs::read_to_string(&exp).unwrap_or_default();
        if crate::config::parse(&text, &exp.display().to_string()).is_err() {
            v.problems
                .push(format!("{}: not a valid experiment", exp.display()));
        }
    }
}

/// Every record that parses and is stored under its own id, by id; the rest are problems.
fn cell_records(rd: &RunDir, v: &mut Verdict) -> BTreeMap<String, CellRecord> {
    let mut out = BTreeMap::new();
    let mut paths: Vec<_> = std::fs::read_dir(rd.cells())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter(|p| !crate::weights::checkpoint::file_name(p).starts_with('.'))
        .collect();
    paths.sort();
    let store = Store::new(rd.path());
    for p in paths {
        v.checked += 1;
        let id = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match store.stored(&id, None) {
            super::Stored::Sound => {
                if let Some(r) = std::fs::read(&p)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<CellRecord>(&b).ok())
                {
                    out.insert(id, r);
                }
            }
            super::Stored::Stale(why) => v.problems.push(why),
            super::Stored::Missing => {}
        }
    }
    out
}

fn unlearned(
    rd: &RunDir,
    pair_of: &BTreeMap<String, (String, String)>,
    original: &BTreeMap<(String, String), String>,
    v: &mut Verdict,
) {
    let mut models: Vec<_> = std::fs::read_dir(rd.path().join("unlearned"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    models.sort();
    for w in models {
        v.checked += 1;
        let key = w
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(why) = sealed::verify(&w) {
            v.problems.push(why);
        }
        let (_, lpath) = rd.unlearned(&key);
        let log: Option<UnlearnLog> = std::fs::read(&lpath)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let Some(log) = log else {
            v.problems.push(format!(
                "{}: missing or not an unlearning log (its model {} cannot be reused)",
                lpath.display(),
                w.display()
            ));
            continue;
        };
        if !log.key.is_empty() && log.key != key {
            v.problems.push(format!(
                "{}: holds the unlearned model {}, not {key}",
                lpath.display(),
                log.key
            ));
        }
        let want = pair_of.get(&key).and_then(|p| original.get(p));
        if let Some(want) = want {
            if !log.original_sha256.is_empty() && &log.original_sha256 != want {
                v.problems.push(format!(
                    "{}: unlearned from another original model (SHA-256 {}…) than its cells' ({}…)",
                    w.display(),
                    short(&log.original_sha256),
                    short(want)
                ));
            }
        }
    }
}

fn uses(rd: &RunDir, v: &mut Verdict) {
    let mut entries: Vec<_> = std::fs::read_dir(rd.path().join("uses"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for u in entries {
        v.checked += 1;
        let text = std::fs::read_to_string(&u).unwrap_or_default();
        let Some((sha, path)) = text.trim_end().split_once("  ") else {
            v.problems
                .push(format!("{}: not a `SHA-256  PATH` line", u.display()));
            continue;
        };
        let path = Path::new(path);
        if !path.is_file() {
            v.problems.push(format!(
                "{}: the cache entry it used is gone (a re-run computes it again; the stored results keep the old one's numbers)",
                path.display()
            ));
            continue;
        }
        match crate::util::sha256_file(path) {
            Ok(got) if got == sha => {
                if let Some(why) = sealed::verify(path) {
                    v.problems.push(why);
                }
            }
            Ok(got) => v.problems.push(format!(
                "{}: SHA-256 {}… differs from the {}… these results were computed with",
                path.display(),
                short(&got),
                short(sha)
            )),
            Err(e) => v.problems.push(format!("{}: {e:#}", path.display())),
        }
    }
}
