//! The documented Slurm job arrays (tools/slurm/*.sbatch, included by docs/slurm.md) submitted to
//! a real single-node cluster (tools/slurm/cluster.sh: munged, slurmctld and slurmd of Debian's
//! slurm-wlm, started for the test and stopped after it), on seconds-long grids:
//!
//! 1. the `--shard` array, N = 3, merged with `report`: the same runs.csv as one process;
//! 2. the shared-folder array, 3 workers: one cancelled while it holds a claim, then requeued;
//!    every cell is evaluated once, every unlearned model stored once, the table complete;
//! 3. one task killed by its time limit, then resubmitted: what it finished is kept, not redone.
//!
//! Needs root (the daemons run as root) and slurm-wlm + munge: `.ci/run` installs them, and the
//! test installs them itself with apt-get where they are missing. Where they cannot be installed
//! it fails, saying so; `I2I_SKIP_SLURM=1` skips it knowingly.

mod common;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn has(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether Slurm is there (installing it where it is not); `false` only with I2I_SKIP_SLURM=1.
fn slurm_available() -> bool {
    if !(has("sbatch") && has("munged")) && has("apt-get") {
        let o = Command::new("sh")
            .args([
                "-c",
                "apt-get update -qq && apt-get install -y -qq slurm-wlm munge",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output();
        eprintln!("installing slurm-wlm and munge: {:?}", o.map(|o| o.status));
    }
    if has("sbatch") && has("munged") {
        return true;
    }
    if std::env::var("I2I_SKIP_SLURM").is_ok_and(|v| v == "1") {
        eprintln!("skipped (I2I_SKIP_SLURM=1): Slurm is not installed");
        return false;
    }
    panic!(
        "Slurm is not installed and `apt-get install slurm-wlm munge` failed: install them \
         (as root), or set I2I_SKIP_SLURM=1 to skip this test"
    );
}

/// A running cluster; stopped when dropped, even after a failed assertion.
struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
}

impl Cluster {
    fn start(dir: &Path) -> Cluster {
        let o = Command::new("bash")
            .arg(root().join("tools/slurm/cluster.sh"))
            .arg("start")
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "the cluster did not start:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        Cluster {
            dir: dir.to_path_buf(),
            conf: dir.join("slurm.conf"),
        }
    }

    fn cmd(&self, bin: &str) -> Command {
        let mut c = Command::new(bin);
        c.env("SLURM_CONF", &self.conf);
        c
    }

    /// `sbatch --parsable ARGS SCRIPT` from `cwd` with `env`; the job id.
    fn sbatch(&self, cwd: &Path, args: &[&str], script: &str, env: &[(&str, String)]) -> String {
        let mut c = self.cmd("sbatch");
        c.current_dir(cwd).arg("--parsable").args(args);
        c.arg(root().join("tools/slurm").join(script));
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(o.status.success(), "sbatch: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// Wait until no task of `job` is pending or running.
    fn wait(&self, job: &str, limit: Duration) {
        let start = Instant::now();
        loop {
            let o = self.cmd("squeue").args(["-h", "-j", job]).output().unwrap();
            if String::from_utf8_lossy(&o.stdout).trim().is_empty() {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "job {job} still queued after {limit:?}: {}",
                String::from_utf8_lossy(&o.stdout)
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// `scontrol show job ID`'s `JobState=`.
    fn state(&self, job: &str) -> String {
        let o = self
            .cmd("scontrol")
            .args(["show", "job", job])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("JobState="))
            .unwrap_or("?")
            .to_string()
    }

    fn run(&self, bin: &str, args: &[&str]) {
        let o = self.cmd(bin).args(args).output().unwrap();
        assert!(o.status.success(), "{bin} {args:?}: {}", stderr(&o));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(root().join("tools/slurm/cluster.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A tiny grid whose unlearning runs take about `steps / 2000` s each on one thread; with many
/// steps only the methods that descend (Max Loss ascends, and diverges over thousands of steps),
/// at two α.
fn grid(name: &str, steps: usize, seeds: &str) -> String {
    let methods = if steps > 1000 {
        "methods: [original, ours, {name: ours, retain: proxy}]\nalphas: [0.25, 0.5]"
    } else {
        "methods: [original, ours, {name: ours, retain: proxy}, max_loss]\nalphas: [0.25]"
    };
    common::tiny_yaml(name, "")
        .replace(
            "methods: [original, ours, {name: ours, retain: proxy}, max_loss]\nalphas: [0.25]",
            methods,
        )
        .replace(
            "unlearn: {steps: 4, retain_batch: 4, forget_batch: 4, warmup_steps: 1}",
            &format!(
                "unlearn: {{steps: {steps}, retain_batch: 4, forget_batch: 4, warmup_steps: 1}}"
            ),
        )
        .replace("seeds: [0, 1]", &format!("seeds: {seeds}"))
}

/// The environment of a submission: the binary, the experiment, the results folder, the cache.
fn job_env(exp: &Path, out: &Path, cache: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("I2I_UNLEARN", common::bin().display().to_string()),
        ("EXPERIMENT", exp.display().to_string()),
        ("OUT", out.display().to_string()),
        ("I2I_UNLEARN_CACHE", cache.display().to_string()),
    ]
}

/// Write `yaml` and submit `script` as an array of 3 one-CPU tasks from `dir` (logs in
/// `dir/logs`); the job id, the experiment file, the results folder, the cache.
fn submit_three(
    c: &Cluster,
    dir: &Path,
    yaml: &str,
    script: &str,
) -> (String, PathBuf, PathBuf, PathBuf) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let exp = common::write(dir, "grid.yaml", yaml);
    let (out, cache) = (dir.join("out"), dir.join("cache"));
    let job = c.sbatch(
        dir,
        &["--array=0-2", "--cpus-per-task=1", "--mem=2G", "--time=10"],
        script,
        &job_env(&exp, &out, &cache),
    );
    (job, exp, out, cache)
}

/// Every `[i/n] … : FID retain` line (one per evaluated cell) of the logs under `logs`, counted
/// by cell title; and every `unlearned in` line, counted by stored file.
fn evaluations(logs: &Path) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let (mut cells, mut models) = (BTreeMap::new(), BTreeMap::new());
    for e in std::fs::read_dir(logs).unwrap().flatten() {
        for line in std::fs::read_to_string(e.path()).unwrap().lines() {
            if let (Some(i), Some(j)) = (line.find("] "), line.find(": FID retain")) {
                *cells.entry(line[i + 2..j].to_string()).or_default() += 1;
            }
            if let Some(k) = line.find(": unlearned in ") {
                let file = line.rsplit("→ ").next().unwrap_or(&line[k..]).to_string();
                *models.entry(file).or_default() += 1;
            }
        }
    }
    (cells, models)
}

/// The cell ids of a results folder's grid.
fn grid_cells(out: &Path) -> BTreeSet<String> {
    let g: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("grid.json")).unwrap()).unwrap();
    g["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect()
}

fn stored_cells(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(dir.join("cells"))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .map(|e| {
                    let id = e.path().file_stem().unwrap().to_string_lossy().to_string();
                    (id, e.metadata().unwrap().modified().unwrap())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn documented_job_arrays_under_a_real_slurm_cluster() {
    if !slurm_available() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(&d.path().join("cluster"));
    let t = Instant::now();
    shard_array_merges_to_the_single_process_table(&cluster, &d.path().join("s1"));
    eprintln!(
        "scenario 1 (shard array) in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    shared_folder_survives_a_cancelled_claim_holder(&cluster, &d.path().join("s2"));
    eprintln!(
        "scenario 2 (shared folder, scancel + requeue) in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    time_limit_keeps_finished_work(&cluster, &d.path().join("s3"));
    eprintln!(
        "scenario 3 (time limit, resubmit) in {:.0} s",
        t.elapsed().as_secs_f64()
    );
}

/// 1. `--shard` array of 3 with one CPU each, merged by `report`: row for row the runs.csv of
///    one process on the whole grid; `--cpus-per-task` reached RAYON_NUM_THREADS.
fn shard_array_merges_to_the_single_process_table(c: &Cluster, dir: &Path) {
    let (job, exp, out, cache) = submit_three(
        c,
        dir,
        &grid("slurm_shards", 200, "[0, 1]"),
        "shard_array.sbatch",
    );
    c.wait(&job, Duration::from_secs(300));
    for k in 0..3 {
        assert_eq!(c.state(&format!("{job}_{k}")), "COMPLETED", "task {k}");
    }
    let log = std::fs::read_to_string(dir.join(format!("logs/i2i-unlearn-{job}_0.log"))).unwrap();
    assert!(log.contains("shard 1/3, 1 threads"), "{log}");
    let shards: Vec<PathBuf> = (1..=3).map(|k| out.join(format!("shard-{k}"))).collect();
    // Each cell of the grid computed by exactly one shard.
    let mut seen = BTreeSet::new();
    for s in &shards {
        for id in stored_cells(s).into_keys() {
            assert!(seen.insert(id.clone()), "cell {id} computed by two shards");
        }
    }
    assert_eq!(
        seen,
        grid_cells(&shards[0]),
        "the shards together computed the grid"
    );
    eprintln!("shard array: {} cells, each by one shard", seen.len());
    let merged = dir.join("merged");
    let mut args = vec!["report".to_string()];
    args.extend(shards.iter().map(|s| s.display().to_string()));
    args.extend(["--out".into(), merged.display().to_string()]);
    let o = common::run(
        &args.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        dir,
        &cache,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let single = dir.join("single");
    let o = common::run(
        &[
            "run",
            exp.to_str().unwrap(),
            "--output",
            single.to_str().unwrap(),
        ],
        dir,
        &cache,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (a, b) = (
        std::fs::read_to_string(merged.join("runs.csv")).unwrap(),
        std::fs::read_to_string(single.join("runs.csv")).unwrap(),
    );
    let differ: Vec<(&str, &str)> = a.lines().zip(b.lines()).filter(|(x, y)| x != y).collect();
    assert!(
        differ.is_empty() && a.lines().count() == b.lines().count(),
        "merged shards vs one process: {} vs {} rows, differing rows {differ:#?}",
        a.lines().count(),
        b.lines().count()
    );
}

/// 2. Three workers on one folder: the first worker seen holding a claim is cancelled, then
///    requeued (its log appended). Each cell is evaluated once and each unlearned model stored
///    once over all logs; every cell of the grid is stored; the table has every row.
fn shared_folder_survives_a_cancelled_claim_holder(c: &Cluster, dir: &Path) {
    let (job, _, out, _) = submit_three(
        c,
        dir,
        &grid("slurm_shared", 3000, "[0, 1]"),
        "shared_array.sbatch",
    );
    // The first claim of an unlearned model: its holder's array task.
    let start = Instant::now();
    let victim = loop {
        let found = std::fs::read_dir(out.join("claims")).ok().and_then(|rd| {
            rd.flatten().find_map(|e| {
                let text = std::fs::read_to_string(e.path()).ok()?;
                let pid = text.split_whitespace().nth(1)?;
                let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
                env.split(|&b| b == 0).find_map(|kv| {
                    let kv = String::from_utf8_lossy(kv);
                    kv.strip_prefix("SLURM_ARRAY_TASK_ID=")
                        .map(|s| s.to_string())
                })
            })
        });
        if let Some(task) = found {
            break task;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no worker held a claim within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let task = format!("{job}_{victim}");
    c.run("scancel", &[&task]);
    let start = Instant::now();
    while c.state(&task) != "CANCELLED" {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{task} not cancelled"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Requeued jobs wait ~2 minutes before they may start; let it start now.
    c.run("scontrol", &["requeue", &task]);
    c.run(
        "scontrol",
        &["update", &format!("JobId={task}"), "StartTime=now"],
    );
    c.wait(&job, Duration::from_secs(400));
    for k in 0..3 {
        assert_eq!(c.state(&format!("{job}_{k}")), "COMPLETED", "task {k}");
    }
    let (cells, models) = evaluations(&dir.join("logs"));
    let twice: Vec<_> = cells.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "cells evaluated more than once: {twice:?}"
    );
    let twice: Vec<_> = models.iter().filter(|(_, n)| **n != 1).collect();
    assert!(
        twice.is_empty(),
        "unlearned models stored more than once: {twice:?}"
    );
    let want = grid_cells(&out);
    let have: BTreeSet<String> = stored_cells(&out).into_keys().collect();
    assert_eq!(want, have, "every cell of the grid is stored");
    assert_eq!(cells.len(), want.len(), "every cell was evaluated, once");
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    for label in ["Original", "Ours", "Ours (proxy D_R)"] {
        assert!(
            table.contains(&format!("| {label} |")),
            "{label} missing:\n{table}"
        );
    }
    let victim_log =
        std::fs::read_to_string(dir.join(format!("logs/i2i-unlearn-shared-{job}_{victim}.log")))
            .unwrap();
    assert!(
        victim_log.contains("restart 1"),
        "the requeued task appended to its log:\n{victim_log}"
    );
    assert!(!out.join("claims").exists(), "no claims left after the run");
}

/// 3. One task with a one-minute limit on about two minutes of work: Slurm kills it (TIMEOUT);
///    resubmitted, it keeps every cell and unlearned model the first run stored (same files,
///    unchanged) and computes only the rest.
fn time_limit_keeps_finished_work(c: &Cluster, dir: &Path) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let exp = common::write(dir, "grid.yaml", &grid("slurm_limit", 20000, "[0, 1, 2]"));
    let (out, cache) = (dir.join("out"), dir.join("cache"));
    let env = job_env(&exp, &out, &cache);
    let args = ["--array=0", "--cpus-per-task=1", "--mem=2G"];
    let first = c.sbatch(
        dir,
        &[&args[..], &["--time=1"]].concat(),
        "shard_array.sbatch",
        &env,
    );
    c.wait(&first, Duration::from_secs(240));
    assert_eq!(c.state(&format!("{first}_0")), "TIMEOUT");
    let shard = out.join("shard-1");
    let kept = stored_cells(&shard);
    let models: BTreeMap<String, std::time::SystemTime> =
        std::fs::read_dir(shard.join("unlearned"))
            .unwrap()
            .flatten()
            .map(|e| {
                (
                    e.file_name().to_string_lossy().to_string(),
                    e.metadata().unwrap().modified().unwrap(),
                )
            })
            .collect();
    let total = grid_cells(&shard).len();
    assert!(
        !kept.is_empty() && kept.len() < total,
        "the time limit should cut the run: {} of {total} cells stored",
        kept.len()
    );
    let second = c.sbatch(
        dir,
        &[&args[..], &["--time=10"]].concat(),
        "shard_array.sbatch",
        &env,
    );
    c.wait(&second, Duration::from_secs(400));
    assert_eq!(c.state(&format!("{second}_0")), "COMPLETED");
    let after = stored_cells(&shard);
    assert_eq!(
        after.len(),
        total,
        "the resubmitted task completed the grid"
    );
    for (id, t) in &kept {
        assert_eq!(after.get(id), Some(t), "cell {id} was recomputed");
    }
    for e in std::fs::read_dir(shard.join("unlearned"))
        .unwrap()
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(t) = models.get(&name) {
            // A model stored by the killed run is read, not trained again.
            assert_eq!(
                &e.metadata().unwrap().modified().unwrap(),
                t,
                "{name} rewritten"
            );
        }
    }
    let log =
        std::fs::read_to_string(dir.join(format!("logs/i2i-unlearn-{second}_0.log"))).unwrap();
    assert!(
        log.contains(&format!("{} already done", kept.len())),
        "the second run skips the kept cells:\n{log}"
    );
    eprintln!(
        "time limit: {} of {total} cells and {} files under unlearned/ kept by the killed run",
        kept.len(),
        models.len()
    );
}
