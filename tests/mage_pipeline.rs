//! The MAGE family through the whole pipeline: a tiny grid (tokenizer and MAGE pre-trained here,
//! all seven method rows, MaskGIT evaluation with blurred compositing) runs, writes every row, and
//! a second run finds every cell done.

mod common;
use common::*;
#[path = "common/hub_server.rs"]
mod hub_server;

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
methods: [original, max_loss, noisy_label, retain_label, random_encoder, ours, {name: ours, retain: proxy}, controllable]
alphas: [0.25]
epsilons: [0.5]
masks: [center:2]
metrics:
  batch_size: 16
  is_splits: 2
  domain: {steps: 10, batch_size: 16, widths: [8, 8, 8]}
"#;

#[test]
fn a_tiny_mage_grid_runs_every_method_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let out = run_every_method_and_resume(d.path(), GRID);
    // Every number's protocol says how MAGE generated: iterations, sampled or greedy, compositing.
    let csv = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    for what in [
        "MaskGIT 8 iterations",
        "sampled: tokens drawn",
        "temperature 6",
        "blurred paste",
    ] {
        assert!(csv.contains(what), "`{what}` in the protocols of\n{csv}");
    }
}

/// `weights:` as files: the official-format MAGE checkpoint (tokenizer inside, under `vqgan.*`)
/// from a URL pinned by its SHA-256, downloaded once into the weights cache, then used offline;
/// a URL without a pin is refused by `check`; a wrong pin fails and leaves nothing behind.
#[test]
fn mage_weights_from_a_pinned_url_then_offline() {
    use std::collections::HashMap;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mage_ref/mage.pth");
    let bytes = std::fs::read(&fixture).unwrap();
    let sha = i2i_unlearn::util::sha256_hex(&bytes);
    let server = hub_server::HubServer::start(HashMap::from([(
        "/files/mage.pth".to_string(),
        hub_server::File::new(bytes),
    )]));
    let d = tempfile::tempdir().unwrap();
    let grid = |weights: &str| {
        format!(
            r#"name: mage_url
seeds: [0]
datasets:
  - name: tex
    source: {{kind: embedded, classes: 4, size: 32, seed: 1}}
    forget_classes: [0]
    retain_classes: [1, 2]
    proxy_classes: [3]
    train_per_class: 4
    eval_per_class: 4
models:
  - name: mage
    family: mage
    config:
      vqgan: {{embed_dim: 32, n_embed: 64, ddconfig: {{ch: 32, ch_mult: [1, 1, 2], num_res_blocks: 1, z_channels: 32, resolution: 32}}}}
      mage: {{img_size: 32, patch_size: 4, embed_dim: 32, depth: 2, num_heads: 2, decoder_embed_dim: 48, decoder_depth: 2, decoder_num_heads: 3}}
      inpaint: {{num_iter: 4}}
    weights: {{model: "{weights}"}}
unlearn: {{steps: 2, retain_batch: 2, forget_batch: 2, warmup_steps: 0}}
methods: [original, ours]
masks: [center:4]
metrics: {{is_splits: 2, domain: {{steps: 5, batch_size: 8, widths: [4, 4, 4]}}}}
"#
        )
    };
    let url = format!("{}/files/mage.pth", server.url);
    let hf = d.path().join("hf");
    let cache = d.path().join("cache");
    let env = |offline: bool| HubEnv {
        hf_home: &hf,
        endpoint: &server.url,
        offline,
    };
    // No pin: refused before any work.
    let exp = write(d.path(), "nopin.yaml", &grid(&url));
    let o = run_hub(
        &["check", exp.to_str().unwrap()],
        d.path(),
        &env(false),
        &cache,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("sha256"), "{}", stderr(&o));
    // A wrong pin: the download fails verification.
    let bad = format!("{url}#sha256={}", "0".repeat(64));
    let exp = write(d.path(), "bad.yaml", &grid(&bad));
    let out = d.path().join("out-bad");
    let o = run_hub(
        &[
            "run",
            exp.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        d.path(),
        &env(false),
        &cache,
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("SHA-256"), "{}", stderr(&o));
    // The right pin: downloaded, loaded, run; then offline from the cache.
    let exp = write(d.path(), "ok.yaml", &grid(&format!("{url}#sha256={sha}")));
    run_online_then_offline(&exp, d.path(), &server.url);
    let gets = server
        .log
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|(p, _, _)| p == "/files/mage.pth")
        .count();
    assert!(gets >= 1, "never downloaded");
}
