//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_i2i-unlearn"))
}

/// A tiny experiment that runs in seconds: 6 texture classes at 16 px, a 1-layer MAE.
pub fn tiny_yaml(name: &str, extra: &str) -> String {
    format!(
        r#"name: {name}
seeds: [0, 1]
datasets:
  - name: tex
    source: {{kind: embedded, classes: 6, size: 16, seed: 1}}
    forget_classes: [0]
    retain_classes: [1, 2, 3]
    proxy_classes: [4, 5]
    train_per_class: 8
    eval_per_class: 6
models:
  - name: mae
    family: mae
    config: {{image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, decoder_hidden_size: 16, decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 32}}
    pretrain: {{steps: 15, batch_size: 8}}
unlearn: {{steps: 4, retain_batch: 4, forget_batch: 4, warmup_steps: 1}}
methods: [original, ours, {{name: ours, retain: proxy}}, max_loss]
alphas: [0.25]
masks: [center:2]
metrics:
  batch_size: 16
  is_splits: 2
  domain: {{steps: 15, batch_size: 16, widths: [8, 8, 8]}}
{extra}"#
    )
}

/// The grid part (model … metrics) of the hub data tests' experiments: a 1-layer MAE at 16 px,
/// original + ours, seconds to run.
pub const TINY_HUB_GRID: &str = "models:
  - name: mae
    family: mae
    config: {image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, decoder_hidden_size: 16, decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 32}
    pretrain: {steps: 5, batch_size: 8}
unlearn: {steps: 2, retain_batch: 2, forget_batch: 2, warmup_steps: 0}
methods: [original, ours]
masks: [center:2]
metrics: {is_splits: 2, domain: {steps: 5, batch_size: 8, widths: [4, 4, 4]}}
";

/// Where the binary finds the hub: its cache (HF_HOME), endpoint, and whether it is offline.
pub struct HubEnv<'a> {
    pub hf_home: &'a Path,
    pub endpoint: &'a str,
    pub offline: bool,
}

/// The binary with a hub environment and the harness cache, in `cwd`, on one thread.
pub fn run_hub(args: &[&str], cwd: &Path, hub: &HubEnv, cache: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("HF_HOME", hub.hf_home)
        .env("HF_ENDPOINT", hub.endpoint)
        .env("HF_HUB_OFFLINE", if hub.offline { "1" } else { "0" })
        .env("I2I_UNLEARN_CACHE", cache)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("binary runs")
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn run(args: &[&str], cwd: &Path, cache: &Path) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env("I2I_UNLEARN_CACHE", cache)
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .expect("binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The columns `names` of every row of a runs.csv, as text.
pub fn csv_columns(path: &Path, names: &[&str]) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cols: Vec<usize> = names
        .iter()
        .map(|n| header.iter().position(|h| h == n).unwrap())
        .collect();
    lines
        .map(|l| {
            // The protocol column is quoted and may contain commas; the columns we need come first.
            let f: Vec<&str> = l.split(',').collect();
            cols.iter().map(|&c| f[c].to_string()).collect()
        })
        .collect()
}

/// Rows of a runs.csv as (cell, set, metric, value).
pub fn csv_rows(path: &Path) -> Vec<(String, String, String, String)> {
    csv_columns(path, &["cell", "set", "metric", "value"])
        .into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone(), r[3].clone()))
        .collect()
}

/// `../shared/data` beside the repository, if present.
pub fn shared_data() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    p.is_dir().then_some(p)
}

/// The seven method rows of a grid that lists every method.
/// The row keys of every method of the registry that a grid pre-trained here lists (all but the
/// retrain oracle, which has tests of its own), from `MethodName::ALL`: a method added to the
/// registry but missing from the family grids fails their tests. `ours` also with a proxy retain
/// set; an ε-swept method's rows carry their ε (`controllable+eps0.5`).
pub fn every_method() -> Vec<String> {
    use i2i_unlearn::names::MethodName;
    let mut v: Vec<String> = MethodName::ALL
        .iter()
        .filter(|m| **m != MethodName::Retrain)
        .map(|m| m.as_str().to_string())
        .collect();
    v.push("ours+proxy".into());
    v
}

/// Run the grid `yaml` (written into `dir`) to `dir/out`: it must exit 0 with a row for every
/// method, and a second run must find every cell done. Returns the output folder.
pub fn run_every_method_and_resume(dir: &Path, yaml: &str) -> PathBuf {
    let exp = write(dir, "grid.yaml", yaml);
    let out = dir.join("out");
    let cache = dir.join("cache");
    let args = [
        "run",
        exp.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    let o = run(&args, dir, &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    for m in every_method() {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!(",{m},")) || l.contains(&format!(",{m}+eps"))),
            "no row for {m} in\n{text}"
        );
    }
    let again = run(&args, dir, &cache);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 to run"),
        "a second run recomputed cells: {}",
        stderr(&again)
    );
    out
}

/// Run the experiment `exp` online against the hub at `endpoint` (into `dir/out1`), then offline
/// from the caches it filled (into `dir/out2`): both exit 0 with an `ours` row.
pub fn run_online_then_offline(exp: &Path, dir: &Path, endpoint: &str) {
    let hf = dir.join("hf");
    let cache = dir.join("cache");
    for (offline, out) in [(false, "out1"), (true, "out2")] {
        let out = dir.join(out);
        let env = HubEnv {
            hf_home: &hf,
            endpoint,
            offline,
        };
        let o = run_hub(
            &[
                "run",
                exp.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ],
            dir,
            &env,
            &cache,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
        assert!(text.lines().any(|l| l.contains(",ours,")), "{text}");
    }
}

/// Called where a test's `../shared` input is missing: fails, naming what is missing, so that an
/// absent folder can never turn a red test green. Set `I2I_SKIP_SHARED=1` to skip such tests
/// knowingly (the note is printed); `.ci/run` never sets it.
pub fn absent(what: &str) {
    if std::env::var("I2I_SKIP_SHARED").is_ok_and(|v| v == "1") {
        eprintln!("skipped (I2I_SKIP_SHARED=1): {what} is absent");
        return;
    }
    panic!(
        "{what} is absent: put the team's shared folder beside this repository (../shared), \
         or set I2I_SKIP_SHARED=1 to skip the tests that read it"
    );
}

/// (member path, bytes) pairs as a tar archive, optionally gzipped.
pub fn tar_of(members: &[(String, Vec<u8>)], gz: bool) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, p, data.as_slice()).unwrap();
    }
    let raw = b.into_inner().unwrap();
    if !gz {
        return raw;
    }
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&raw).unwrap();
    e.finish().unwrap()
}
