//! A hub dataset of parquet shards, built at test time from ../shared/data and served on
//! 127.0.0.1 in the hub's URL layout, through the whole download → decode → split path: only the
//! shards the run needs are fetched, a download cut half-way resumes, a corrupted image is
//! reported, and a second run works offline from the cache with the same numbers.

// Hub parquet sources (and this test's shard writer) need the `parquet` feature (Polars, on by default).
#![cfg(feature = "parquet")]

mod common;
#[path = "common/hub_server.rs"]
mod hub_server;
use common::*;
use polars::prelude::*;
use std::collections::HashMap;

fn shard(images: &[(Vec<u8>, String, i64)]) -> Vec<u8> {
    let bytes = Series::new(
        "bytes".into(),
        images
            .iter()
            .map(|(b, _, _)| b.as_slice())
            .collect::<Vec<&[u8]>>(),
    );
    let path = Series::new(
        "path".into(),
        images
            .iter()
            .map(|(_, p, _)| p.as_str())
            .collect::<Vec<&str>>(),
    );
    let image = StructChunked::from_series("image".into(), images.len(), [bytes, path].iter())
        .unwrap()
        .into_series();
    let label = Series::new(
        "label".into(),
        images.iter().map(|(_, _, l)| *l).collect::<Vec<i64>>(),
    );
    let mut df = DataFrame::new(images.len(), vec![image.into(), label.into()]).unwrap();
    let mut out = Vec::new();
    ParquetWriter::new(&mut out).finish(&mut df).unwrap();
    out
}

#[test]
fn hub_parquet_dataset_download_decode_split_offline() {
    let Some(data) = shared_data() else {
        return common::absent("../shared/data");
    };
    let tin = data.join("tiny-imagenet-200");
    let wnids: Vec<String> = std::fs::read_to_string(tin.join("wnids.txt"))
        .unwrap()
        .lines()
        .take(6)
        .map(String::from)
        .collect();
    let val_ann = std::fs::read_to_string(tin.join("val/val_annotations.txt")).unwrap();
    // Train: 12 images per class, spread round-robin over 3 shards; val: 5 per class in one shard.
    let mut train: Vec<Vec<(Vec<u8>, String, i64)>> = vec![vec![], vec![], vec![]];
    for (ci, w) in wnids.iter().enumerate() {
        let dir = tin.join("train").join(w).join("images");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for (k, name) in names.into_iter().take(12).enumerate() {
            let b = std::fs::read(dir.join(&name)).unwrap();
            train[k % 3].push((b, name, ci as i64));
        }
    }
    let mut val = vec![];
    for (ci, w) in wnids.iter().enumerate() {
        for line in val_ann
            .lines()
            .filter(|l| l.split('\t').nth(1) == Some(w.as_str()))
            .take(5)
        {
            let f = line.split('\t').next().unwrap();
            val.push((
                std::fs::read(tin.join("val/images").join(f)).unwrap(),
                f.to_string(),
                ci as i64,
            ));
        }
    }
    // One corrupted image (a JPEG cut in half).
    let n = val[0].0.len();
    val[0].0.truncate(n / 2);
    let corrupted = "data/val-00000.parquet#0".to_string();
    let repo = "/datasets/test/tiny-hub/resolve/main";
    let mut files: HashMap<String, hub_server::File> = HashMap::new();
    for (i, s) in train.iter().enumerate() {
        let mut f = hub_server::File::new(shard(s));
        f.cut_first = i == 1; // the second shard's first download drops half-way
        files.insert(format!("{repo}/data/train-{i:05}.parquet"), f);
    }
    files.insert(
        format!("{repo}/data/val-00000.parquet"),
        hub_server::File::new(shard(&val)),
    );
    // The class list is the dataset card's `class_label` names (as the hub's parquet copies have).
    let mut card = String::from(
        "---\ndataset_info:\n  features:\n  - name: image\n    dtype: image\n  - name: label\n    dtype:\n      class_label:\n        names:\n",
    );
    for (i, w) in wnids.iter().enumerate() {
        card += &format!("          '{i}': {w}\n");
    }
    card += "---\n# tiny hub\n";
    files.insert(
        format!("{repo}/README.md"),
        hub_server::File::new(card.into_bytes()),
    );
    let server = hub_server::HubServer::start(files);

    let d = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"name: hubdata
datasets:
  - name: tin
    source: {{kind: hub_parquet, repo: test/tiny-hub, train: "data/train-*.parquet", val: "data/val-*.parquet", classes_file: README.md}}
    forget_classes: [{f}]
    retain_classes: [{r1}, {r2}]
    train_per_class: 8
    eval_per_class: 5
    # No membership audit: it reads further training images, and this test counts the shards.
    audit_per_class: 0
{TINY_HUB_GRID}"#,
        f = wnids[0],
        r1 = wnids[1],
        r2 = wnids[2]
    );
    let p = write(d.path(), "h.yaml", &yaml);
    let hf_home = d.path().join("hf");
    let run_env = |out: &str, offline: bool, endpoint: &str| {
        let env = HubEnv {
            hf_home: &hf_home,
            endpoint,
            offline,
        };
        let args = ["run", p.to_str().unwrap(), "--output", out];
        run_hub(&args, d.path(), &env, &d.path().join("cache"))
    };
    let o = run_env("online", false, &server.url);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    // The corrupted image is named and counted; the short class is warned about.
    assert!(
        err.contains("unreadable") && err.contains(&corrupted),
        "{err}"
    );
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("online/data-tin.json")).unwrap(),
    )
    .unwrap();
    let counts = manifest["counts"].as_array().unwrap();
    let val0 = counts
        .iter()
        .find(|c| c["split"] == "val" && c["class"] == wnids[0].as_str())
        .unwrap();
    assert_eq!(
        (val0["requested"].as_u64(), val0["used"].as_u64()),
        (Some(5), Some(4))
    );
    assert_eq!(val0["failed"][0][0], corrupted.as_str());
    // Only the shards needed: 8 per class are in the first two train shards.
    let log = server.log.lock().unwrap();
    let asked = |f: &str| log.requests.iter().any(|(p, _, _)| p.ends_with(f));
    assert!(asked("train-00000.parquet") && asked("train-00001.parquet"));
    assert!(
        !asked("train-00002.parquet"),
        "a shard the run does not need was downloaded"
    );
    // The cut download resumed with a Range request.
    assert!(log
        .requests
        .iter()
        .any(|(p, r, _)| p.ends_with("train-00001.parquet")
            && r.as_deref()
                .is_some_and(|r| r != "bytes=0-0" && r != "bytes=0-")));
    drop(log);
    // The cache is Python's layout.
    assert!(hf_home
        .join("hub/datasets--test--tiny-hub/snapshots")
        .is_dir());

    // `fetch` into a fresh hub cache, then a run there works offline.
    let fetched_home = d.path().join("hf-fetched");
    let fetch_env = HubEnv {
        hf_home: &fetched_home,
        endpoint: &server.url,
        offline: false,
    };
    let cache_fetched = d.path().join("cache-fetched");
    let fetch_args = ["fetch", p.to_str().unwrap()];
    let o = run_hub(&fetch_args, d.path(), &fetch_env, &cache_fetched);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("dataset `tin`") && err.contains("available offline"),
        "{err}"
    );

    // Offline, without the server: the same rows from either cache.
    drop(server);
    let offline = HubEnv {
        hf_home: &fetched_home,
        endpoint: "http://127.0.0.1:9",
        offline: true,
    };
    let args = ["run", p.to_str().unwrap(), "--output", "fetched"];
    let o = run_hub(&args, d.path(), &offline, &cache_fetched);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run_env("offline", true, "http://127.0.0.1:9");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let a = std::fs::read_to_string(d.path().join("online/runs.csv")).unwrap();
    let b = std::fs::read_to_string(d.path().join("offline/runs.csv")).unwrap();
    assert_eq!(a, b, "offline from the cache must give the same numbers");
    let c = std::fs::read_to_string(d.path().join("fetched/runs.csv")).unwrap();
    assert_eq!(
        a, c,
        "a run from a fetched cache must give the same numbers"
    );

    // Offline with an empty cache: one error that says what to do.
    let o = std::process::Command::new(bin())
        .args(["run", p.to_str().unwrap(), "--output", "x"])
        .current_dir(d.path())
        .env("HF_HOME", d.path().join("empty"))
        .env("HF_HUB_OFFLINE", "1")
        .env("I2I_UNLEARN_CACHE", d.path().join("cache"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("offline") && stderr(&o).contains("i2i-unlearn fetch"),
        "{}",
        stderr(&o)
    );
}
