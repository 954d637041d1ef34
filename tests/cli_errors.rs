//! User mistakes give one line naming the file, line and valid choices, exit code 2, and no output.

mod common;
use common::*;

fn check_error(yaml: &str, want: &[&str]) -> String {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "bad.yaml", yaml);
    let o = run(
        &["run", p.to_str().unwrap()],
        d.path(),
        &d.path().join("cache"),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for w in want {
        assert!(err.contains(w), "`{w}` missing in: {err}");
    }
    assert!(
        !d.path().join("results").exists(),
        "no partial output on a config error"
    );
    err
}

#[test]
fn unknown_key_names_file_line_and_valid_keys() {
    let y = tiny_yaml("t", "colour: blue\n");
    let line = y.lines().position(|l| l.starts_with("colour")).unwrap() + 1;
    check_error(
        &y,
        &[
            &format!("bad.yaml:{line}:"),
            "unknown field `colour`",
            "datasets",
        ],
    );
}

#[test]
fn unknown_method_lists_the_registry() {
    let y = tiny_yaml("t", "").replace(
        "methods: [original, ours,",
        "methods: [original, forget_everything, ours,",
    );
    check_error(
        &y,
        &[
            "bad.yaml:",
            "unknown variant `forget_everything`",
            "random_encoder",
            "noisy_label",
        ],
    );
}

#[test]
fn unknown_mask_lists_the_kinds() {
    let y = tiny_yaml("t", "").replace("masks: [center:2]", "masks: [centre:2]");
    check_error(&y, &["bad.yaml:", "centre", "center:K", "outpaint:R"]);
}

#[test]
fn wrong_type_is_reported_with_its_line() {
    let y = tiny_yaml("t", "").replace("unlearn: {steps: 4,", "unlearn: {steps: four,");
    let line = y.lines().position(|l| l.starts_with("unlearn")).unwrap() + 1;
    check_error(&y, &[&format!("bad.yaml:{line}:"), "invalid type"]);
}

#[test]
fn semantic_errors_point_at_the_culprit() {
    let y = tiny_yaml("t", "").replace("retain_classes: [1, 2, 3]", "retain_classes: [1, 0, 3]");
    let line = y
        .lines()
        .position(|l| l.contains("retain_classes"))
        .unwrap()
        + 1;
    check_error(
        &y,
        &[
            &format!("bad.yaml:{line}:"),
            "retain_classes[1]",
            "also a forget class",
        ],
    );
    let y = tiny_yaml("t", "").replace("forget_classes: [0]", "forget_classes: [17]");
    check_error(&y, &["forget_classes[0]", "unknown class `17`"]);
    let y = tiny_yaml("t", "").replace("masks: [center:2]", "masks: [center:4]");
    check_error(&y, &["masks[0]", "must be below the grid size 4"]);
    let y = tiny_yaml("t", "").replace("hidden_size: 16,", "hidden_size: 16, hiden_layers: 3,");
    check_error(
        &y,
        &["models[0].config.hiden_layers", "unknown MAE config field"],
    );
    let y = tiny_yaml("t", "").replace(
        "unlearn: {steps: 4,",
        "unlearn: {augment: {crop_scale: [0.6, 0.2]}, steps: 4,",
    );
    check_error(&y, &["unlearn.augment.crop_scale", "0 < low ≤ high ≤ 1"]);
    // The optimiser fields every trainer shares are checked the same way everywhere.
    let y = tiny_yaml("t", "").replace(
        "unlearn: {steps: 4,",
        "unlearn: {betas: [1.0, 0.9], steps: 4,",
    );
    check_error(&y, &["unlearn.betas", "[0, 1)"]);
    let y = tiny_yaml("t", "").replace(
        "pretrain: {steps: 15,",
        "pretrain: {grad_clip: -1, steps: 15,",
    );
    check_error(&y, &["models[0].pretrain.grad_clip", "≥ 0"]);
    let y = tiny_yaml("t", "").replace(
        "pretrain: {steps: 15,",
        "pretrain: {data_parallel: 3, steps: 15,",
    );
    check_error(
        &y,
        &["models[0].pretrain.data_parallel", "divide batch_size"],
    );
    let y = tiny_yaml("t", "").replace(
        "domain: {steps: 15,",
        "domain: {weight_decay: .nan, steps: 15,",
    );
    check_error(&y, &["metrics.domain.weight_decay", "≥ 0"]);
    // Unlearning masks: a name, or a mask that fits the grid.
    let y = tiny_yaml("t", "").replace(
        "unlearn: {steps: 4,",
        "unlearn: {mask: everything, steps: 4,",
    );
    check_error(&y, &["not an unlearning mask", "family"]);
    let y = tiny_yaml("t", "").replace(
        "unlearn: {steps: 4,",
        "unlearn: {mask: 'center:4', steps: 4,",
    );
    check_error(&y, &["unlearn.mask", "must be below the grid size 4"]);
}

#[test]
fn missing_file_bad_flag_and_missing_results_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["run", "nope.yaml"], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot read experiment file nope.yaml"));
    let o = run(&["run", "x.yaml", "--shard", "3/2"], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["report", "results/none"], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("is not a folder"));
    let p = write(d.path(), "ok.yaml", &tiny_yaml("t", ""));
    let o = run(
        &["run", p.to_str().unwrap(), "--device", "cuda"],
        d.path(),
        d.path(),
    );
    if !cfg!(feature = "cuda") {
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("built without CUDA"), "{}", stderr(&o));
    }
}

#[test]
fn help_teaches_the_commands() {
    let d = tempfile::tempdir().unwrap();
    let o = run(&["--help"], d.path(), d.path());
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    for w in [
        "run",
        "report",
        "check",
        "fetch",
        "Exit codes",
        "experiments/quickstart.yaml",
    ] {
        assert!(out.contains(w), "{w}: {out}");
    }
    let o = run(&["run", "--help"], d.path(), d.path());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("--shard") && out.contains("Slurm"), "{out}");
}

#[test]
fn check_lists_cells_without_running() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "ok.yaml", &tiny_yaml("t", ""));
    let o = run(&["check", p.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // original × 2 seeds + 3 trained methods × 1 α × 2 seeds.
    assert!(out.contains("8 cells"), "{out}");
    assert!(!d.path().join("results").exists());
}

/// Off a terminal, long phases print a progress line at a bounded rate (here: every step), and a
/// closed stdout pipe ends the process without a panic.
#[test]
fn batch_logs_get_progress_lines_and_a_closed_pipe_is_quiet() {
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "t.yaml", &tiny_yaml("t", ""));
    let o = std::process::Command::new(bin())
        .args(["run", p.to_str().unwrap()])
        .current_dir(d.path())
        .env("I2I_UNLEARN_CACHE", d.path().join("cache"))
        .env("RAYON_NUM_THREADS", "1")
        .env("I2I_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.lines()
            .any(|l| l.starts_with("pre-train mae on tex: 15/15 (") && l.contains("/s, ")),
        "{err}"
    );
    assert!(err.contains("ETA"), "{err}");
    // `check` lists many lines; the reader closes the pipe after the first.
    let mut child = std::process::Command::new(bin())
        .args(["check", p.to_str().unwrap()])
        .current_dir(d.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
}

/// A relative data folder in an experiment file is relative to the file, not to the working
/// directory: the same file checks the same from anywhere, and a missing folder is named.
#[test]
fn relative_paths_are_relative_to_the_experiment_file() {
    let d = tempfile::tempdir().unwrap();
    let sub = d.path().join("exps");
    std::fs::create_dir_all(sub.join("data/train/a")).unwrap();
    std::fs::create_dir_all(sub.join("data/train/b")).unwrap();
    for (c, v) in [("a", 10u8), ("b", 200u8)] {
        for i in 0..3 {
            image::RgbImage::from_pixel(8, 8, image::Rgb([v, i * 40, 7]))
                .save(sub.join(format!("data/train/{c}/{i}.png")))
                .unwrap();
        }
    }
    let y = tiny_yaml("rel", "")
        .replace(
            "source: {kind: embedded, classes: 6, size: 16, seed: 1}",
            "source: {kind: image_folder, root: data, train: {dir: train}, val: {dir: train}}",
        )
        .replace("forget_classes: [0]", "forget_classes: [a]")
        .replace("retain_classes: [1, 2, 3]", "retain_classes: [b]")
        .replace("proxy_classes: [4, 5]", "proxy_classes: []")
        .replace(
            "methods: [original, ours, {name: ours, retain: proxy}, max_loss]",
            "methods: [original, ours]",
        );
    let p = write(&sub, "rel.yaml", &y);
    // From the file's folder's parent and from elsewhere: valid both times.
    for cwd in [d.path().to_path_buf(), std::env::temp_dir()] {
        let o = run(&["check", p.to_str().unwrap()], &cwd, d.path());
        assert_eq!(
            o.status.code(),
            Some(0),
            "from {}: {}",
            cwd.display(),
            stderr(&o)
        );
    }
    let y = y.replace("root: data,", "root: nowhere,");
    let p = write(&sub, "bad.yaml", &y);
    let o = run(&["check", p.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("exps/nowhere"), "{}", stderr(&o));
}

/// Inputs that used to crash deep inside a kernel, or be accepted silently, are one-line errors
/// of `check` naming the field (a test for each class of issue 15's "sizes of zero").
#[test]
fn bad_sizes_names_and_duplicates_are_rejected_up_front() {
    let cases: [(&str, &str, &[&str]); 9] = [
        (
            "hidden_size: 16,",
            "hidden_size: 0,",
            &["models[0].config.hidden_size", "at least 1"],
        ),
        (
            "image_size: 16,",
            "image_size: 0,",
            &["models[0].config.image_size", "at least 1"],
        ),
        (
            "num_hidden_layers: 1,",
            "num_hidden_layers: 1, layer_norm_eps: -1,",
            &["layer_norm_eps", "positive"],
        ),
        (
            "name: tex",
            "name: ../evil",
            &["datasets[0].name", "file names"],
        ),
        (
            "name: mae",
            "name: .hidden",
            &["models[0].name", "file names"],
        ),
        (
            "seeds: [0, 1]",
            "seeds: [0, 1, 0]",
            &["seeds[2]", "listed twice"],
        ),
        (
            "forget_classes: [0]",
            "forget_classes: [0, 0]",
            &["forget_classes[1]", "listed twice"],
        ),
        (
            "is_splits: 2",
            "is_splits: 7",
            &["eval_per_class", "fewer than metrics.is_splits = 7"],
        ),
        (
            "retain_classes: [1, 2, 3]",
            "retain_classes: [1, 2, 1]",
            &["retain_classes[2]", "listed twice"],
        ),
    ];
    for (from, to, want) in cases {
        let y = tiny_yaml("t", "").replacen(from, to, 1);
        assert_ne!(y, tiny_yaml("t", ""), "{from} not found in the tiny grid");
        check_error(&y, want);
    }
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "bad-name.yaml", &tiny_yaml("..", ""));
    let o = run(&["check", p.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("file names"), "{}", stderr(&o));
    // `is --splits 0` is an error, not a number.
    let o = run(
        &["is", d.path().to_str().unwrap(), "--splits", "0"],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--splits 0"), "{}", stderr(&o));
}

/// A failed command leaves the folder as it found it, and an output path that is a file is bad
/// input naming the path given.
#[test]
fn report_of_an_empty_folder_writes_nothing_and_a_file_as_output_is_bad_input() {
    let d = tempfile::tempdir().unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = run(&["report", empty.to_str().unwrap()], d.path(), d.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no finished cells"), "{}", stderr(&o));
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "report wrote files before failing"
    );
    let p = write(d.path(), "ok.yaml", &tiny_yaml("t", ""));
    let file = write(d.path(), "taken", "not a folder");
    let o = run(
        &[
            "run",
            p.to_str().unwrap(),
            "--output",
            file.to_str().unwrap(),
        ],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!("output {} is a file", file.display())),
        "{}",
        stderr(&o)
    );
    // A folder that exists but cannot be written, even by root: sysfs takes no new files.
    let locked = std::path::Path::new("/sys/kernel");
    if locked.is_dir() && std::fs::File::create(locked.join("i2i-probe")).is_err() {
        let o = run(
            &["run", p.to_str().unwrap(), "--output", "/sys/kernel"],
            d.path(),
            d.path(),
        );
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("the output folder /sys/kernel cannot be written"),
            "{}",
            stderr(&o)
        );
    } else {
        eprintln!("skipped the unwritable-folder case: /sys/kernel is writable or absent here");
    }
    // A folder that cannot be created names the path given.
    let o = run(
        &[
            "run",
            p.to_str().unwrap(),
            "--output",
            file.join("sub").to_str().unwrap(),
        ],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "cannot create the output folder {}",
            file.join("sub").display()
        )),
        "{}",
        stderr(&o)
    );
}

/// A run whose data fails validation (here: fewer images per class than `min_per_class`) exits 2
/// and leaves no output folder behind (it used to leave experiment.yaml and grid.json).
#[test]
fn a_run_failing_on_its_data_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    for c in ["a", "b"] {
        std::fs::create_dir_all(d.path().join(format!("data/train/{c}"))).unwrap();
        for i in 0..3u8 {
            image::RgbImage::from_pixel(8, 8, image::Rgb([i * 40, 9, 7]))
                .save(d.path().join(format!("data/train/{c}/{i}.png")))
                .unwrap();
        }
    }
    let y = tiny_yaml("bad_data", "")
        .replace(
            "source: {kind: embedded, classes: 6, size: 16, seed: 1}",
            "source: {kind: image_folder, root: data, train: {dir: train}, val: {dir: train}}\n    min_per_class: 5",
        )
        .replace("forget_classes: [0]", "forget_classes: [a]")
        .replace("retain_classes: [1, 2, 3]", "retain_classes: [b]")
        .replace("proxy_classes: [4, 5]", "proxy_classes: []")
        .replace(
            "methods: [original, ours, {name: ours, retain: proxy}, max_loss]",
            "methods: [original, ours]",
        );
    let p = write(d.path(), "bad.yaml", &y);
    let out = d.path().join("out");
    let o = run(
        &[
            "run",
            p.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ],
        d.path(),
        d.path(),
    );
    assert_ne!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!out.exists(), "the failed run left {}", out.display());
}

/// `inpaint` never overwrites an input: `--out` inside `--images`, two inputs with one output
/// name (`x.png`, `x.jpg`, `x.PNG`), and `--save-tensors` naming an input are refused with
/// exit 2 before anything is loaded or written; non-UTF-8 names keep outputs of their own.
#[test]
fn inpaint_refuses_what_would_overwrite_its_inputs() {
    use std::os::unix::ffi::OsStrExt;
    let d = tempfile::tempdir().unwrap();
    let images = d.path().join("imgs");
    std::fs::create_dir_all(&images).unwrap();
    let img = image::RgbImage::from_pixel(8, 8, image::Rgb([9, 9, 9]));
    img.save(images.join("a.png")).unwrap();
    let bad = |args: &[&str], want: &str| {
        let mut all = vec!["inpaint", "--model", "no-such-model", "--images", "imgs"];
        all.extend(args);
        let o = run(&all, d.path(), &d.path().join("cache"));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: `{want}` missing in {err}");
    };
    bad(&["--out", "imgs"], "is inside --images");
    bad(&["--out", "imgs/out"], "is inside --images");
    bad(
        &["--out", "o", "--save-tensors", "imgs/a.png"],
        "names an input image",
    );
    img.save_with_format(images.join("a.jpg"), image::ImageFormat::Jpeg)
        .unwrap();
    bad(&["--out", "o"], "would both be written to");
    std::fs::remove_file(images.join("a.jpg")).unwrap();
    // Two names that are not UTF-8 and differ only where a lossy conversion would make them one:
    // each keeps its own output, so the checks pass and the model is the first problem.
    for b in [b"\xff.png".as_slice(), b"\xfe.png".as_slice()] {
        img.save(images.join(std::ffi::OsStr::from_bytes(b)))
            .unwrap();
    }
    bad(&["--out", "o"], "no-such-model");
    assert!(!d.path().join("o").exists(), "nothing written");
}

/// A UTF-8 byte-order mark before the YAML is accepted; an empty `I2I_UNLEARN_CACHE` is unset
/// (the cache goes to $HOME/.cache/i2i-unlearn, not into the working folder).
#[test]
fn a_byte_order_mark_is_read_and_an_empty_cache_variable_is_unset() {
    let d = tempfile::tempdir().unwrap();
    let p = write(
        d.path(),
        "bom.yaml",
        &format!("\u{feff}{}", tiny_yaml("bom", "")),
    );
    let home = d.path().join("home");
    let work = d.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let o = std::process::Command::new(bin())
        .args(["check", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = std::process::Command::new(bin())
        .args(["-q", "run", p.to_str().unwrap(), "--output"])
        .arg(d.path().join("out"))
        .current_dir(&work)
        .env("I2I_UNLEARN_CACHE", "")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", &home)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(home.join(".cache/i2i-unlearn/pretrain").is_dir());
    assert!(
        !work.join("pretrain").exists(),
        "nothing cached in the working folder"
    );
}

/// Bad input files exit 2 with one line naming the file: a checkpoint whose `config.json` does
/// not parse, `--cache-dir` naming a file, `.npz` statistics whose `mu` and `sigma` disagree.
#[test]
fn bad_input_files_exit_2() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let ck = dir.join("ck");
    std::fs::create_dir(&ck).unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mae/tiny");
    std::fs::copy(
        fixture.join("model.safetensors"),
        ck.join("model.safetensors"),
    )
    .unwrap();
    std::fs::write(ck.join("config.json"), "{\"image_size\": 32, \"bad").unwrap();
    let imgs = dir.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    image::RgbImage::new(32, 32)
        .save(imgs.join("a.png"))
        .unwrap();
    let cache = dir.join("cache");
    let one_line_exit_2 = |args: &[&str], names: &str| {
        let o = run(args, dir, &cache);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(names), "{args:?} names {names}: {err}");
    };
    one_line_exit_2(
        &["inpaint", "--model", "ck", "--images", "imgs", "--out", "o"],
        "config.json",
    );
    std::fs::write(dir.join("cachefile"), "").unwrap();
    let exp = write(dir, "t.yaml", &tiny_yaml("t", ""));
    one_line_exit_2(
        &["run", exp.to_str().unwrap(), "--cache-dir", "cachefile"],
        "--cache-dir cachefile",
    );
    assert!(!dir.join("results/t").exists(), "nothing written");
    let mu =
        candle_core::Tensor::zeros(3, candle_core::DType::F64, &candle_core::Device::Cpu).unwrap();
    let sigma =
        candle_core::Tensor::zeros((4, 4), candle_core::DType::F64, &candle_core::Device::Cpu)
            .unwrap();
    candle_core::Tensor::write_npz(&[("mu", &mu), ("sigma", &sigma)], dir.join("bad.npz")).unwrap();
    let good = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inception/stats_a.npz");
    one_line_exit_2(&["fid", "bad.npz", good.to_str().unwrap()], "bad.npz");
}

/// An absurd or too large architecture is refused by `check` and `run` before anything is
/// allocated or written (exit 2, naming the field or the memory needed); `--ignore-memory-limit`
/// lets a merely large one through `check`.
#[test]
fn oversized_models_are_refused_before_work() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let cache = dir.join("cache");
    let absurd = tiny_yaml("big", "").replace("hidden_size: 16,", "hidden_size: 100000000,");
    let p = write(dir, "absurd.yaml", &absurd);
    for cmd in ["check", "run"] {
        let o = run(&[cmd, p.to_str().unwrap()], dir, &cache);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("hidden_size") && err.contains("implausibly large"),
            "{err}"
        );
    }
    let large = tiny_yaml("big", "")
        .replace("hidden_size: 16,", "hidden_size: 65536,")
        .replace("num_hidden_layers: 1,", "num_hidden_layers: 4096,")
        .replace("intermediate_size: 32,", "intermediate_size: 65536,");
    let p = write(dir, "large.yaml", &large);
    for cmd in ["check", "run"] {
        let o = run(&[cmd, p.to_str().unwrap()], dir, &cache);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.contains("GiB to unlearn") && err.contains("--ignore-memory-limit"),
            "{err}"
        );
    }
    assert!(!dir.join("results").exists(), "nothing written");
    let o = run(
        &["check", p.to_str().unwrap(), "--ignore-memory-limit"],
        dir,
        &cache,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}
