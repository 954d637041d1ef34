//! The MAGE family through the whole pipeline: a tiny grid (tokenizer and MAGE pre-trained here,
//! all seven method rows, MaskGIT evaluation with blurred compositing) runs, writes every row, and
//! a second run finds every cell done.

mod common;
use common::*;

const GRID: &str = r#"name: mage_tiny
seeds: [0]
datasets:
  - name: tex
    source: {kind: embedded, classes: 6, size: 16, seed: 1}
    forget_classes: [0]
    retain_classes: [1, 2, 3]
    proxy_classes: [4, 5]
    train_per_class: 8
    eval_per_class: 6
models:
  - name: mage
    family: mage
    config:
      vqgan: {embed_dim: 32, n_embed: 16, ddconfig: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, z_channels: 32, resolution: 16}}
      mage: {img_size: 16, patch_size: 2, embed_dim: 16, depth: 1, num_heads: 2, decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2}
      inpaint: {num_iter: 8}
    pretrain: {steps: 6, batch_size: 8, tokenizer: {steps: 4, batch_size: 8, crop: 8, restart_every: 2}}
unlearn: {steps: 3, retain_batch: 4, forget_batch: 4, warmup_steps: 1}
generate: {composite: blur}
methods: [original, max_loss, noisy_label, retain_label, random_encoder, ours, {name: ours, retain: proxy}]
alphas: [0.25]
masks: [center:2]
metrics:
  batch_size: 16
  is_splits: 2
  domain: {steps: 10, batch_size: 16, widths: [8, 8, 8]}
"#;

#[test]
fn a_tiny_mage_grid_runs_every_method_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let exp = write(d.path(), "mage.yaml", GRID);
    let out = d.path().join("out");
    let cache = d.path().join("cache");
    let args = [
        "run",
        exp.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let o = run(&args, d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    for m in [
        "original",
        "max_loss",
        "noisy_label",
        "retain_label",
        "random_encoder",
        "ours",
        "ours+proxy",
    ] {
        assert!(
            text.lines().any(|l| l.contains(&format!(",{m},"))),
            "no row for {m} in\n{text}"
        );
    }
    let again = run(&args, d.path(), &cache);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 to run"),
        "a second run recomputed cells: {}",
        stderr(&again)
    );
}
