//! Regression against the committed real-photograph results (`results/paper-cpu/mae/`): two
//! rows of `experiments/paper-cpu/mae.yaml` — Original (shard 1/8) and Ours (shard 7/8) — rerun
//! from the committed original and oracle (`experiments/paper-cpu/weights/`), on Tiny ImageNet
//! photographs of ../shared/data, and compared metric by metric with the committed `runs.csv`.
//! A change in the model, the method, the data path or a metric shows up here, with every
//! difference printed.
//!
//! Tolerances: FID and IS within 5 % (relative), cosine and membership AUC within 0.01
//! (absolute). On the machine that made the committed numbers the rerun is exact; another CPU's
//! kernels round differently, and the domain extractor's training amplifies that a little.

mod common;
use common::*;
use std::collections::BTreeMap;
use std::path::Path;

/// (row label, set, metric) → value: cell ids hash the data's resolved paths, so they differ
/// between checkouts; the labels do not.
fn rows(path: &Path) -> BTreeMap<(String, String, String), f64> {
    csv_columns(path, &["label", "set", "metric", "value"])
        .into_iter()
        .map(|r| {
            (
                (r[0].clone(), r[1].clone(), r[2].clone()),
                r[3].parse().unwrap(),
            )
        })
        .collect()
}

fn within(metric: &str, want: f64, got: f64) -> bool {
    match metric {
        "fid" | "is" => (got - want).abs() <= 0.05 * want.abs().max(1e-9),
        _ => (got - want).abs() <= 0.01,
    }
}

#[test]
fn original_and_ours_rows_rerun_from_committed_weights_match_the_committed_results() {
    if shared_data().is_none() {
        return common::absent("../shared/data");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exp = root.join("experiments/paper-cpu/mae.yaml");
    let committed = rows(&root.join("results/paper-cpu/mae/runs.csv"));
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    for shard in ["1/8", "7/8"] {
        let o = Command::new(bin())
            .args([
                "run",
                exp.to_str().unwrap(),
                "--shard",
                shard,
                "--no-samples",
            ])
            .args(["--output", out.to_str().unwrap()])
            .env("I2I_UNLEARN_CACHE", d.path().join("cache"))
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "shard {shard}: {}", stderr(&o));
        let err = stderr(&o);
        assert!(
            err.contains("committed pre-training") && !err.contains("pre-trained"),
            "the rerun must load the committed weights: {err}"
        );
    }
    let rerun = rows(&out.join("runs.csv"));
    let labels = ["Original", "Ours"];
    assert!(
        rerun.len() >= 2 * 6,
        "the two rows give at least 6 metrics each: {rerun:?}"
    );
    let mut report = vec![];
    let mut bad = 0;
    for ((cell, set, metric), got) in &rerun {
        let Some(want) = committed.get(&(cell.clone(), set.clone(), metric.clone())) else {
            report.push(format!(
                "{cell} {set} {metric}: {got} rerun, not in the committed results"
            ));
            bad += 1;
            continue;
        };
        let ok = within(metric, *want, *got);
        bad += usize::from(!ok);
        report.push(format!(
            "{cell} {set} {metric}: committed {want:.6}, rerun {got:.6} ({:+.3} %){}",
            100.0 * (got - want) / want.abs().max(1e-12),
            if ok { "" } else { "  ← beyond tolerance" }
        ));
    }
    eprintln!(
        "{} (rows {labels:?}):\n{}",
        exp.display(),
        report.join("\n")
    );
    assert_eq!(bad, 0, "{}", report.join("\n"));
}

use std::process::Command;
