//! The report: every stored row as `runs.parquet` / `runs.csv`, the paper-layout tables
//! (`table.md`, `table.tex`) and charts (PNG), rebuilt from the store by `i2i-unlearn report DIR`.
//!
//! Rows are aggregated over seeds with Polars (mean, sample std, count). Only the records of the
//! cells in the folders' `grid.json` are used (an earlier config's cells are reported as stale and
//! left out); the same cell found in several folders (merged shards) counts once.

#[cfg(feature = "report")]
mod bars;
#[cfg(feature = "report")]
mod chart_style;
#[cfg(feature = "report")]
mod charts;
#[cfg(feature = "report")]
mod frame;
pub mod paper;
#[cfg(feature = "report")]
mod paper_charts;
#[cfg(feature = "report")]
mod pareto;
pub mod render;
pub mod table;
pub mod tsne;
#[cfg(feature = "report")]
mod tsne_chart;

use crate::progress::Progress;
use crate::store::{self, CellRecord, Row, Store};
use anyhow::Result;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
#[cfg(feature = "report")]
use table::Table;

/// One aggregated number: mean ± std of a metric over seeds.
#[derive(Clone, Debug, PartialEq)]
pub struct Agg {
    pub dataset: String,
    pub model: String,
    pub mask: String,
    pub alpha: Option<f64>,
    pub method: String,
    pub label: String,
    pub set: String,
    pub metric: String,
    pub mean: f64,
    pub std: Option<f64>,
    pub seeds: usize,
    pub n: u64,
    pub protocol: String,
    /// The bootstrap interval (each bound averaged over seeds), where the rows have one.
    pub ci: Option<(f64, f64)>,
}

/// Records of the current grids of `dirs`, deduplicated by cell id.
pub fn collect(dirs: &[PathBuf], p: &Progress) -> Result<Vec<CellRecord>> {
    Ok(collect_with_dirs(dirs, p)?
        .into_iter()
        .map(|(r, _)| r)
        .collect())
}

/// Like [`collect`], with the folder each record came from.
pub fn collect_with_dirs(dirs: &[PathBuf], p: &Progress) -> Result<Vec<(CellRecord, PathBuf)>> {
    let mut wanted: Option<BTreeSet<String>> = None;
    let mut by_id: BTreeMap<String, (CellRecord, PathBuf)> = BTreeMap::new();
    let mut stale = 0;
    let mut dup = 0;
    let mut all = vec![];
    for d in dirs {
        anyhow::ensure!(d.is_dir(), "{} is not a results folder", d.display());
        if let Some(g) = store::read_grid(d)? {
            wanted
                .get_or_insert_with(BTreeSet::new)
                .extend(g.cells.into_iter().map(|c| c.id));
        }
        all.extend(Store::new(d).records()?.into_iter().map(|r| (r, d.clone())));
    }
    for (rec, dir) in all {
        if let Some(w) = &wanted {
            if !w.contains(&rec.cell.id) {
                stale += 1;
                continue;
            }
        }
        if by_id.insert(rec.cell.id.clone(), (rec, dir)).is_some() {
            dup += 1;
        }
    }
    if stale > 0 {
        p.note(&format!("report: left out {stale} stored cells that are not in the current grid (an earlier config)"));
    }
    if dup > 0 {
        p.note(&format!(
            "report: {dup} cells were found in more than one folder; each is counted once"
        ));
    }
    Ok(by_id.into_values().collect())
}

/// The cells of the folders' grids that no folder has a record of.
fn missing_cells(
    dirs: &[PathBuf],
    records: &[CellRecord],
) -> Result<Vec<crate::config::grid::Cell>> {
    let have: BTreeSet<&str> = records.iter().map(|r| r.cell.id.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut out = vec![];
    for d in dirs {
        for c in store::read_grid(d)?.map(|g| g.cells).unwrap_or_default() {
            if !have.contains(c.id.as_str()) && seen.insert(c.id.clone()) {
                out.push(c);
            }
        }
    }
    Ok(out)
}

/// "Incomplete: …", naming the missing cells (the first ten).
fn incomplete_note(missing: &[crate::config::grid::Cell], total: usize) -> String {
    let names: Vec<String> = missing
        .iter()
        .take(10)
        .map(|c| {
            let a = c.alpha.map(|a| format!(", α {a}")).unwrap_or_default();
            format!(
                "{} / {} / {} ({}, {}{a}, seed {})",
                c.dataset, c.model, c.label, c.id, c.mask, c.seed
            )
        })
        .collect();
    format!(
        "Incomplete: {} of {total} cells of the grid have no record, so their rows are absent or averaged over fewer seeds: {}{}. Run the experiment again (or merge the other shards' folders) to complete it.",
        missing.len(),
        names.join("; "),
        if missing.len() > 10 { "; …" } else { "" }
    )
}

/// Mean, sample std (None for one seed) and count, in plain Rust (used when built without Polars
/// and to cross-check the Polars aggregation in tests).
pub fn aggregate_plain(rows: &[Row]) -> Vec<Agg> {
    type Key = (
        String,
        String,
        String,
        Option<u64>,
        String,
        String,
        String,
        String,
    );
    let mut groups: BTreeMap<Key, Vec<&Row>> = BTreeMap::new();
    for r in rows {
        let k = (
            r.dataset.clone(),
            r.model.clone(),
            r.mask.clone(),
            r.alpha.map(f64::to_bits),
            r.method.clone(),
            r.label.clone(),
            r.set.clone(),
            r.metric.clone(),
        );
        groups.entry(k).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(k, v)| {
            let n = v.len();
            let mean = v.iter().map(|r| r.value).sum::<f64>() / n as f64;
            let std = (n > 1).then(|| {
                (v.iter().map(|r| (r.value - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            });
            let lows: Vec<f64> = v.iter().filter_map(|r| r.ci_low).collect();
            let highs: Vec<f64> = v.iter().filter_map(|r| r.ci_high).collect();
            let ci = (lows.len() == n && highs.len() == n).then(|| {
                (
                    lows.iter().sum::<f64>() / n as f64,
                    highs.iter().sum::<f64>() / n as f64,
                )
            });
            Agg {
                dataset: k.0,
                model: k.1,
                mask: k.2,
                alpha: k.3.map(f64::from_bits),
                method: k.4,
                label: k.5,
                set: k.6,
                metric: k.7,
                mean,
                std,
                seeds: n,
                n: v[0].n,
                protocol: v[0].protocol.clone(),
                ci,
            }
        })
        .collect()
}

/// The finished cells of `dirs`, with and without their folders; a user error when there are
/// none.
#[allow(clippy::type_complexity)]
fn finished(
    dirs: &[PathBuf],
    p: &Progress,
) -> Result<(Vec<(CellRecord, PathBuf)>, Vec<CellRecord>)> {
    let with_dirs = collect_with_dirs(dirs, p)?;
    let records: Vec<CellRecord> = with_dirs.iter().map(|(r, _)| r.clone()).collect();
    if records.is_empty() {
        return Err(crate::error::user(format!(
            "no finished cells in {} (run the experiment first)",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok((with_dirs, records))
}

/// `report --layout paper`: the folders' stored cells in the paper's layout, under `out/paper/`:
/// `paper.md`, `paper.tex`, the outpainting curves, the t-SNE and the qualitative figure of each
/// family (see [`paper`]).
pub fn build_paper(dirs: &[PathBuf], out: &Path, p: &Progress) -> Result<ReportSummary> {
    #[cfg_attr(not(feature = "report"), allow(unused_variables))]
    let (with_dirs, records) = finished(dirs, p)?;
    let rows: Vec<Row> = records.iter().flat_map(|r| r.rows.clone()).collect();
    let dir = out.join("paper");
    std::fs::create_dir_all(&dir)?;
    crate::util::clean_stale_temps(&dir, crate::util::STALE_TEMP_AGE);
    #[cfg(feature = "report")]
    let aggs = frame::aggregate(&rows)?;
    #[cfg(not(feature = "report"))]
    let aggs = aggregate_plain(&rows);
    let tables = table::tables(&aggs);
    #[allow(unused_mut)]
    let mut figures: Vec<(String, PathBuf)> = vec![];
    #[cfg(feature = "report")]
    {
        figures.extend(paper_charts::outpaint_curves(&tables, &dir)?);
        let main: Vec<Table> = paper::main_tables(&tables)
            .into_values()
            .flatten()
            .cloned()
            .collect();
        for f in tsne_chart::draw_tsne(&main, &with_dirs, &dir)? {
            let name = f.file_stem().map(|s| s.to_string_lossy().into_owned());
            figures.push((
                format!(
                    "t-SNE of the CLIP embeddings — {}",
                    name.unwrap_or_default()
                ),
                f,
            ));
        }
        figures.extend(paper_charts::qualitative(&tables, &with_dirs, &dir)?);
    }
    let rel: Vec<(String, String)> = figures
        .iter()
        .map(|(t, f)| (t.clone(), crate::weights::checkpoint::file_name(f)))
        .collect();
    let mut files: Vec<PathBuf> = figures.into_iter().map(|(_, f)| f).collect();
    let missing = missing_cells(dirs, &records)?;
    let mut md = paper::markdown(&tables, &rel);
    let mut tex = paper::latex(&tables);
    if !missing.is_empty() {
        let note = incomplete_note(&missing, records.len() + missing.len());
        p.warn(&format!("report: {note}"));
        md = format!("**{note}**\n\n{md}");
        tex = format!(
            "% INCOMPLETE: {} cells of the grids have no record\n{tex}",
            missing.len()
        );
    }
    crate::util::write_atomic(&dir.join("paper.md"), md.as_bytes())?;
    crate::util::write_atomic(&dir.join("paper.tex"), tex.as_bytes())?;
    files.push(dir.join("paper.md"));
    files.push(dir.join("paper.tex"));
    p.note(&format!(
        "report (paper layout): {} cells → {}",
        records.len(),
        dir.display()
    ));
    Ok(ReportSummary {
        cells: records.len(),
        rows: rows.len(),
        files,
    })
}

/// What `build` wrote.
#[derive(Debug, Default)]
pub struct ReportSummary {
    pub cells: usize,
    pub rows: usize,
    pub files: Vec<PathBuf>,
}

/// How the report is drawn.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReportOptions {
    /// Show the 95 % bootstrap interval of every value in the tables (`report --ci`).
    pub ci: bool,
    /// The metric of the Pareto chart (`report --pareto METRIC`; `None`: FID).
    pub pareto: Option<crate::names::MetricId>,
}

/// Rebuild every report file in `out` from the records of `dirs`.
pub fn build(
    dirs: &[PathBuf],
    out: &Path,
    opts: ReportOptions,
    p: &Progress,
) -> Result<ReportSummary> {
    // Nothing is written for a folder without results.
    #[cfg_attr(not(feature = "report"), allow(unused_variables))]
    let (with_dirs, records) = finished(dirs, p)?;
    let mut rows: Vec<Row> = records.iter().flat_map(|r| r.rows.clone()).collect();
    rows.sort_by(|a, b| (&a.cell, &a.set, &a.metric).cmp(&(&b.cell, &b.set, &b.metric)));
    std::fs::create_dir_all(out)?;
    for d in [out.to_path_buf(), out.join("charts")] {
        crate::util::clean_stale_temps(&d, crate::util::STALE_TEMP_AGE);
    }
    let mut files = vec![];
    #[cfg(feature = "report")]
    let aggs = {
        files.extend(frame::write_runs(&rows, out)?);
        frame::aggregate(&rows)?
    };
    #[cfg(not(feature = "report"))]
    let aggs = {
        p.note(
            "report: built without the `report` feature: tables only (no Parquet/CSV, no charts)",
        );
        aggregate_plain(&rows)
    };
    let tables = table::tables(&aggs);
    let mut notes: Vec<String> = vec![];
    let missing = missing_cells(dirs, &records)?;
    if !missing.is_empty() {
        let note = incomplete_note(&missing, records.len() + missing.len());
        p.warn(&format!("report: {note}"));
        notes.push(format!("**{note}**"));
    }
    for d in dirs {
        for n in store::read_grid(d)?.map(|g| g.notes).unwrap_or_default() {
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
    }
    let mut md = render::markdown(&tables, &records, &notes, opts.ci);
    let mut tex = render::latex(&tables, opts.ci);
    if !missing.is_empty() {
        let k = missing.len();
        md = md.replacen(
            "# Results\n",
            &format!(
                "# Results — incomplete: {k} cells of the grid missing (see the note at the end)\n"
            ),
            1,
        );
        tex = format!("% INCOMPLETE: {k} cells of the grid have no record; see table.md\n{tex}");
    }
    crate::util::write_atomic(&out.join("table.md"), md.as_bytes())?;
    files.push(out.join("table.md"));
    crate::util::write_atomic(&out.join("table.tex"), tex.as_bytes())?;
    files.push(out.join("table.tex"));
    #[cfg(feature = "report")]
    match charts::draw_all(&tables, &out.join("charts")) {
        Ok(f) => files.extend(f),
        Err(e) => p.note(&format!("warning: charts not drawn: {e:#}")),
    }
    #[cfg(feature = "report")]
    {
        let metric = opts.pareto.unwrap_or(crate::names::MetricId::Fid);
        match pareto::draw_pareto(&tables, metric.as_str(), &out.join("charts")) {
            Ok(f) => files.extend(f),
            Err(e) => p.note(&format!("warning: Pareto chart not drawn: {e:#}")),
        }
    }
    #[cfg(feature = "report")]
    match tsne_chart::draw_tsne(&tables, &with_dirs, &out.join("charts")) {
        Ok(f) => files.extend(f),
        Err(e) => p.note(&format!("warning: t-SNE figure not drawn: {e:#}")),
    }
    p.note(&format!(
        "report: {} cells, {} rows → {}",
        records.len(),
        rows.len(),
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    Ok(ReportSummary {
        cells: records.len(),
        rows: rows.len(),
        files,
    })
}
