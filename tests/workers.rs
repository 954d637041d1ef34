//! Two processes on one grid and one output folder split the work: every cell is computed
//! exactly once, the original model is pre-trained once, and both exit 0 with the whole table.

mod common;
use common::*;
use std::process::{Command, Stdio};

#[test]
fn two_workers_share_one_folder_and_compute_each_cell_once() {
    let d = tempfile::tempdir().unwrap();
    let exp = write(d.path(), "w.yaml", &tiny_yaml("w", ""));
    let out = d.path().join("out");
    let cache = d.path().join("cache");
    let spawn = || {
        Command::new(bin())
            .args([
                "run",
                exp.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
            ])
            .current_dir(d.path())
            .env("I2I_UNLEARN_CACHE", &cache)
            .env("RAYON_NUM_THREADS", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let (ea, eb) = (stderr(&a), stderr(&b));
    assert_eq!(a.status.code(), Some(0), "{ea}");
    assert_eq!(b.status.code(), Some(0), "{eb}");
    // "[k/n] <label> ... FID retain …" is printed once per cell a process computed.
    let computed = |e: &str| -> Vec<String> {
        e.lines()
            .filter(|l| l.contains("FID retain"))
            .map(|l| {
                l.split_once("] ")
                    .map(|x| x.1)
                    .unwrap_or(l)
                    .split(": FID")
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    let mut all = computed(&ea);
    eprintln!(
        "worker A computed {}, worker B {}",
        all.len(),
        computed(&eb).len()
    );
    all.extend(computed(&eb));
    let n = all.len();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), n, "a cell was computed twice:\n{ea}\n---\n{eb}");
    let cells = std::fs::read_dir(out.join("cells")).unwrap().count();
    assert_eq!(
        n, cells,
        "every stored cell computed once:\n{ea}\n---\n{eb}"
    );
    let pretrained = [&ea, &eb]
        .iter()
        .filter(|e| e.contains("pre-trained"))
        .count();
    assert_eq!(
        pretrained, 1,
        "the original model is pre-trained once:\n{ea}\n---\n{eb}"
    );
    // Both wrote the whole table.
    let text = std::fs::read_to_string(out.join("runs.csv")).unwrap();
    assert!(text.lines().count() > cells);
}
