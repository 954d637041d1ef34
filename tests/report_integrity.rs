//! The report of an unfinished grid says which cells are missing and marks its tables
//! incomplete; charts are written whole (no temporary file left, every PNG decodes), and the
//! temporary files a killed writer left behind are removed once they are stale.

mod common;
use common::*;

#[test]
fn an_unfinished_grid_is_reported_incomplete_and_charts_are_whole() {
    let d = tempfile::tempdir().unwrap();
    let (dir, cache) = (d.path(), d.path().join("cache"));
    let p = write(
        dir,
        "r.yaml",
        &tiny_yaml("r", "").replace("seeds: [0, 1]", "seeds: [0]"),
    );
    let o = run(&["run", p.to_str().unwrap()], dir, &cache);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = dir.join("results/r");
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        !table.contains("ncomplete"),
        "a finished grid is complete\n{table}"
    );

    // One cell's record gone (a run killed before it), a stale and a fresh temporary chart.
    let mut cells: Vec<_> = std::fs::read_dir(out.join("cells"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    cells.sort();
    let gone = cells[1].file_stem().unwrap().to_str().unwrap().to_string();
    std::fs::remove_file(&cells[1]).unwrap();
    let charts = out.join("charts");
    let stale = charts.join(".tex_mae_center-2_fid.png.tmp4242-0.png");
    let fresh = charts.join(".tex_mae_center-2_fid.png.tmp4243-0.png");
    for f in [&stale, &fresh] {
        std::fs::write(f, b"half a png").unwrap();
    }
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(hour_ago)
        .unwrap();

    let o = run(&["report", out.to_str().unwrap()], dir, &cache);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("Incomplete: 1 of") && err.contains(&gone),
        "{err}"
    );
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert!(
        table.lines().next().unwrap().contains("incomplete"),
        "{table}"
    );
    assert!(table.contains(&gone), "the missing cell is named\n{table}");
    let tex = std::fs::read_to_string(out.join("table.tex")).unwrap();
    assert!(tex.starts_with("% INCOMPLETE"), "{tex}");

    assert!(!stale.exists(), "a stale temporary file is removed");
    assert!(
        fresh.exists(),
        "a fresh one may belong to a live writer: kept"
    );
    std::fs::remove_file(&fresh).unwrap();
    let mut pngs = 0;
    for e in std::fs::read_dir(&charts).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with('.'), "no temporary file left: {name}");
        image::open(e.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
        pngs += 1;
    }
    assert!(pngs >= 3, "{pngs} charts");
}
