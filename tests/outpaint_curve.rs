//! The unlearning protocol of the official code: each (method, α, seed) is unlearned once — with
//! the family's training masks — and evaluated under every evaluation mask. The paper's
//! outpainting curve (13 widths) therefore costs one unlearning per method; a run killed between
//! masks, or a grid whose mask list grows, reuses the stored unlearning.

mod common;
use common::*;
use std::path::Path;

/// A 32 px MAE with 2 px patches (a 16 × 16 grid, so that all 13 outpainting widths leave a
/// visible centre), two training methods and the original, two seeds.
fn yaml(masks: &str, unlearn_mask: &str) -> String {
    format!(
        r#"name: curve
seeds: [0, 1]
datasets:
  - name: tex
    source: {{kind: embedded, classes: 4, size: 32, seed: 1}}
    forget_classes: [0]
    retain_classes: [1, 2]
    train_per_class: 6
    eval_per_class: 4
models:
  - name: mae
    family: mae
    config: {{image_size: 32, patch_size: 2, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, decoder_hidden_size: 16, decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 32}}
    pretrain: {{steps: 3, batch_size: 4}}
unlearn: {{steps: 3, retain_batch: 2, forget_batch: 2, warmup_steps: 0{unlearn_mask}}}
methods: [original, ours, random_encoder]
alphas: [0.25]
masks: [{masks}]
metrics:
  batch_size: 16
  is_splits: 2
  domain: {{steps: 3, batch_size: 8, widths: [4, 4, 4]}}
"#
    )
}

fn last_run(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("last_run.json")).unwrap()).unwrap()
}

fn unlearned(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("unlearned"))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".json") && !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn thirteen_outpainting_masks_unlearn_each_method_alpha_seed_once() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let curve: Vec<String> = (1..=13).map(|r| format!("outpaint:{r}")).collect();
    let p = write(d.path(), "c.yaml", &yaml(&curve.join(", "), ""));
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = d.path().join("results/curve");
    let s = last_run(&out);
    // 3 methods × 2 seeds × 13 masks cells; 2 training methods × 2 seeds unlearnings.
    assert_eq!(s["cells_run"], 3 * 2 * 13, "{s}");
    assert_eq!(s["models_unlearned"], 2 * 2, "{s}");
    assert_eq!(unlearned(&out).len(), 4);
    // Every cell of a (method, seed) carries the same unlearning log.
    let mut logs: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for e in std::fs::read_dir(out.join("cells")).unwrap() {
        let rec: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap();
        if rec["unlearn"].is_null() {
            continue;
        }
        assert_eq!(rec["unlearn"]["masks"], "family");
        logs.entry(rec["cell"]["unlearn_key"].as_str().unwrap().to_string())
            .or_default()
            .push(rec["unlearn"].to_string());
    }
    assert_eq!(logs.len(), 4);
    for (k, v) in &logs {
        assert_eq!(v.len(), 13, "{k}");
        assert!(v.iter().all(|l| l == &v[0]), "{k}: logs differ");
    }
    // The report draws the curve.
    let charts: Vec<String> = std::fs::read_dir(out.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        charts.iter().any(|c| c.contains("fid_vs_outpaint")),
        "{charts:?}"
    );

    // A killed run between masks: one cell lost, nothing to unlearn again.
    let first = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let rec: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            !rec["unlearn"].is_null()
        })
        .unwrap();
    std::fs::remove_file(&first).unwrap();
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = last_run(&out);
    assert_eq!(
        (s["cells_run"].as_u64(), s["models_unlearned"].as_u64()),
        (Some(1), Some(0))
    );
    assert!(
        stderr(&o).contains("stored by an earlier run"),
        "{}",
        stderr(&o)
    );

    // A longer mask list evaluates the stored models without unlearning them again.
    let more = format!("{}, center:4", curve.join(", "));
    let p2 = write(d.path(), "c.yaml", &yaml(&more, ""));
    let o = run(&["run", p2.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = last_run(&out);
    assert_eq!(
        (s["cells_run"].as_u64(), s["models_unlearned"].as_u64()),
        (Some(6), Some(0))
    );
    assert_eq!(unlearned(&out).len(), 4);
}

#[test]
fn task_masks_unlearn_once_per_evaluation_mask() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let p = write(
        d.path(),
        "c.yaml",
        &yaml("outpaint:4, outpaint:8, center:4", ", mask: task"),
    );
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = d.path().join("results/curve");
    let s = last_run(&out);
    assert_eq!(s["models_unlearned"], 2 * 2 * 3, "{s}");
    // An explicit unlearning mask: once per (method, seed) again.
    let p = write(
        d.path(),
        "e.yaml",
        &yaml("outpaint:4, outpaint:8, center:4", ", mask: 'random:50'")
            .replace("name: curve", "name: explicit"),
    );
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = last_run(&d.path().join("results/explicit"));
    assert_eq!(s["models_unlearned"], 2 * 2, "{s}");
}
