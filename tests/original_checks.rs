//! `quality_gate:`: the original model is measured on held-out images before any unlearning
//! (hole error against the trivial fill; MAGE also its tokenizer and token prediction), the
//! figures are written to `gate-<dataset>-<model>.json`, and an enforced miss stops the run
//! before any cell, naming the figure and its limit. `map_probe:` (Palette) writes the hole error
//! with the decoder fed the pure-noise input's maps.

mod common;
use common::*;

fn grid(model: &str, gate: &str) -> String {
    format!(
        r#"name: gate
seeds: [0]
datasets:
  - name: tex
    source: {{kind: embedded, classes: 4, size: 16, seed: 1}}
    forget_classes: [0]
    retain_classes: [1, 2]
    train_per_class: 8
    eval_per_class: 4
models:
{model}
unlearn: {{steps: 2, retain_batch: 2, forget_batch: 2, warmup_steps: 0}}
methods: [original, ours]
masks: [center:2]
metrics: {{is_splits: 2, domain: {{steps: 5, batch_size: 8, widths: [4, 4, 4]}}}}
{gate}
"#
    )
}

const MAE: &str = "  - name: mae
    family: mae
    config: {image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, decoder_hidden_size: 16, decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 32}
    pretrain: {steps: 5, batch_size: 8}";

const MAGE: &str = "  - name: mage
    family: mage
    config:
      vqgan: {embed_dim: 32, n_embed: 16, ddconfig: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, z_channels: 32, resolution: 16}}
      mage: {img_size: 16, patch_size: 2, embed_dim: 16, depth: 1, num_heads: 2, decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2}
      inpaint: {num_iter: 4}
    pretrain: {steps: 4, batch_size: 8, tokenizer: {steps: 2, batch_size: 8, crop: 8, restart_every: 2}}";

fn gate_json(dir: &std::path::Path, model: &str) -> serde_json::Value {
    let p = dir.join(format!("out/gate-tex-{model}.json"));
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p:?}: {e}")))
        .unwrap()
}

#[test]
fn an_enforced_gate_stops_an_original_that_cannot_inpaint() {
    let d = tempfile::tempdir().unwrap();
    // Five pre-training steps cannot beat a tenth of the trivial fill's error.
    let p = write(
        d.path(),
        "g.yaml",
        &grid(MAE, "quality_gate: {images: 6, max_hole_ratio: 0.1}"),
    );
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "out"],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("misses its quality gate") && err.contains("hole MSE / trivial-fill MSE"),
        "{err}"
    );
    // The figure is in the message, and the gate's record stays (no cell, no table).
    assert!(err.contains("> 0.100"), "{err}");
    assert!(!d.path().join("out/runs.csv").exists());
    let g = gate_json(d.path(), "mae");
    assert_eq!(g["passed"], false, "{g}");
}

#[test]
fn mage_gate_figures_are_measured_and_a_warning_gate_goes_on() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "g.yaml",
        &grid(MAGE, "quality_gate: {images: 4, enforce: false}"),
    );
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "out"],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let g = gate_json(d.path(), "mage");
    let names: Vec<&str> = g["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "hole MSE / trivial-fill MSE",
            "tokenizer reconstruction MSE / pixel variance",
            "masked-token cross-entropy / ln(codebook size)",
            "hole MSE / trivial-fill MSE of the true tokens decoded",
            "hole MSE / trivial-fill MSE of one pass of argmax tokens",
            "token-frequency entropy / ln(codebook size)"
        ]
    );
    // The gated figures carry their limit, the diagnostics none.
    let limits: Vec<bool> = g["figures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["limit"].is_f64())
        .collect();
    assert_eq!(limits, [true, true, true, false, false, false], "{g}");
    let entropy = g["figures"][5]["value"].as_f64().unwrap();
    assert!(entropy > 0.0 && entropy <= 1.0, "{g}");
    assert!(err.contains("(a diagnostic, no limit)"), "{err}");
    // A barely trained MAGE guesses tokens about uniformly: close to 1.
    let ce = g["figures"][2]["value"].as_f64().unwrap();
    assert!(ce > 0.5 && ce < 1.5, "{g}");
    assert!(err.contains("quality gate of `mage`"), "{err}");
    // Each unlearning says how far its recipe moves: 2 steps × 2 of the 8 forget images.
    assert!(err.contains("0.5 passes over D_F, 0.2 over D_R"), "{err}");
    // Ours says how much of each encoder map's forget gap it closed.
    assert!(err.contains("forget gap closed per map (%):"), "{err}");
}

const PALETTE: &str = "  - name: palette
    family: palette
    config:
      unet: {inner_channel: 32, channel_mults: [1, 1], attn_res: [2], num_head_channels: 32, res_blocks: 1, image_size: 16}
      sampling: {steps: 2}
    pretrain: {steps: 3, batch_size: 8, weight_decay: 0.0}";

#[test]
fn the_palette_map_probe_writes_the_hole_error_per_map_setting() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "g.yaml",
        &grid(
            PALETTE,
            "map_probe: {images: 2}\nquality_gate: {images: 4, samples: 3, enforce: false}",
        ),
    );
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "out"],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let p = d.path().join("out/map-probe-tex-palette.json");
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let rows = r["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 8, "{r}");
    let real: Vec<serde_json::Value> = rows.iter().map(|x| x["real_maps"].clone()).collect();
    assert_eq!(
        real[..4],
        [serde_json::Value::Null, 2.into(), 1.into(), 0.into()]
    );
    assert!(rows.iter().all(|x| x["hole_mse"].as_f64().unwrap() > 0.0));
    assert!(err.contains("with only map 0 real"), "{err}");
    // A sampler's one-sample hole error splits exactly into that of the samples' mean and their
    // spread; the gate's own figure is the first sample's.
    let g = gate_json(d.path(), "palette");
    let s = &g["spread"];
    let f = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {g}"));
    assert_eq!(s["samples"], 3, "{g}");
    assert!(f("spread_ratio") > 0.0, "{g}");
    let sum = f("mean_of_samples_ratio") + f("spread_ratio");
    assert!((f("one_sample_ratio") - sum).abs() <= 1e-4 * sum, "{g}");
    assert!(
        f("posterior_mean_ratio") < f("mean_of_samples_ratio"),
        "{g}"
    );
    assert!(err.contains("3 samples per image"), "{err}");
    // The MAE family has no maps to probe: a one-line error.
    let p = write(d.path(), "m.yaml", &grid(MAE, "map_probe: {images: 2}"));
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "out2"],
        d.path(),
        &d.path().join("cache"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the probe is for Palette"),
        "{}",
        stderr(&o)
    );
}

/// The path after `→ ` on the log line starting with `prefix`.
fn logged_path(err: &str, prefix: &str) -> String {
    let l = err
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line: {err}"));
    l.rsplit("→ ").next().unwrap().trim().to_string()
}

#[test]
fn committed_pretrainings_replace_pretraining_and_give_the_same_rows() {
    let d = tempfile::tempdir().unwrap();
    let text = grid(MAE, "").replace(
        "methods: [original, ours]",
        "methods: [original, retrain, ours]",
    );
    let p = write(d.path(), "a.yaml", &text);
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "a"],
        d.path(),
        &d.path().join("cache-a"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let sha = |p: &str| i2i_unlearn::util::sha256_file(std::path::Path::new(p)).unwrap();
    let original = logged_path(&err, "original model `mae`: pre-trained");
    let oracle = logged_path(&err, "retrain oracle of `mae`: pre-trained");
    let block = format!(
        "    pretrained: {{original: \"{original}#sha256={}\", oracle: \"{oracle}#sha256={}\"}}\n",
        sha(&original),
        sha(&oracle)
    );
    let text_b = text.replace(
        "    pretrain: {steps: 5, batch_size: 8}\n",
        &format!("    pretrain: {{steps: 5, batch_size: 8}}\n{block}"),
    );
    assert_ne!(text_b, text);
    let p = write(d.path(), "b.yaml", &text_b);
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "b"],
        d.path(),
        &d.path().join("cache-b"),
    );
    let err_b = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err_b}");
    assert!(!err_b.contains("pre-trained"), "{err_b}");
    assert_eq!(
        err_b.matches("committed pre-training").count(),
        2,
        "{err_b}"
    );
    let rows = |dir: &str| -> Vec<(String, String, String)> {
        let mut v: Vec<_> = csv_rows(&d.path().join(dir).join("runs.csv"))
            .into_iter()
            .map(|(_, set, metric, value)| (set, metric, value))
            .collect();
        v.sort();
        v
    };
    assert_eq!(rows("a"), rows("b"));
    // A changed file is refused, naming it.
    std::fs::write(&oracle, b"not the weights").unwrap();
    let o = run(
        &["run", p.to_str().unwrap(), "--output", "c"],
        d.path(),
        &d.path().join("cache-c"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("differs from the pinned"),
        "{}",
        stderr(&o)
    );
}
