//! The hub client against a loopback server that speaks the hub's URLs: download into the
//! Python-compatible cache, cache reuse without requests, offline mode, the `.bin` fallback, a
//! download cut half-way that resumes, a corrupted mirror, tokens, and missing repos.

mod common;
#[path = "common/hub_server.rs"]
mod hub_server;

use candle_core::Device;
use hub_server::{File, HubServer, COMMIT};
use i2i_unlearn::hub::{Hub, HubConfig};
use i2i_unlearn::models::mae;
use i2i_unlearn::weights::checkpoint;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(f: &str) -> Vec<u8> {
    std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mae/tiny")
            .join(f),
    )
    .unwrap()
}

fn repo_files(repo: &str, names: &[&str]) -> HashMap<String, File> {
    names
        .iter()
        .map(|n| (format!("/{repo}/resolve/main/{n}"), File::new(fixture(n))))
        .collect()
}

fn hub(server: &HubServer, cache: &Path, offline: bool, token: Option<&str>) -> Hub {
    Hub::new(HubConfig {
        cache_dir: cache.to_path_buf(),
        endpoint: server.url.clone(),
        token: token.map(String::from),
        offline,
    })
    .unwrap()
}

/// The tiny MAE fixture loaded from its local folder: what every download must equal.
fn fixture_checkpoint() -> (mae::MaeConfig, i2i_unlearn::models::Weights) {
    let ck = checkpoint::resolve(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mae/tiny")
            .to_str()
            .unwrap(),
        None,
    )
    .unwrap();
    mae::load_checkpoint(&ck, &Device::Cpu).unwrap()
}

fn same_weights(a: &i2i_unlearn::models::Weights, b: &i2i_unlearn::models::Weights) {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (k, v) in a {
        let d = i2i_unlearn::util::max_abs_diff(v, &b[k]).unwrap();
        assert_eq!(d, 0.0, "{k}");
    }
}

#[test]
fn download_cache_reuse_and_offline() {
    let server = HubServer::start(repo_files(
        "test/mae-tiny",
        &["config.json", "model.safetensors"],
    ));
    let d = tempfile::tempdir().unwrap();
    let cache = d.path().join("hub");
    let h = hub(&server, &cache, false, None);
    let ck = checkpoint::resolve("test/mae-tiny", Some(&h)).unwrap();
    // Downloads get the umask's permissions (a cache shared by a group must be readable by it).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = d.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        for f in [&ck.weights, &ck.config] {
            let real = std::fs::canonicalize(f).unwrap();
            let got = std::fs::metadata(&real).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, want, "{}", real.display());
        }
    }
    // Python's cache layout.
    let repo_dir = cache.join("models--test--mae-tiny");
    assert_eq!(
        std::fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        COMMIT
    );
    assert!(repo_dir
        .join("snapshots")
        .join(COMMIT)
        .join("config.json")
        .exists());
    assert!(ck
        .weights
        .starts_with(repo_dir.join("snapshots").join(COMMIT)));
    assert!(std::fs::read_dir(repo_dir.join("blobs")).unwrap().count() >= 2);
    let (cfg, w) = mae::load_checkpoint(&ck, &Device::Cpu).unwrap();
    let (want_cfg, want_w) = fixture_checkpoint();
    assert_eq!(cfg, want_cfg);
    same_weights(&w, &want_w);

    // Cached: no request at all.
    let before = server.count();
    checkpoint::resolve("test/mae-tiny", Some(&h)).unwrap();
    assert_eq!(
        server.count(),
        before,
        "a cached checkpoint must not touch the network"
    );

    // Offline with the cache: works without the server.
    drop(server);
    let off = Hub::new(HubConfig {
        offline: true,
        ..h.cfg.clone()
    })
    .unwrap();
    checkpoint::resolve("test/mae-tiny", Some(&off)).unwrap();

    // Offline without the cache: one error naming what is missing and how to fetch it.
    let empty = Hub::new(HubConfig {
        cache_dir: d.path().join("empty"),
        ..off.cfg.clone()
    })
    .unwrap();
    let e = checkpoint::resolve("test/mae-tiny", Some(&empty)).unwrap_err();
    let msg = format!("{e:#}");
    for w in [
        "offline",
        "test/mae-tiny",
        "config.json",
        "model.safetensors",
        "i2i-unlearn fetch",
    ] {
        assert!(msg.contains(w), "`{w}` missing in: {msg}");
    }
    assert_eq!(i2i_unlearn::error::exit_code(&e), 2);
}

#[test]
fn falls_back_to_pytorch_model_bin() {
    let server = HubServer::start(repo_files(
        "test/mae-bin",
        &["config.json", "pytorch_model.bin"],
    ));
    let d = tempfile::tempdir().unwrap();
    let h = hub(&server, d.path(), false, None);
    let ck = checkpoint::resolve("test/mae-bin", Some(&h)).unwrap();
    assert!(ck.weights.ends_with("pytorch_model.bin"));
    let (_, w) = mae::load_checkpoint(&ck, &Device::Cpu).unwrap();
    same_weights(&w, &fixture_checkpoint().1);
    // It asked for model.safetensors first and got a 404.
    let log = server.log.lock().unwrap();
    assert!(log
        .requests
        .iter()
        .any(|(p, _, _)| p.ends_with("model.safetensors")));
}

#[test]
fn a_download_cut_half_way_resumes_and_verifies() {
    let mut files = repo_files("test/mae-cut", &["config.json", "model.safetensors"]);
    files
        .get_mut("/test/mae-cut/resolve/main/model.safetensors")
        .unwrap()
        .cut_first = true;
    let server = HubServer::start(files);
    let d = tempfile::tempdir().unwrap();
    let h = hub(&server, d.path(), false, Some("hf_secret"));
    let ck = checkpoint::resolve("test/mae-cut", Some(&h)).unwrap();
    assert_eq!(
        std::fs::read(&ck.weights).unwrap(),
        fixture("model.safetensors")
    );
    let log = server.log.lock().unwrap();
    let resumed = log.requests.iter().any(|(p, r, _)| {
        p.ends_with("model.safetensors")
            && r.as_deref()
                .is_some_and(|r| r != "bytes=0-0" && r != "bytes=0-")
    });
    assert!(resumed, "no resuming Range request: {:?}", log.requests);
    // The token is sent.
    assert!(log
        .requests
        .iter()
        .all(|(_, _, a)| a.as_deref() == Some("Bearer hf_secret")));
}

#[test]
fn a_corrupted_download_is_rejected_and_removed() {
    let mut files = repo_files("test/mae-bad", &["config.json", "model.safetensors"]);
    let f = files
        .get_mut("/test/mae-bad/resolve/main/model.safetensors")
        .unwrap();
    let mut bad = f.bytes.clone();
    let n = bad.len();
    bad[n / 2] ^= 0xff;
    f.served = Some(bad);
    let server = HubServer::start(files);
    let d = tempfile::tempdir().unwrap();
    let h = hub(&server, d.path(), false, None);
    let e = format!(
        "{:#}",
        checkpoint::resolve("test/mae-bad", Some(&h)).unwrap_err()
    );
    assert!(e.contains("corrupt") && e.contains("SHA-256"), "{e}");
    assert!(h
        .cached(
            &i2i_unlearn::hub::RepoRef::model("test/mae-bad"),
            "model.safetensors"
        )
        .is_none());
}

#[test]
fn missing_repo_is_a_user_error() {
    let server = HubServer::start(HashMap::new());
    let d = tempfile::tempdir().unwrap();
    let h = hub(&server, d.path(), false, None);
    let e = checkpoint::resolve("nobody/nothing", Some(&h)).unwrap_err();
    assert!(
        format!("{e:#}").contains("has no file `config.json`"),
        "{e:#}"
    );
    assert_eq!(i2i_unlearn::error::exit_code(&e), 2);
}
