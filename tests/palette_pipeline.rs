//! The Palette family through the whole pipeline: a tiny grid (a UNet pre-trained here, all
//! seven method rows, respaced ancestral sampling) runs, writes every row, records its sampler
//! in the protocol, and a second run finds every cell done; official-format weights from a URL
//! pinned by its SHA-256; `inpaint --family palette` on a folder.

mod common;
use common::*;
#[path = "common/hub_server.rs"]
mod hub_server;

const GRID: &str = r#"name: palette_tiny
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
  - name: pal
    family: palette
    config:
      unet: {inner_channel: 32, channel_mults: [1, 1], attn_res: [2], num_head_channels: 32, res_blocks: 1, image_size: 16}
      sampling: {steps: 3}
    pretrain: {steps: 4, batch_size: 8, weight_decay: 0.0}
unlearn: {steps: 2, retain_batch: 4, forget_batch: 4, warmup_steps: 0}
methods: [original, max_loss, noisy_label, retain_label, random_encoder, ours, {name: ours, retain: proxy}, controllable]
alphas: [0.25]
epsilons: [0.5]
masks: [center:8]
metrics:
  batch_size: 16
  is_splits: 2
  domain: {steps: 10, batch_size: 16, widths: [8, 8, 8]}
"#;

#[test]
fn a_tiny_palette_grid_runs_every_method_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let out = run_every_method_and_resume(d.path(), GRID);
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.contains("respaced to 3 of its 2000 steps"),
        "the protocol names the respaced sampler:\n{table}"
    );
}

/// `weights: {model: URL#sha256=…}`: the official-format network (`palette_Network.pth`, UNet
/// under `denoise_fn.` plus schedule buffers) downloaded once, then used offline.
#[test]
fn palette_weights_from_a_pinned_url_then_offline() {
    use std::collections::HashMap;
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/palette_ref/palette_Network.pth");
    let bytes = std::fs::read(&fixture).unwrap();
    let sha = i2i_unlearn::util::sha256_hex(&bytes);
    let server = hub_server::HubServer::start(HashMap::from([(
        "/files/16_Network.pth".to_string(),
        hub_server::File::new(bytes),
    )]));
    let d = tempfile::tempdir().unwrap();
    let url = format!("{}/files/16_Network.pth#sha256={sha}", server.url);
    let grid = format!(
        r#"name: palette_url
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
  - name: pal
    family: palette
    config:
      unet: {{inner_channel: 32, channel_mults: [1, 1, 2], attn_res: [4], num_head_channels: 32, res_blocks: 1, image_size: 32}}
      sampling: {{steps: 2}}
    weights: {{model: "{url}"}}
unlearn: {{steps: 2, retain_batch: 2, forget_batch: 2, warmup_steps: 0}}
methods: [original, ours]
masks: [center:8]
metrics: {{is_splits: 2, domain: {{steps: 5, batch_size: 8, widths: [4, 4, 4]}}}}
"#
    );
    let exp = write(d.path(), "ok.yaml", &grid);
    run_online_then_offline(&exp, d.path(), &server.url);
}

/// `inpaint --family palette` with the reference checkpoint folder: one PNG per image, the
/// sampler named in its note; a folder without a `*_Network.pth` is refused with exit 2.
#[test]
fn inpaint_a_folder_with_an_official_format_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..3u8 {
        let img = image::RgbImage::from_fn(20, 24, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 9) as u8, i * 70])
        });
        img.save(imgs.join(format!("p{i}.png"))).unwrap();
    }
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette_ref");
    let out = d.path().join("out");
    let cache = d.path().join("cache");
    let o = run(
        &[
            "inpaint",
            "--family",
            "palette",
            "--model",
            model.to_str().unwrap(),
            "--mask",
            "center:8",
            "--steps",
            "3",
            "--images",
            imgs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        d.path(),
        &cache,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    for i in 0..3 {
        let p = image::open(out.join(format!("p{i}.png"))).unwrap();
        assert_eq!((p.width(), p.height()), (32, 32));
    }
    assert!(
        stderr(&o).contains("respaced to 3 of its 2000 steps"),
        "{}",
        stderr(&o)
    );
    let empty = d.path().join("empty-model");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::copy(model.join("config.json"), empty.join("config.json")).unwrap();
    let o = run(
        &[
            "inpaint",
            "--family",
            "palette",
            "--model",
            empty.to_str().unwrap(),
            "--images",
            imgs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        d.path(),
        &cache,
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

/// The one-pass predictions `inpaint --save-tensors` writes draw their noise from `--seed` (and
/// each image's name): the same seed gives the same tensors, another seed other ones.
#[test]
fn saved_predictions_follow_the_seed() {
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("imgs");
    std::fs::create_dir_all(&imgs).unwrap();
    for i in 0..2u8 {
        let img = image::RgbImage::from_fn(32, 32, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, i * 90])
        });
        img.save(imgs.join(format!("p{i}.png"))).unwrap();
    }
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/palette_ref");
    let cache = d.path().join("cache");
    let predictions = |seed: &str, tag: &str| {
        let out = d.path().join(format!("out-{tag}"));
        let st = d.path().join(format!("{tag}.safetensors"));
        let o = run(
            &[
                "inpaint",
                "--family",
                "palette",
                "--model",
                model.to_str().unwrap(),
                "--mask",
                "center:8",
                "--steps",
                "2",
                "--seed",
                seed,
                "--images",
                imgs.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--save-tensors",
                st.to_str().unwrap(),
            ],
            d.path(),
            &cache,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let t = candle_core::safetensors::load(&st, &candle_core::Device::Cpu).unwrap();
        t["predictions"]
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
    };
    let a = predictions("1", "a");
    let b = predictions("1", "b");
    let c = predictions("2", "c");
    assert_eq!(a, b, "the same seed, the same predictions");
    assert_ne!(a, c, "another seed, other predictions");
}
