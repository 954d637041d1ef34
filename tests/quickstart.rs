//! The quickstart must show the method working, not just running: on its table, `ours` keeps the
//! retain-set FID within 25% of the original model's while its forget-set FID at least doubles.
//! Its report has the membership audit's AUC for every model and a bootstrap interval on every
//! FID, IS, similarity and AUC (the oracle's row is tested on a smaller grid in
//! tests/oracle_audit.rs). Runs the real quickstart (about 2 minutes on 2 cores).

mod common;
use common::*;
use std::collections::BTreeMap;

/// A value with its bootstrap interval's bounds.
type Valued = (f64, Option<f64>, Option<f64>);

/// The rows of the paper's table, which the quickstart reproduces.
const PAPER_TABLE: [&str; 7] = [
    "original",
    "max_loss",
    "noisy_label",
    "retain_label",
    "random_encoder",
    "ours",
    "ours+proxy",
];

#[test]
fn quickstart_ours_forgets_the_forget_set_and_keeps_the_retain_set() {
    let d = tempfile::tempdir().unwrap();
    let exp = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/quickstart.yaml");
    let out = d.path().join("qs");
    let o = std::process::Command::new(bin())
        .args([
            "run",
            exp.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--no-samples",
        ])
        .env("I2I_UNLEARN_CACHE", d.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |n: &str| header.iter().position(|h| *h == n).unwrap();
    // (method, set, metric) → (value, ci_low, ci_high); the columns before `protocol` hold no
    // commas.
    let mut all: BTreeMap<(String, String, String), Valued> = BTreeMap::new();
    for l in lines {
        let f: Vec<&str> = l.split(',').collect();
        let num = |c: &str| f[col(c)].parse::<f64>().ok();
        all.insert(
            (
                f[col("method")].to_string(),
                f[col("set")].to_string(),
                f[col("metric")].to_string(),
            ),
            (num("value").unwrap(), num("ci_low"), num("ci_high")),
        );
    }
    let key = |m: &str, s: &str, metric: &str| (m.to_string(), s.to_string(), metric.to_string());
    let get = |m: &str, s: &str| all[&key(m, s, "fid")].0;
    let (or, of) = (get("original", "retain"), get("original", "forget"));
    let (ur, uf) = (get("ours", "retain"), get("ours", "forget"));
    eprintln!("original retain {or:.3} forget {of:.3}; ours retain {ur:.3} forget {uf:.3}");
    assert!(
        ur <= 1.25 * or,
        "ours retain FID {ur} vs original {or}: more than 25% worse"
    );
    assert!(
        uf >= 2.0 * of,
        "ours forget FID {uf} vs original {of}: less than doubled"
    );
    // Every method of the paper's table is present.
    for m in PAPER_TABLE {
        assert!(all.contains_key(&key(m, "forget", "fid")), "{m} missing");
    }
    // Every model has the audit's AUC on both sets, and every FID / IS / similarity / AUC its
    // bootstrap interval.
    for ((m, set, metric), (v, lo, hi)) in &all {
        if ["fid", "is", "clip", "mia_auc"].contains(&metric.as_str()) {
            let (lo, hi) = (lo.unwrap(), hi.unwrap());
            assert!(
                v.is_finite() && lo < hi,
                "{m} {set} {metric}: {v} [{lo}, {hi}]"
            );
        }
    }
    for m in PAPER_TABLE {
        for set in ["retain", "forget"] {
            let auc = all[&key(m, set, "mia_auc")].0;
            assert!((0.0..=1.0).contains(&auc), "{m} {set} AUC {auc}");
        }
    }
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    for want in [
        "D_F MIA AUC →0.5",
        "(`report --ci` adds the 95% bootstrap intervals)",
    ] {
        assert!(md.contains(want), "table.md lacks {want:?}");
    }
    assert!(out
        .join("charts/textures_mae-tiny_center_4_mia_auc.png")
        .is_file());
}
