//! The retrain oracle, the membership audit and the bootstrap intervals on a grid that runs in
//! seconds: the oracle is pre-trained without the forget classes and cached like the original, its
//! row and every method's distance to it reach the tables; the audit's members and non-members are
//! disjoint and recorded; `report --ci` prints the intervals.

mod common;
use common::*;

#[test]
fn oracle_row_audit_and_intervals_reach_the_report() {
    let d = tempfile::tempdir().unwrap();
    let yaml = tiny_yaml("oracle", "")
        .replace("seeds: [0, 1]", "seeds: [0]")
        .replace(
            "methods: [original, ours, {name: ours, retain: proxy}, max_loss]",
            "methods: [original, retrain, ours]",
        )
        .replace(
            "eval_per_class: 6",
            "eval_per_class: 6\n    audit_per_class: 5",
        );
    let p = write(d.path(), "o.yaml", &yaml);
    let cache = d.path().join("cache");
    // `check` announces the oracle's pre-training.
    let o = run(&["check", p.to_str().unwrap()], d.path(), &cache);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("3 cells") && out.contains("plus 1 retrain oracle(s)"),
        "{out}"
    );
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("retrain oracle of `mae`: pre-trained 15 steps on 40 images (the 1 forget classes left out)"),
        "{err}"
    );
    // Two pre-trainings in the cache: the original (6 classes × 8) and the oracle (5 × 8).
    let cached = std::fs::read_dir(cache.join("pretrain"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "safetensors")
        })
        .count();
    assert_eq!(cached, 2);
    let out = d.path().join("results/oracle");
    let rows = csv_rows(&out.join("runs.csv"));
    let has = |metric: &str, set: &str| rows.iter().filter(|r| r.2 == metric && r.1 == set).count();
    // Three cells; the audit on both sets of each; FID to the oracle for the two non-oracle cells.
    for set in ["retain", "forget"] {
        assert_eq!(has("mia_auc", set), 3, "{rows:?}");
        assert_eq!(has("fid_oracle", set), 2, "{rows:?}");
    }
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    for want in [
        "| Retrain (oracle) |",
        "Distance to the retrain oracle",
        "Closest to the oracle's outputs on D_F: Ours",
        "D_F MIA AUC →0.5",
    ] {
        assert!(md.contains(want), "table.md lacks {want:?}:\n{md}");
    }
    // The audit's images: 5 members and 5 non-members per class, disjoint, in the manifest.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("data-tex.json")).unwrap()).unwrap();
    let audit = &manifest["audit"];
    assert!(audit["rule"]
        .as_str()
        .unwrap()
        .contains("pre-training images"));
    let classes = audit["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 4, "1 forget + 3 retain classes");
    for c in classes {
        let ids = |k: &str| -> Vec<u64> {
            c[k].as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect()
        };
        let (m, n) = (ids("members"), ids("nonmembers"));
        assert_eq!((m.len(), n.len()), (5, 5), "{c}");
        assert!(
            m.iter().all(|x| !n.contains(x)),
            "members and non-members overlap: {c}"
        );
    }
    // `report --ci` prints every value's interval; a second run reuses the cached oracle.
    let o = run(&["report", out.to_str().unwrap(), "--ci"], d.path(), &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("table.md")).unwrap();
    let ours = md.lines().find(|l| l.starts_with("| Ours |")).unwrap();
    assert_eq!(ours.matches(" [").count(), 8, "{ours}");
    std::fs::remove_dir_all(&out).unwrap();
    let o = run(&["run", p.to_str().unwrap()], d.path(), &cache);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("retrain oracle of `mae`: cached pre-training"),
        "{err}"
    );
}
