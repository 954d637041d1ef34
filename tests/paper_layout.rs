//! The paper's experiments as files and the report in the paper's layout: every file of
//! `experiments/paper/` passes `check` and `fetch --dry-run` here (no hub, no GPU: downloads and
//! compute listed, exit 0); and `report --layout paper` merges the folders of tiny grids of all
//! three families into the paper's tables and figures.

mod common;
use common::*;
use std::path::Path;

fn paper_files() -> Vec<std::path::PathBuf> {
    yaml_files("experiments/paper")
}

/// The experiment files of a folder of the repository, sorted.
fn yaml_files(folder: &str) -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_paper_file_passes_check_and_dry_run() {
    let files = paper_files();
    // E1–E8: three families for E1, E3, E4, E8; MAE and MAGE for E2, E5; MAGE for E6; MAGE and
    // Palette for E7.
    assert_eq!(files.len(), 19, "{files:?}");
    for e in ["e1_", "e2_", "e3_", "e4_", "e5_", "e6_", "e7_", "e8_"] {
        assert!(files
            .iter()
            .any(|f| f.file_name().unwrap().to_string_lossy().starts_with(e)));
    }
    let d = tempfile::tempdir().unwrap();
    for f in &files {
        let f = f.to_str().unwrap();
        for args in [vec!["check", f], vec!["fetch", "--dry-run", f]] {
            let o = std::process::Command::new(bin())
                .args(&args)
                .env("HF_HOME", d.path().join("hf"))
                .env("I2I_UNLEARN_CACHE", d.path().join("cache"))
                // Nothing here reaches a server: the dry run must say so and still succeed.
                .env("HF_ENDPOINT", "http://127.0.0.1:9")
                .env("I2I_UNLEARN_NET_TIMEOUT", "3")
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success(), "{args:?}: {}\n{out}", stderr(&o));
            for what in [
                "downloads:",
                "to download",
                "compute:",
                "evaluation:",
                "unlearning:",
                "gpu: not measured",
            ] {
                assert!(out.contains(what), "{args:?}: no `{what}` in\n{out}");
            }
            // The CPU estimate is a measured figure or says it is not measured.
            assert!(out.contains(" h") || out.contains("not measured"), "{out}");
        }
    }
    // The official files no hub holds are named by their source, pinned on first download.
    let mage = std::fs::read_to_string(files.iter().find(|f| f.ends_with("e1_mage.yaml")).unwrap())
        .unwrap();
    assert!(mage.contains("#sha256=first-download") && mage.contains("protocol: paper"));
    let o = std::process::Command::new(bin())
        .args([
            "check",
            files
                .iter()
                .find(|f| f.ends_with("e1_palette.yaml"))
                .unwrap()
                .to_str()
                .unwrap(),
        ])
        .env("HF_HOME", d.path().join("hf"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("places365_resnet50") && out.contains("2000 UNet passes"),
        "{out}"
    );
}

fn grid(name: &str, model: &str, masks: &str, alphas: &str) -> String {
    format!(
        r#"name: {name}
seeds: [0]
datasets:
  - name: tex
    source: {{kind: embedded, classes: 6, size: 16, seed: 1}}
    forget_classes: [0, 1]
    retain_classes: [2, 3]
    proxy_classes: [4, 5]
    train_per_class: 8
    eval_per_class: 6
models:
{model}
unlearn: {{steps: 2, retain_batch: 4, forget_batch: 4, warmup_steps: 0}}
methods: [original, max_loss, ours, {{name: ours, retain: proxy}}]
alphas: {alphas}
masks: {masks}
metrics:
  batch_size: 16
  is_splits: 2
  bootstrap: 0
  domain: {{steps: 10, batch_size: 16, widths: [8, 8, 8]}}
figure: {{forget: [0, 7], retain: [3]}}
"#
    )
}

#[test]
fn paper_layout_report_of_three_families() {
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("cache");
    let mae = "  - name: mae\n    family: mae\n    config: {image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, decoder_hidden_size: 16, decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 32}\n    pretrain: {steps: 10, batch_size: 8}";
    let mage = "  - name: mage\n    family: mage\n    config:\n      vqgan: {embed_dim: 32, n_embed: 16, ddconfig: {ch: 32, ch_mult: [1, 2], num_res_blocks: 1, z_channels: 32, resolution: 16}}\n      mage: {img_size: 16, patch_size: 2, embed_dim: 16, depth: 1, num_heads: 2, decoder_embed_dim: 16, decoder_depth: 1, decoder_num_heads: 2}\n      inpaint: {num_iter: 4}\n    pretrain: {steps: 4, batch_size: 8, tokenizer: {steps: 3, batch_size: 8, crop: 8, restart_every: 2}}";
    let palette = "  - name: palette\n    family: palette\n    config:\n      unet: {inner_channel: 32, channel_mults: [1, 1], attn_res: [2], num_head_channels: 32, res_blocks: 1, image_size: 16}\n      sampling: {steps: 2}\n    pretrain: {steps: 3, batch_size: 8, weight_decay: 0.0}";
    let grids = [
        // MAE: the main table at two masks, an α sweep and an outpainting curve.
        (
            "mae",
            grid(
                "p_mae",
                mae,
                "[center:2, outpaint:2, outpaint:4, outpaint:6]",
                "[0.25, 1.0]",
            ),
        ),
        ("mage", grid("p_mage", mage, "[center:2]", "[0.25]")),
        ("palette", grid("p_palette", palette, "[center:8]", "[0.1]")),
    ];
    let mut dirs = vec![];
    for (n, y) in &grids {
        let f = write(d.path(), &format!("{n}.yaml"), y);
        let o = run(
            &["run", f.to_str().unwrap(), "--output", &format!("r_{n}")],
            d.path(),
            &cache,
        );
        assert!(o.status.success(), "{n}: {}", stderr(&o));
        dirs.push(format!("r_{n}"));
    }
    let mut args = vec!["report", "--layout", "paper", "--out", "merged"];
    args.extend(dirs.iter().map(|s| s.as_str()));
    let o = run(&args, d.path(), &cache);
    assert!(o.status.success(), "{}", stderr(&o));
    let paper = d.path().join("merged/paper");
    let md = std::fs::read_to_string(paper.join("paper.md")).unwrap();
    let tex = std::fs::read_to_string(paper.join("paper.tex")).unwrap();
    // One table per inpainting mask; a block per family; the paper's rows in order; its columns.
    for h in [
        "## Inpainting, centre 2 × 2 cells",
        "## Inpainting, centre 8 × 8 cells",
        "## α ablation (Ours)",
    ] {
        assert!(md.contains(h), "no `{h}` in\n{md}");
    }
    for block in [
        "**mae (tex, α = 0.25)**",
        "**mage (tex, α = 0.25)**",
        "**palette (tex, α = 0.1)**",
    ] {
        assert!(md.contains(block), "no block `{block}` in\n{md}");
    }
    let section = md
        .split("## Inpainting, centre 2 × 2 cells")
        .nth(1)
        .unwrap();
    let mae_block = section
        .split("**mae")
        .nth(1)
        .unwrap()
        .split("**mage")
        .next()
        .unwrap();
    let order: Vec<usize> = [
        "| Original |",
        "| Max Loss |",
        "| Ours |",
        "| Ours (proxy D_R) |",
    ]
    .iter()
    .map(|r| {
        mae_block
            .find(r)
            .unwrap_or_else(|| panic!("no row {r} in\n{mae_block}"))
    })
    .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "rows out of the paper's order:\n{mae_block}"
    );
    for c in ["D_R FID", "D_R IS", "D_F FID", "D_F IS"] {
        assert!(md.contains(c), "no column {c}");
    }
    assert!(
        md.contains("Protocol:") && md.contains("N = "),
        "protocols under the tables"
    );
    assert!(
        tex.matches("\\begin{table*}").count() >= 3 && tex.contains("\\toprule"),
        "{tex}"
    );
    // The α table has both α of the MAE sweep.
    let alpha = md.split("## α ablation (Ours)").nth(1).unwrap();
    assert!(
        alpha.contains("| 0.25 |") && alpha.contains("| 1 |"),
        "{alpha}"
    );
    // Figures: the outpainting curves (FID and IS), a t-SNE and a qualitative grid per family.
    let names: Vec<String> = std::fs::read_dir(&paper)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // One pair per α of the sweep.
    for want in [
        "tex_mae_alpha0.25_fid_outpaint.png",
        "tex_mae_alpha1_is_outpaint.png",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    assert_eq!(
        names
            .iter()
            .filter(|n| n.ends_with("_qualitative.png"))
            .count(),
        3,
        "{names:?}"
    );
    assert!(
        names.iter().filter(|n| n.contains("_tsne")).count() >= 3,
        "{names:?}"
    );
    // The qualitative grid: 3 rows (2 forget + 1 retain), columns masked · 4 methods · truth.
    let q = image::open(paper.join("tex_palette_center_8_qualitative.png")).unwrap();
    // 16-px images scaled ×6 so that the column headers fit.
    let (cell, gap, left, top) = (96u32, 4u32, 170u32, 56u32);
    assert_eq!(q.width(), left + 6 * (cell + gap));
    assert_eq!(q.height(), top + 3 * (cell + gap));
    assert!(
        md.contains("Qualitative results — palette (tex) · center:8"),
        "{md}"
    );
    // Each cell saved its figure images and the rows' classes.
    let rows = std::fs::read_dir(d.path().join("r_palette/figure"))
        .unwrap()
        .count();
    assert_eq!(rows, 4, "one figure folder per cell");
}

/// The CPU-sized experiments (`experiments/paper-cpu/`, one per family) pass `check` offline:
/// their committed originals and oracles exist with the SHA-256 the files pin, and the price
/// counts the classes the run will use (the paper's split restricted to the source's classes).
#[test]
fn every_paper_cpu_file_passes_check() {
    if shared_data().is_none() {
        return common::absent("../shared/data");
    }
    let files = yaml_files("experiments/paper-cpu");
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["mae.yaml", "mage.yaml", "palette.yaml"]);
    let d = tempfile::tempdir().unwrap();
    for f in &files {
        let o = std::process::Command::new(bin())
            .args(["check", f.to_str().unwrap()])
            .env("I2I_UNLEARN_CACHE", d.path().join("cache"))
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{f:?}: {}\n{out}", stderr(&o));
        assert!(out.contains("committed"), "{f:?}: {out}");
        let classes = match f.file_name().unwrap().to_str().unwrap() {
            "mae.yaml" | "mage.yaml" => "(30 forget + 33 retain classes",
            _ => "(17 forget + 18 retain classes",
        };
        assert!(out.contains(classes), "{f:?}: no `{classes}` in\n{out}");
    }
}
