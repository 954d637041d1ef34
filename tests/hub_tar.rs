//! A hub dataset of tar shards, built at test time from ../shared/data and served on 127.0.0.1
//! in the hub's URL layout: a webdataset copy (`<key>.jpg` + `<key>.cls`, plain tar) and an
//! ILSVRC-style copy (`.tar.gz`, the class in the file name's last `_` field). Both go through
//! fetch → offline run; a corrupted member is named in the manifest, a label outside the class
//! list is ignored.

mod common;
#[path = "common/hub_server.rs"]
mod hub_server;
use common::*;
use std::collections::HashMap;

struct Photos {
    wnids: Vec<String>,
    /// Per class: (file name, bytes), 6 train and 3 val images.
    train: Vec<Vec<(String, Vec<u8>)>>,
    val: Vec<Vec<(String, Vec<u8>)>>,
}

fn photos() -> Option<Photos> {
    let tin = shared_data()?.join("tiny-imagenet-200");
    let wnids: Vec<String> = std::fs::read_to_string(tin.join("wnids.txt"))
        .unwrap()
        .lines()
        .take(4)
        .map(String::from)
        .collect();
    let ann = std::fs::read_to_string(tin.join("val/val_annotations.txt")).unwrap();
    let mut train = vec![];
    let mut val = vec![];
    for w in &wnids {
        let dir = tin.join("train").join(w).join("images");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        train.push(
            names
                .into_iter()
                .take(6)
                .map(|n| (n.clone(), std::fs::read(dir.join(&n)).unwrap()))
                .collect(),
        );
        val.push(
            ann.lines()
                .filter(|l| l.split('\t').nth(1) == Some(w.as_str()))
                .take(3)
                .map(|l| {
                    let f = l.split('\t').next().unwrap().to_string();
                    let b = std::fs::read(tin.join("val/images").join(&f)).unwrap();
                    (f, b)
                })
                .collect(),
        );
    }
    Some(Photos { wnids, train, val })
}

fn yaml(source: &str, wnids: &[String]) -> String {
    format!(
        r#"name: tardata
datasets:
  - name: tin
    source: {source}
    forget_classes: [{}]
    retain_classes: [{}, {}]
    train_per_class: 5
    eval_per_class: 3
{TINY_HUB_GRID}"#,
        wnids[0], wnids[1], wnids[2]
    )
}

/// Serve `files` under `repo`, `fetch`, then run offline; returns the run's manifest and stderr.
fn fetch_then_offline(
    repo: &str,
    files: Vec<(String, Vec<u8>)>,
    source: &str,
    wnids: &[String],
) -> (serde_json::Value, String) {
    let served: HashMap<String, hub_server::File> = files
        .into_iter()
        .map(|(p, b)| {
            (
                format!("/datasets/{repo}/resolve/main/{p}"),
                hub_server::File::new(b),
            )
        })
        .collect();
    let server = hub_server::HubServer::start(served);
    let d = tempfile::tempdir().unwrap();
    let p = write(d.path(), "t.yaml", &yaml(source, wnids));
    let hf = d.path().join("hf");
    let online = HubEnv {
        hf_home: &hf,
        endpoint: &server.url,
        offline: false,
    };
    let cache = d.path().join("cache");
    let o = run_hub(&["fetch", p.to_str().unwrap()], d.path(), &online, &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    drop(server);
    let offline = HubEnv {
        hf_home: &hf,
        endpoint: "http://127.0.0.1:9",
        offline: true,
    };
    let args = ["run", p.to_str().unwrap(), "--output", "out"];
    let o = run_hub(&args, d.path(), &offline, &cache);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let m =
        serde_json::from_str(&std::fs::read_to_string(d.path().join("out/data-tin.json")).unwrap())
            .unwrap();
    (m, err)
}

fn count(m: &serde_json::Value, split: &str, class: &str) -> (u64, u64) {
    let c = m["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["split"] == split && c["class"] == class)
        .unwrap_or_else(|| panic!("no count for {split} {class}: {m}"));
    (
        c["requested"].as_u64().unwrap(),
        c["used"].as_u64().unwrap(),
    )
}

#[test]
fn webdataset_tar_shards_with_cls_members() {
    let Some(ph) = photos() else {
        return common::absent("../shared/data");
    };
    // Train: two shards, images interleaved across classes; val: one shard with one corrupted
    // member and one image labelled 99 (outside the class list).
    let mut shards: Vec<Vec<(String, Vec<u8>)>> = vec![vec![], vec![]];
    for (c, imgs) in ph.train.iter().enumerate() {
        for (k, (name, b)) in imgs.iter().enumerate() {
            let key = name.trim_end_matches(".JPEG");
            shards[k % 2].push((format!("{key}.jpg"), b.clone()));
            shards[k % 2].push((format!("{key}.cls"), c.to_string().into_bytes()));
        }
    }
    let mut val = vec![];
    for (c, imgs) in ph.val.iter().enumerate() {
        for (name, b) in imgs {
            let key = name.trim_end_matches(".JPEG");
            let mut b = b.clone();
            if c == 0 && val.is_empty() {
                b.truncate(b.len() / 2);
            }
            val.push((format!("val/{key}.jpg"), b));
            val.push((format!("val/{key}.cls"), format!("{c}\n").into_bytes()));
        }
    }
    val.push(("val/stray.jpg".into(), ph.val[1][0].1.clone()));
    val.push(("val/stray.cls".into(), b"99".to_vec()));
    let corrupted = format!(
        "val-0000.tar#val/{}.jpg",
        ph.val[0][0].0.trim_end_matches(".JPEG")
    );
    let files = vec![
        ("train-0000.tar".to_string(), tar_of(&shards[0], false)),
        ("train-0001.tar".to_string(), tar_of(&shards[1], false)),
        ("val-0000.tar".to_string(), tar_of(&val, false)),
        (
            "classes.txt".to_string(),
            (ph.wnids.join("\n") + "\n").into_bytes(),
        ),
    ];
    let (m, err) = fetch_then_offline(
        "test/wds",
        files,
        r#"{kind: hub_tar, repo: test/wds, train: "train-*.tar", val: "val-*.tar", classes_file: classes.txt}"#,
        &ph.wnids,
    );
    assert!(err.contains(&corrupted), "{err}");
    assert_eq!(count(&m, "train", &ph.wnids[0]), (5, 5));
    // 3 val images of class 0, one corrupted: 3 asked, 2 used.
    assert_eq!(count(&m, "val", &ph.wnids[0]), (3, 2));
    assert_eq!(count(&m, "val", &ph.wnids[1]), (3, 3));
    assert!(m["source"].as_str().unwrap().contains("tar shards"), "{m}");
}

#[test]
fn ilsvrc_style_tar_gz_with_class_in_file_name() {
    let Some(ph) = photos() else {
        return common::absent("../shared/data");
    };
    let mut train = vec![];
    for (c, imgs) in ph.train.iter().enumerate() {
        for (name, b) in imgs {
            // n01443537_0.JPEG → n01443537_0_n01443537.JPEG, as ILSVRC/imagenet-1k's archives.
            let stem = name.trim_end_matches(".JPEG");
            train.push((format!("{stem}_{}.JPEG", ph.wnids[c]), b.clone()));
        }
    }
    let mut val = vec![];
    let mut i = 0;
    for (c, imgs) in ph.val.iter().enumerate() {
        for (_, b) in imgs {
            i += 1;
            val.push((
                format!("ILSVRC2012_val_{i:08}_{}.JPEG", ph.wnids[c]),
                b.clone(),
            ));
        }
    }
    let classes_py = format!(
        "IMAGENET2012_CLASSES = OrderedDict(\n    {{\n{}    }}\n)\n",
        ph.wnids
            .iter()
            .map(|w| format!("        \"{w}\": \"a class\",\n"))
            .collect::<String>()
    );
    let files = vec![
        (
            "data/train_images_0.tar.gz".to_string(),
            tar_of(&train, true),
        ),
        ("data/val_images.tar.gz".to_string(), tar_of(&val, true)),
        ("classes.py".to_string(), classes_py.into_bytes()),
    ];
    let (m, _) = fetch_then_offline(
        "test/ilsvrc",
        files,
        r#"{kind: hub_tar, repo: test/ilsvrc, train: "data/train_images_*.tar.gz", val: "data/val_images.tar.gz", label: name_suffix, classes_file: classes.py}"#,
        &ph.wnids,
    );
    for w in &ph.wnids[..3] {
        assert_eq!(count(&m, "train", w), (5, 5));
    }
    assert_eq!(count(&m, "val", &ph.wnids[0]), (3, 3));
    assert_eq!(count(&m, "val", &ph.wnids[2]), (3, 3));
}
