//! The `fid`, `is` and `kid` commands end to end: folders of real photographs, a `--weights`
//! file, the last output line, `.npz` statistics, unreadable files, bad input; and the URL
//! weights download (resumed, verified) against a loopback server.

mod common;
#[path = "common/hub_server.rs"]
mod hub_server;
use common::*;
use std::path::{Path, PathBuf};

fn folder(dir: &Path, src: &Path, files: &[String]) {
    std::fs::create_dir_all(dir).unwrap();
    for f in files {
        std::fs::copy(src.join(f), dir.join(Path::new(f).file_name().unwrap())).unwrap();
    }
}

fn last_line(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .lines()
        .last()
        .unwrap_or("")
        .to_string()
}

#[test]
fn fid_is_kid_commands() {
    let Some(data) = shared_data() else {
        return common::absent("../shared/data");
    };
    let d = tempfile::tempdir().unwrap();
    let w = d.path().join("w.safetensors");
    i2i_unlearn::metrics::inception::formula::write_weights(
        i2i_unlearn::metrics::inception::Variant::Fid,
        &w,
    )
    .unwrap();
    let a: Vec<String> = (0..12)
        .map(|i| format!("tiny-imagenet-200/val/images/val_{i}.JPEG"))
        .collect();
    let b: Vec<String> = (1..=12)
        .map(|i| format!("miniplaces/data/images/val/{i:08}.jpg"))
        .collect();
    folder(&d.path().join("a"), &data, &a);
    folder(&d.path().join("b/nested"), &data, &b);
    std::fs::write(d.path().join("b/broken.png"), b"garbage").unwrap();
    let ws = w.to_str().unwrap();
    let o = run(
        &[
            "fid",
            "a",
            "b",
            "--weights",
            ws,
            "--dims",
            "64",
            "--save-stats",
            "a.npz",
        ],
        d.path(),
        d.path(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("broken.png"),
        "unreadable files are named: {err}"
    );
    let line = last_line(&o);
    let fid: f64 = line
        .strip_prefix("FID: ")
        .unwrap_or_else(|| panic!("{line}"))
        .parse()
        .unwrap();
    assert!(fid > 0.0 && fid.is_finite());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("pytorch-fid"),
        "protocol printed"
    );
    // Saved statistics give the same distance, as pytorch-fid's .npz files do.
    let o = run(
        &[
            "fid",
            "b",
            "--weights",
            ws,
            "--dims",
            "64",
            "--save-stats",
            "b.npz",
        ],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run(
        &["fid", "a.npz", "b.npz", "--dims", "64"],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let again: f64 = last_line(&o)
        .strip_prefix("FID: ")
        .unwrap()
        .parse()
        .unwrap();
    assert!((again - fid).abs() <= 1e-9 * fid.abs(), "{again} vs {fid}");
    // N below the dimension is warned about.
    let o = run(
        &["fid", "a", "b", "--weights", ws, "--dims", "768"],
        d.path(),
        d.path(),
    );
    assert!(
        stderr(&o).contains("below the feature dimension"),
        "{}",
        stderr(&o)
    );
    // IS and KID print their result last.
    let o = run(
        &["is", "a", "--weights", ws, "--splits", "2"],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        last_line(&o).starts_with("IS: ") && last_line(&o).contains(" ± "),
        "{}",
        last_line(&o)
    );
    let o = run(
        &[
            "kid",
            "a",
            "b",
            "--weights",
            ws,
            "--subsets",
            "5",
            "--subset-size",
            "10",
        ],
        d.path(),
        d.path(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(last_line(&o).starts_with("KID: "), "{}", last_line(&o));
    // Bad input: exit 2 with one line.
    for args in [
        vec!["fid", "a", "missing", "--weights", ws],
        vec!["fid", "a", "b", "--weights", "nope.pth"],
        vec!["fid", "a", "b", "--weights", ws, "--dims", "100"],
        vec!["fid", "a"],
    ] {
        let o = run(&args, d.path(), d.path());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert_eq!(
            stderr(&o).trim().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&o)
        );
    }
    // A weights file missing a tensor is named.
    let mut sd = i2i_unlearn::metrics::inception::formula::state_dict(
        i2i_unlearn::metrics::inception::Variant::Fid,
    )
    .unwrap();
    sd.remove("Mixed_6c.branch7x7dbl_3.bn.running_var");
    let bad = d.path().join("bad.safetensors");
    candle_core::safetensors::save(&sd, &bad).unwrap();
    let o = run(
        &["fid", "a", "b", "--weights", bad.to_str().unwrap()],
        d.path(),
        d.path(),
    );
    assert!(
        stderr(&o).contains("Mixed_6c.branch7x7dbl_3.bn.running_var"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn url_weights_download_resumes_and_verifies() {
    use std::collections::HashMap;
    let bytes: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let sha = i2i_unlearn::util::sha256_hex(&bytes);
    let mut f = hub_server::File::new(bytes.clone());
    f.cut_first = true;
    let server = hub_server::HubServer::start(HashMap::from([("/w/file.pth".to_string(), f)]));
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("file.pth");
    i2i_unlearn::weights::download_verified(
        &format!("{}/w/file.pth", server.url),
        &sha[..8],
        &dest,
    )
    .unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), bytes);
    let log = server.log.lock().unwrap();
    assert!(
        log.requests.iter().any(|(_, r, _)| r
            .as_deref()
            .is_some_and(|r| r.starts_with("bytes=") && r != "bytes=0-")),
        "no resume: {:?}",
        log.requests
    );
    drop(log);
    // A wrong hash prefix: an error, and nothing left behind.
    let dest2: PathBuf = d.path().join("other.pth");
    let e = i2i_unlearn::weights::download_verified(
        &format!("{}/w/file.pth", server.url),
        "00000000",
        &dest2,
    )
    .unwrap_err();
    assert!(format!("{e:#}").contains("does not start with"), "{e:#}");
    assert!(!dest2.exists() && !d.path().join("other.pth.part").exists());
}
