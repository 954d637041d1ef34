//! Places-365 from its official archives (`source: {kind: places365}`), built at test time in the
//! official layout from real MiniPlaces photographs of ../shared/data: a file-list tar
//! (`categories_places365.txt`, `places365_train_standard.txt`, `places365_val.txt`), a train tar
//! (`data_256/a/art_gallery/00000001.jpg`) and a val tar (`val_256/Places365_val_00000001.jpg`, labels
//! only in the list). Served on 127.0.0.1 (the train archive drops its first download half-way):
//! `fetch` resumes it, pins the unhashed files, extracts only the classes the grid draws from, and
//! the run then works offline. The train-only alternative (`val_from_train`) reads the same
//! archives from a local folder and records its deviation.

mod common;
#[path = "common/hub_server.rs"]
mod hub_server;
use common::*;
use std::collections::HashMap;
use std::path::Path;

/// The four MiniPlaces classes used, as Places-365 identifiers.
const CLASSES: [&str; 4] = [
    "/a/art_gallery",
    "/a/airport_terminal",
    "/a/amphitheater",
    "/b/bedroom",
];

/// (file name, bytes) of the three archives, named apart from the official files (which have
/// published MD5 sums these do not match).
fn archives(shared: &Path) -> Vec<(String, Vec<u8>)> {
    let categories = std::fs::read_to_string(shared.join("places365_categories.txt")).unwrap();
    let index = |c: &str| -> usize {
        categories
            .lines()
            .find_map(|l| {
                let (n, i) = l.split_once(' ')?;
                (n == c).then(|| i.trim().parse().unwrap())
            })
            .unwrap_or_else(|| panic!("{c} is not a Places-365 class"))
    };
    let mp = shared.join("miniplaces/data");
    let mp_cats = std::fs::read_to_string(mp.join("categories.txt")).unwrap();
    let mp_val = std::fs::read_to_string(mp.join("val.txt")).unwrap();
    let (mut train, mut val) = (vec![], vec![]);
    let (mut train_list, mut val_list) = (String::new(), String::new());
    let mut v = 0;
    for c in CLASSES {
        let label = index(c);
        let mp_label = mp_cats
            .lines()
            .find_map(|l| {
                l.split_once(' ')
                    .filter(|(n, _)| *n == c)
                    .map(|(_, i)| i.trim())
            })
            .unwrap();
        let dir = mp.join("images/train").join(c.trim_start_matches('/'));
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names.iter().take(6) {
            train.push((
                format!("data_256{c}/{n}"),
                std::fs::read(dir.join(n)).unwrap(),
            ));
            train_list += &format!("{c}/{n} {label}\n");
        }
        for f in mp_val
            .lines()
            .filter(|l| l.split(' ').nth(1) == Some(mp_label))
            .take(3)
        {
            v += 1;
            let name = format!("Places365_val_{v:08}.jpg");
            let path = mp.join("images").join(f.split(' ').next().unwrap());
            val.push((format!("val_256/{name}"), std::fs::read(path).unwrap()));
            val_list += &format!("{name} {label}\n");
        }
    }
    let filelist = vec![
        (
            "categories_places365.txt".to_string(),
            categories.into_bytes(),
        ),
        (
            "places365_train_standard.txt".to_string(),
            train_list.into_bytes(),
        ),
        ("places365_val.txt".to_string(), val_list.into_bytes()),
    ];
    vec![
        ("filelist_test.tar".into(), tar_of(&filelist, false)),
        ("train_test.tar".into(), tar_of(&train, false)),
        ("val_test.tar".into(), tar_of(&val, false)),
    ]
}

fn yaml(source: &str, extra: &str) -> String {
    format!(
        r#"name: places
datasets:
  - name: places
    source: {source}
    forget_classes: ["{}"]
    retain_classes: ["{}", "{}"]
    train_per_class: 5
    eval_per_class: 2
    audit_per_class: 0
{extra}{TINY_HUB_GRID}"#,
        CLASSES[0], CLASSES[1], CLASSES[2]
    )
}

const FILES: &str = "train: train_test.tar, val: val_test.tar, filelist: filelist_test.tar";

fn count(m: &serde_json::Value, split: &str, class: &str) -> (u64, u64, u64) {
    let c = m["counts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["split"] == split && c["class"] == class)
        .unwrap_or_else(|| panic!("no count for {split} {class}: {m}"));
    let n = |k: &str| c[k].as_u64().unwrap();
    (n("requested"), n("used"), n("available"))
}

/// Folders of extracted classes under the hub cache, per split.
fn extracted(hf: &Path, split: &str) -> Vec<String> {
    let root = hf.join("hub/i2i-unlearn-data");
    let mut out = vec![];
    for d in std::fs::read_dir(&root).unwrap() {
        let s = d.unwrap().path().join(split);
        for e in std::fs::read_dir(&s).into_iter().flatten() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            if n.ends_with(".done") {
                out.push(n);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn official_archives_by_url_resumed_pinned_and_only_needed_classes_extracted() {
    let Some(shared) = shared_data() else {
        return common::absent("../shared/data");
    };
    let served: HashMap<String, hub_server::File> = archives(&shared)
        .into_iter()
        .map(|(n, b)| {
            let mut f = hub_server::File::new(b);
            f.cut_first = n.starts_with("train");
            (format!("/places/places365/{n}"), f)
        })
        .collect();
    let server = hub_server::HubServer::start(served);
    let d = tempfile::tempdir().unwrap();
    let source = format!(
        "{{kind: places365, base: \"{}/places/places365/\", {FILES}}}",
        server.url
    );
    let p = write(d.path(), "p.yaml", &yaml(&source, ""));
    let hf = d.path().join("hf");
    let cache = d.path().join("cache");
    let online = HubEnv {
        hf_home: &hf,
        endpoint: &server.url,
        offline: false,
    };
    // The dry run lists the three archives, to download.
    let o = run_hub(
        &["fetch", p.to_str().unwrap(), "--dry-run"],
        d.path(),
        &online,
        &cache,
    );
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    for f in ["train_test.tar", "val_test.tar", "filelist_test.tar"] {
        assert!(out.contains(f), "{f} not listed: {out}");
    }
    assert!(out.contains("pinned on first download"), "{out}");
    // The server says each archive's size.
    assert!(
        out.contains("3 to download") && !out.contains("unknown size"),
        "{out}"
    );
    let o = run_hub(&["fetch", p.to_str().unwrap()], d.path(), &online, &cache);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(err.contains("pinned on first download as SHA-256"), "{err}");
    // The cut download resumed with a Range request.
    let resumed = server.log.lock().unwrap().requests.iter().any(|(p, r, _)| {
        p.ends_with("train_test.tar") && r.as_deref().is_some_and(|r| !r.starts_with("bytes=0-"))
    });
    assert!(
        resumed,
        "no resumed request: {:?}",
        server.log.lock().unwrap().requests
    );
    // Only the grid's three classes were extracted (the tiny grid pre-trains on every class of
    // the source, so train holds all 365 markers' worth of the classes with images listed).
    let labels: Vec<String> = CLASSES[..3]
        .iter()
        .map(|c| {
            let cats = std::fs::read_to_string(shared.join("places365_categories.txt")).unwrap();
            let i: usize = cats
                .lines()
                .find_map(|l| {
                    l.split_once(' ')
                        .filter(|(n, _)| n == c)
                        .map(|(_, i)| i.trim().parse().unwrap())
                })
                .unwrap();
            format!("{i:03}.done")
        })
        .collect();
    let mut want = labels.clone();
    want.sort();
    assert_eq!(extracted(&hf, "val"), want, "val classes extracted");
    let bedroom = {
        let cats = std::fs::read_to_string(shared.join("places365_categories.txt")).unwrap();
        let i: usize = cats
            .lines()
            .find_map(|l| {
                l.split_once(' ')
                    .filter(|(n, _)| *n == CLASSES[3])
                    .map(|(_, i)| i.trim().parse().unwrap())
            })
            .unwrap();
        format!("{i:03}.done")
    };
    assert!(!extracted(&hf, "val").contains(&bedroom));
    drop(server);
    // Offline from the cache.
    let offline = HubEnv {
        hf_home: &hf,
        endpoint: "http://127.0.0.1:9",
        offline: true,
    };
    let o = run_hub(
        &["run", p.to_str().unwrap(), "--output", "out"],
        d.path(),
        &offline,
        &cache,
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("out/data-places.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(count(&m, "train", CLASSES[0]), (5, 5, 6));
    assert_eq!(count(&m, "val", CLASSES[1]), (2, 2, 3));
    let src = m["source"].as_str().unwrap();
    assert!(src.contains("Places-365 official archives"), "{src}");
    assert!(src.contains("pinned on first download"), "{src}");
}

#[test]
fn a_local_folder_of_archives_and_a_held_out_val_split() {
    let Some(shared) = shared_data() else {
        return common::absent("../shared/data");
    };
    let d = tempfile::tempdir().unwrap();
    let files = d.path().join("official");
    std::fs::create_dir_all(&files).unwrap();
    for (n, b) in archives(&shared) {
        std::fs::write(files.join(n), b).unwrap();
    }
    let source = format!("{{kind: places365, base: ./official, {FILES}}}");
    let p = write(
        d.path(),
        "p.yaml",
        &yaml(&source, "    val_from_train: {per_class: 2, seed: 4}\n"),
    );
    let hf = d.path().join("hf");
    let env = HubEnv {
        hf_home: &hf,
        endpoint: "http://127.0.0.1:9",
        offline: true,
    };
    let o = run_hub(
        &["check", p.to_str().unwrap()],
        d.path(),
        &env,
        &d.path().join("cache"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let args = ["run", p.to_str().unwrap(), "--output", "out"];
    let o = run_hub(&args, d.path(), &env, &d.path().join("cache"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(d.path().join("out/data-places.json")).unwrap(),
    )
    .unwrap();
    // 6 train images per class: 2 held out to evaluate, 4 (of 5 asked) left for training.
    assert_eq!(count(&m, "train", CLASSES[0]), (5, 4, 4));
    assert_eq!(count(&m, "val", CLASSES[0]), (2, 2, 2));
    let src = m["source"].as_str().unwrap();
    assert!(
        src.contains("a deviation from the paper's protocol"),
        "{src}"
    );
    assert!(src.contains("a local file, not checked"), "{src}");
}
