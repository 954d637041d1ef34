//! Experiments can start from a checkpoint (`weights:`) instead of pre-training, and the
//! `inpaint` command runs a checkpoint on a folder of images.

mod common;
#[path = "common/hub_server.rs"]
mod hub_server;
use common::*;

fn yaml(model_block: &str, masks: &str) -> String {
    format!(
        r#"name: ck
seeds: [0]
datasets:
  - name: tex
    source: {{kind: embedded, classes: 4, size: 32, seed: 2}}
    forget_classes: [0]
    retain_classes: [1, 2]
    train_per_class: 6
    eval_per_class: 4
models:
{model_block}
unlearn: {{steps: 2, retain_batch: 2, forget_batch: 2, warmup_steps: 0}}
methods: [original, ours]
masks: [{masks}]
metrics:
  is_splits: 2
  domain: {{steps: 5, batch_size: 8, widths: [4, 4, 4]}}
"#
    )
}

fn fixture_dir() -> String {
    format!("{}/tests/fixtures/mae/tiny", env!("CARGO_MANIFEST_DIR"))
}

/// `fetch` downloads a hub checkpoint named by `weights:`; the run then needs no network.
#[test]
fn fetch_then_offline_run_from_a_hub_checkpoint() {
    let files = ["config.json", "model.safetensors"]
        .iter()
        .map(|n| {
            let b = std::fs::read(format!("{}/{n}", fixture_dir())).unwrap();
            (
                format!("/test/mae-tiny/resolve/main/{n}"),
                hub_server::File::new(b),
            )
        })
        .collect();
    let server = hub_server::HubServer::start(files);
    let d = tempfile::tempdir().unwrap();
    let m = "  - {name: tiny-ck, family: mae, weights: test/mae-tiny}";
    let p = write(d.path(), "ck.yaml", &yaml(m, "center:4"));
    let hf = d.path().join("hf");
    let cache = d.path().join("cache");
    let online = HubEnv {
        hf_home: &hf,
        endpoint: &server.url,
        offline: false,
    };
    // The dry run asks the hub for each file's size.
    let o = run_hub(
        &["fetch", "--dry-run", p.to_str().unwrap()],
        d.path(),
        &online,
        &cache,
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    let size = std::fs::metadata(format!("{}/model.safetensors", fixture_dir()))
        .unwrap()
        .len();
    let line = out
        .lines()
        .find(|l| l.contains("hub:test/mae-tiny/model.safetensors"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        line.contains(&i2i_unlearn::util::human_bytes(size)),
        "{size} B: {line}"
    );
    let o = run_hub(&["fetch", p.to_str().unwrap()], d.path(), &online, &cache);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("model `tiny-ck`: checkpoint"), "{err}");
    drop(server);
    let offline = HubEnv {
        hf_home: &hf,
        endpoint: "http://127.0.0.1:9",
        offline: true,
    };
    let o = run_hub(&["run", p.to_str().unwrap()], d.path(), &offline, &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(d.path().join("results/ck/table.md").is_file());
}

#[test]
fn an_experiment_can_start_from_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    let m = format!(
        "  - {{name: tiny-ck, family: mae, weights: {}}}",
        fixture_dir()
    );
    // `retrain` is asked for, but a checkpoint has no oracle: the row is absent, the report
    // says why, and nothing is pre-trained.
    let text = yaml(&m, "center:4").replace(
        "methods: [original, ours]",
        "methods: [original, retrain, ours]",
    );
    let p = write(d.path(), "ck.yaml", &text);
    let o = run(
        &["run", p.to_str().unwrap()],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("checkpoint") && !err.contains("pre-trained"),
        "{err}"
    );
    assert!(!d.path().join("cache/pretrain").exists());
    let md = std::fs::read_to_string(d.path().join("results/ck/table.md")).unwrap();
    assert!(
        md.contains("No Retrain (oracle) row for model `tiny-ck`: it is loaded from a checkpoint")
            && !md.contains("| Retrain (oracle) |"),
        "{md}"
    );
    // The audit of a checkpoint: training-split members, held-out validation non-members.
    let manifest = std::fs::read_to_string(d.path().join("results/ck/data-tex.json")).unwrap();
    assert!(
        manifest.contains(
            "the checkpoint is taken to have been trained on the source's training split"
        ),
        "{manifest}"
    );
    assert!(md.contains("D_F MIA AUC"), "{md}");
    let rec = std::fs::read_dir(d.path().join("results/ck/cells"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(rec).unwrap();
    // Provenance: the checkpoint file's hash.
    let sha = i2i_unlearn::util::sha256_file(std::path::Path::new(&format!(
        "{}/model.safetensors",
        fixture_dir()
    )))
    .unwrap();
    assert!(text.contains(&sha), "weights hash not recorded");
}

#[test]
fn checkpoint_errors_before_any_output() {
    let d = tempfile::tempdir().unwrap();
    // The checkpoint's 8×8 grid cannot hold a centre 8×8 mask.
    let m = format!(
        "  - {{name: tiny-ck, family: mae, weights: {}}}",
        fixture_dir()
    );
    let p = write(d.path(), "a.yaml", &yaml(&m, "center:8"));
    let o = run(&["run", p.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("masks[0]"), "{}", stderr(&o));
    assert!(!d.path().join("results").exists());
    // config and weights together.
    let m = format!(
        "  - {{name: x, family: mae, weights: {}, config: {{hidden_size: 8}}}}",
        fixture_dir()
    );
    let p = write(d.path(), "b.yaml", &yaml(&m, "center:4"));
    let o = run(&["run", p.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("either `config`"), "{}", stderr(&o));
    // A folder without weights.
    let empty = d.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let m = format!("  - {{name: x, family: mae, weights: {}}}", empty.display());
    let p = write(d.path(), "c.yaml", &yaml(&m, "center:4"));
    let o = run(&["run", p.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("lacks config.json"), "{}", stderr(&o));
}

#[test]
fn inpaint_command_writes_pngs_and_tensors() {
    let Some(data) = shared_data() else {
        return common::absent("../shared/data");
    };
    let d = tempfile::tempdir().unwrap();
    let imgs = d.path().join("in");
    std::fs::create_dir_all(imgs.join("sub")).unwrap();
    for (i, name) in ["val_0.JPEG", "val_1.JPEG", "val_2.JPEG"]
        .iter()
        .enumerate()
    {
        let dst = if i == 2 {
            imgs.join("sub").join(name)
        } else {
            imgs.join(name)
        };
        std::fs::copy(data.join("tiny-imagenet-200/val/images").join(name), dst).unwrap();
    }
    std::fs::write(imgs.join("broken.jpg"), b"nope").unwrap();
    let out = d.path().join("out");
    let t = d.path().join("t.safetensors");
    let o = run(
        &[
            "inpaint",
            "--model",
            &fixture_dir(),
            "--mask",
            "center:4",
            "--images",
            imgs.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--save-tensors",
            t.to_str().unwrap(),
        ],
        d.path(),
        d.path(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("broken.jpg"),
        "unreadable files are named: {err}"
    );
    for f in ["val_0.png", "val_1.png", "sub/val_2.png"] {
        let img = image::open(out.join(f)).unwrap();
        assert_eq!((img.width(), img.height()), (32, 32));
    }
    let m = candle_core::safetensors::load(&t, &candle_core::Device::Cpu).unwrap();
    assert_eq!(m["predictions"].dims(), &[3, 3, 32, 32]);
    assert_eq!(m["mask"].dims(), &[3, 64]);
    let list = std::fs::read_to_string(format!("{}.files.txt", t.display())).unwrap();
    assert_eq!(
        list.lines().collect::<Vec<_>>(),
        ["sub/val_2.JPEG", "val_0.JPEG", "val_1.JPEG"]
    );
    // Visible pixels are the (resized) input's; hidden ones come from the prediction.
    let pm = m["mask"]
        .reshape((3, 1, 8, 8))
        .unwrap()
        .upsample_nearest2d(32, 32)
        .unwrap();
    let keep = pm
        .affine(-1.0, 1.0)
        .unwrap()
        .broadcast_as((3, 3, 32, 32))
        .unwrap();
    let vis = ((&m["outputs"] - &m["inputs"]).unwrap() * &keep)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap();
    assert_eq!(vis.to_scalar::<f32>().unwrap(), 0.0);
    let hid = ((&m["outputs"] - m["predictions"].clamp(0f32, 1f32).unwrap()).unwrap()
        * pm.broadcast_as((3, 3, 32, 32)).unwrap())
    .unwrap()
    .abs()
    .unwrap()
    .max_all()
    .unwrap();
    assert_eq!(hid.to_scalar::<f32>().unwrap(), 0.0);
}

/// A checkpoint holding NaN (a corrupted download, a diverged training run) is caught where it
/// is loaded: `run` fails with one line naming the checkpoint and the tensor and writes no cell;
/// `inpaint` exits non-zero and writes no image. (Before, both gave exit 0, black images and
/// finite-looking numbers.)
#[test]
fn a_checkpoint_with_nan_weights_fails_naming_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let ck = d.path().join("nan-ck");
    std::fs::create_dir_all(&ck).unwrap();
    std::fs::copy(
        format!("{}/config.json", fixture_dir()),
        ck.join("config.json"),
    )
    .unwrap();
    let dev = candle_core::Device::Cpu;
    let mut w =
        candle_core::safetensors::load(format!("{}/model.safetensors", fixture_dir()), &dev)
            .unwrap();
    let name = "decoder.decoder_pred.bias";
    let nan = (w[name].ones_like().unwrap() * f64::NAN).unwrap();
    w.insert(name.to_string(), nan);
    candle_core::safetensors::save(&w, ck.join("model.safetensors")).unwrap();

    let m = format!(
        "  - {{name: nan-ck, family: mae, weights: {}}}",
        ck.display()
    );
    let p = write(d.path(), "ck.yaml", &yaml(&m, "center:4"));
    let o = run(
        &["run", p.to_str().unwrap()],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains(&format!("tensor `{name}` holds NaN or infinite values"))
            && err.contains("checkpoint"),
        "{err}"
    );
    let cells = d.path().join("results/ck/cells");
    assert!(
        !cells.exists() || std::fs::read_dir(&cells).unwrap().next().is_none(),
        "no cell is written"
    );

    let images = d.path().join("imgs");
    std::fs::create_dir_all(&images).unwrap();
    image::RgbImage::from_pixel(32, 32, image::Rgb([40, 80, 120]))
        .save(images.join("a.png"))
        .unwrap();
    let out = d.path().join("out");
    let o = run(
        &[
            "inpaint",
            "--model",
            ck.to_str().unwrap(),
            "--images",
            images.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--mask",
            "center:4",
        ],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_ne!(o.status.code(), Some(0), "{err}");
    assert!(err.contains(name), "{err}");
    assert!(!out.join("a.png").exists(), "no image written");
}
