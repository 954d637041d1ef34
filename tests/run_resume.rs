//! End to end through the binary: a run writes every file, a re-run skips finished cells, a killed
//! run resumes without losing or duplicating rows, shards merge into the same rows, and the same
//! seed gives the same numbers.

mod common;
use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

fn rows_by_key(dir: &Path) -> BTreeMap<(String, String, String), String> {
    let rows = csv_rows(&dir.join("runs.csv"));
    let n = rows.len();
    let map: BTreeMap<_, _> = rows
        .into_iter()
        .map(|(c, s, m, v)| ((c, s, m), v))
        .collect();
    assert_eq!(map.len(), n, "duplicate rows in {}", dir.display());
    map
}

fn cell_files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
        .collect()
}

#[test]
fn run_skip_determinism_and_shards() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let p = write(d.path(), "t.yaml", &tiny_yaml("t", ""));
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = d.path().join("results/t");
    for f in [
        "runs.parquet",
        "runs.csv",
        "table.md",
        "table.tex",
        "grid.json",
        "experiment.yaml",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    assert_eq!(cell_files(&out).len(), 8);
    let rows = rows_by_key(&out);
    // Per cell: fid, is, is_split_std, clip and the audit's mia_auc on each of retain and forget.
    assert_eq!(rows.len(), 8 * 10);
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    for label in [
        "Original",
        "Max Loss",
        "Ours",
        "Ours (proxy D_R)",
        "D_R FID (domain) ↓",
        "D_F FID (domain) ↑",
        "D_R cos (domain) ↑",
        "domain extractor",
    ] {
        assert!(md.contains(label), "{label} missing in table.md:\n{md}");
    }
    assert!(
        !md.contains("D_R CLIP"),
        "a column the domain extractor computed must not be called CLIP"
    );
    assert!(
        !md.contains("Inception,"),
        "the domain extractor must not be called Inception"
    );
    assert!(std::fs::read_dir(out.join("charts")).unwrap().count() >= 3);
    // One sheet per cell, named for a person: samples/<dataset>_<model>/<method>_<mask>_a<α>_s<seed>.png.
    let sheets = out.join("samples").join("tex_mae");
    assert!(std::fs::read_dir(&sheets).unwrap().count() == 8);
    assert!(sheets.join("ours-proxy_center-2_a0.25_s1.png").is_file());
    assert!(sheets.join("original_center-2_s0.png").is_file());
    assert!(
        !out.join("claims").exists(),
        "a finished run leaves no claims/ folder"
    );

    // Re-run: nothing to do, nothing changes.
    let before = std::fs::read(out.join("runs.csv")).unwrap();
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("8 already done, 0 to run"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read(out.join("runs.csv")).unwrap(), before);

    // Same seed, fresh output folder and cache: identical numbers.
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "again"],
        d.path(),
        &d.path().join("cache2"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(rows_by_key(&d.path().join("again")), rows);

    // Two shards into two folders, merged by `report`, give the same rows.
    for (k, dir) in [("1/2", "s1"), ("2/2", "s2")] {
        let o = run(
            &["run", p.to_str().unwrap(), "--shard", k, "--output", dir],
            d.path(),
            &cache,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let (a, b) = (
        cell_files(&d.path().join("s1")),
        cell_files(&d.path().join("s2")),
    );
    assert!(a.is_disjoint(&b) && a.len() + b.len() == 8 && !a.is_empty() && !b.is_empty());
    let o = run(&["report", "s1", "s2", "--out", "merged"], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(rows_by_key(&d.path().join("merged")), rows);
}

#[test]
fn killed_run_resumes_without_loss_or_duplicates() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    // Slow enough per cell to be killed in the middle of the grid.
    let y = tiny_yaml("k", "").replace("unlearn: {steps: 4,", "unlearn: {steps: 1000,");
    let p = write(d.path(), "k.yaml", &y);
    let out = d.path().join("results/k");
    let mut child = std::process::Command::new(bin())
        .args(["run", p.to_str().unwrap(), "--jobs", "1"])
        .current_dir(d.path())
        .env("I2I_UNLEARN_CACHE", &cache)
        .env("RAYON_NUM_THREADS", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let n_cells = || {
        out.join("cells").read_dir().map_or(0, |r| {
            r.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".json")
            })
            .count()
        })
    };
    wait_for(&mut child, 240, || (n_cells() >= 3).then_some(()));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let done_before = cell_files(&out);
    assert!(done_before.len() < 8, "killed too late to test resuming");
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains(&format!("{} already done", done_before.len())),
        "{err}"
    );
    let after = cell_files(&out);
    assert_eq!(after.len(), 8);
    assert!(done_before.is_subset(&after));
    assert_eq!(rows_by_key(&out).len(), 8 * 10);
}

/// A run killed in the middle of its pre-training goes on from the checkpoint beside the cache
/// entry (`I2I_CHECKPOINT_SECS=0`: one after every step) and ends with the same weights, byte for
/// byte, as a pre-training never killed; the checkpoint is gone afterwards.
#[test]
fn killed_pretraining_resumes_from_its_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let y = tiny_yaml("p", "")
        .replace("pretrain: {steps: 15,", "pretrain: {steps: 3000,")
        .replace("seeds: [0, 1]", "seeds: [0]")
        .replace(
            "methods: [original, ours, {name: ours, retain: proxy}, max_loss]",
            "methods: [original]",
        );
    let p = write(d.path(), "p.yaml", &y);
    let (cache, whole) = (d.path().join("cache"), d.path().join("whole"));
    let mut child = std::process::Command::new(bin())
        .args(["run", p.to_str().unwrap()])
        .current_dir(d.path())
        .env("I2I_UNLEARN_CACHE", &cache)
        .env("I2I_CHECKPOINT_SECS", "0")
        .env("RAYON_NUM_THREADS", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pretrain = cache.join("pretrain");
    let checkpoint = wait_for(&mut child, 120, || {
        pretrain.read_dir().ok().and_then(|r| {
            r.map(|e| e.unwrap().path())
                .find(|p| p.to_string_lossy().ends_with(".resume.safetensors"))
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let entry = checkpoint
        .to_string_lossy()
        .replace(".resume.safetensors", ".safetensors");
    assert!(
        !std::path::Path::new(&entry).exists(),
        "killed too late to test resuming"
    );
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("resuming the pre-training after step"),
        "{}",
        stderr(&o)
    );
    assert!(
        !checkpoint.exists(),
        "the checkpoint outlived its pre-training"
    );
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "whole-results"],
        d.path(),
        &whole,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let name = std::path::Path::new(&entry).file_name().unwrap();
    assert!(
        std::fs::read(&entry).unwrap() == std::fs::read(whole.join("pretrain").join(name)).unwrap(),
        "the resumed pre-training differs from one never killed"
    );
}

/// Poll `found` every 20 ms until it gives a value, while `child` runs (its end is a failure),
/// for at most `secs` seconds.
fn wait_for<T>(
    child: &mut std::process::Child,
    secs: u64,
    mut found: impl FnMut() -> Option<T>,
) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = found() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "the run did not get there within {secs} s"
        );
        if let Some(s) = child.try_wait().unwrap() {
            panic!("run ended before the kill: {s}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
