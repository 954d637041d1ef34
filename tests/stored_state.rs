//! Identity by content and verified stored state: a checkpoint overwritten in place or class
//! folders swapped give new cells, a new pre-training and a new extractor (never the old
//! numbers); a stored unlearned model, cached pre-training or cell record that changed, sits
//! under another's name or comes from another original is found, warned about and computed
//! again; `verify` lists each of them and exits 0 only on a sound folder.

mod common;
use common::*;
use std::path::Path;

fn runs(args: &[&str], cwd: &Path, cache: &Path) -> (i32, String) {
    let o = run(args, cwd, cache);
    (o.status.code().unwrap_or(-1), stderr(&o))
}

fn verify(dir: &Path) -> (i32, String) {
    let o = std::process::Command::new(bin())
        .args(["verify"])
        .arg(dir)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout).to_string() + &stderr(&o);
    (o.status.code().unwrap_or(-1), out)
}

/// Class folders a, b, c of coloured noise (8 train, 6 val images each, 16 px).
fn image_folder(root: &Path) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for (split, n) in [("train", 8), ("val", 6)] {
        for (ci, class) in ["a", "b", "c"].iter().enumerate() {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..n {
                let img = image::RgbImage::from_fn(16, 16, |x, y| {
                    let mut px = [rng.random_range(0..80u8); 3];
                    px[ci] = 120 + ((x * 7 + y * 3 + i * 5) % 120) as u8;
                    image::Rgb(px)
                });
                img.save(dir.join(format!("{i}.png"))).unwrap();
            }
        }
    }
}

fn folder_yaml() -> String {
    tiny_yaml("folder", "")
        .replace(
            "source: {kind: embedded, classes: 6, size: 16, seed: 1}",
            "source: {kind: image_folder, root: data, train: {dir: train}, val: {dir: val}}",
        )
        .replace("forget_classes: [0]", "forget_classes: [a]")
        .replace("retain_classes: [1, 2, 3]", "retain_classes: [b]")
        .replace("proxy_classes: [4, 5]", "proxy_classes: [c]")
        .replace("seeds: [0, 1]", "seeds: [0]")
}

#[test]
fn swapped_class_folders_are_new_content() {
    let d = tempfile::tempdir().unwrap();
    let (dir, cache) = (d.path(), d.path().join("cache"));
    image_folder(&dir.join("data"));
    let p = write(dir, "folder.yaml", &folder_yaml());
    let exp = p.to_str().unwrap();
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("content fingerprint"), "{err}");
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("0 to run"),
        "unchanged data: nothing to do\n{err}"
    );
    // Swap the folders of classes a and b (forget and retain) in both splits.
    for split in ["train", "val"] {
        let s = dir.join("data").join(split);
        std::fs::rename(s.join("a"), s.join("tmp")).unwrap();
        std::fs::rename(s.join("b"), s.join("a")).unwrap();
        std::fs::rename(s.join("tmp"), s.join("b")).unwrap();
    }
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("0 already done"), "every cell is new\n{err}");
    assert!(
        !err.contains("cached pre-training"),
        "the old pre-training is not reused\n{err}"
    );
    assert!(err.contains("original model `mae`: pre-trained"), "{err}");
    let (code, out) = verify(&dir.join("results/folder"));
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_checkpoint_overwritten_in_place_gives_new_cells() {
    let d = tempfile::tempdir().unwrap();
    let (dir, cache) = (d.path(), d.path().join("cache"));
    let ck = dir.join("ck");
    std::fs::create_dir(&ck).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mae/tiny");
    for f in ["config.json", "model.safetensors"] {
        std::fs::copy(fixture.join(f), ck.join(f)).unwrap();
    }
    let y = tiny_yaml("ck", "")
        .lines()
        .filter(|l| !l.starts_with("    config: {image_size") && !l.starts_with("    pretrain:"))
        .map(|l| match l {
            "    family: mae" => format!("    family: mae\n    weights: {}", ck.display()),
            l => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        .replace("size: 16, seed: 1", "size: 32, seed: 1")
        .replace("masks: [center:2]", "masks: [center:4]")
        .replace("seeds: [0, 1]", "seeds: [0]");
    let p = write(dir, "ck.yaml", &y);
    let exp = p.to_str().unwrap();
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    let before = csv_rows(&dir.join("results/ck/runs.csv"));
    // The same path, other weights: every tensor scaled by 0.9.
    let w = candle_core::safetensors::load(ck.join("model.safetensors"), &candle_core::Device::Cpu)
        .unwrap();
    let w: std::collections::HashMap<String, candle_core::Tensor> = w
        .into_iter()
        .map(|(k, v)| (k, (v * 0.9).unwrap()))
        .collect();
    candle_core::safetensors::save(&w, ck.join("model.safetensors")).unwrap();
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("0 already done"),
        "the old cells are not reused\n{err}"
    );
    let after = csv_rows(&dir.join("results/ck/runs.csv"));
    assert_eq!(
        before.len(),
        after.len(),
        "one row set: the old cells left the grid"
    );
    assert_ne!(before, after, "new numbers from the new weights");
}

#[test]
fn stale_stored_state_is_found_and_recomputed() {
    let d = tempfile::tempdir().unwrap();
    let (dir, cache) = (d.path(), d.path().join("cache"));
    let p = write(
        dir,
        "s.yaml",
        &tiny_yaml("s", "").replace("seeds: [0, 1]", "seeds: [0]"),
    );
    let exp = p.to_str().unwrap();
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    let out = dir.join("results/s");
    let (code, v) = verify(&out);
    assert_eq!(code, 0, "a fresh folder is sound\n{v}");
    let mut cells: Vec<_> = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    cells.sort();
    let rec = |p: &Path| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    // 3. An unlearned model changed after it was written; its cell removed so it is reused.
    let i = cells
        .iter()
        .position(|c| {
            let k = rec(c)["cell"]["unlearn_key"].as_str().unwrap().to_string();
            out.join("unlearned")
                .join(format!("{k}.safetensors"))
                .is_file()
        })
        .unwrap();
    let ucell = cells.remove(i);
    let key = rec(&ucell)["cell"]["unlearn_key"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(&ucell).unwrap();
    let u = out.join("unlearned").join(format!("{key}.safetensors"));
    let mut bytes = std::fs::read(&u).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&u, &bytes).unwrap();
    // 1. A record copied under another cell's name.
    let (a, b) = (&cells[0], &cells[1]);
    std::fs::copy(a, b).unwrap();
    // 2. A record from another original model.
    let c = &cells[2];
    let mut r = rec(c);
    r["provenance"]["original_weights_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(c, serde_json::to_vec(&r).unwrap()).unwrap();
    // 4. The cached pre-training changed.
    let pre: Vec<_> = walk(&cache)
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "safetensors")
                && p.display().to_string().contains("pretrain")
        })
        .collect();
    assert_eq!(pre.len(), 1, "{pre:?}");
    let mut bytes = std::fs::read(&pre[0]).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    std::fs::write(&pre[0], &bytes).unwrap();

    let (code, v) = verify(&out);
    assert_eq!(code, 1, "{v}");
    for what in [
        "holds the record of cell",
        "another original model",
        &key,
        "differs from the",
    ] {
        assert!(v.contains(what), "verify names `{what}`\n{v}");
    }
    let (code, err) = runs(&["run", exp], dir, &cache);
    assert_eq!(code, 0, "{err}");
    for what in [
        "holds the record of cell",
        "computed from another original model",
        "changed since it was written",
    ] {
        assert!(err.contains(what), "the run warns `{what}`\n{err}");
    }
    let (code, v) = verify(&out);
    assert_eq!(code, 0, "sound again after the run\n{v}");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
