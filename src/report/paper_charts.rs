//! The figures of `report --layout paper`: the outpainting curves (per family and metric, a D_R
//! and a D_F panel, one line per method against r) and the qualitative grid of Figures 1 and 3
//! (per family: the chosen forget and retain images as rows; masked input · each method's output
//! · ground truth as columns; every row and column labelled). The t-SNE is `tsne_chart.rs`'s.

use super::chart_style::{atomic_png, metric_title_of, slug, Dyn, COLORS};
use super::table::Table;
use crate::store::CellRecord;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Per (dataset, model, α) with at least two `outpaint:R` masks, FID and IS against r: one PNG
/// per metric with two panels (D_R, D_F).
pub fn outpaint_curves(tables: &[Table], dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    type Curves<'a> = BTreeMap<(String, String, String), Vec<(f64, &'a Table)>>;
    let mut by: Curves = BTreeMap::new();
    for t in tables {
        if let Some(r) = t
            .mask
            .strip_prefix("outpaint:")
            .and_then(|r| r.parse().ok())
        {
            let a = t.alpha.map(|a| a.to_string()).unwrap_or_default();
            by.entry((t.dataset.clone(), t.model.clone(), a))
                .or_default()
                .push((r, t));
        }
    }
    let mut out = vec![];
    if !by.is_empty() {
        crate::draw::ensure_font()?;
    }
    for ((d, m, a), mut pts) in by {
        if pts.len() < 2 {
            continue;
        }
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        for metric in ["fid", "is"] {
            let alpha = if a.is_empty() {
                String::new()
            } else {
                format!("_alpha{a}")
            };
            let path = dir.join(format!(
                "{}{alpha}_{metric}_outpaint.png",
                slug(&format!("{d}_{m}"))
            ));
            let title = format!(
                "{} against r — {m} ({d}){}",
                metric_title_of(pts[0].1, metric),
                if a.is_empty() {
                    String::new()
                } else {
                    format!(", α = {a}")
                }
            );
            atomic_png(&path, |p| panels(&pts, metric, &title, p))
                .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
            out.push((title, path));
        }
    }
    Ok(out)
}

/// (method label) → [(r, mean)] of one set.
fn lines_of(pts: &[(f64, &Table)], metric: &str, set: &str) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut by: BTreeMap<(usize, String), Vec<(f64, f64)>> = BTreeMap::new();
    for (r, t) in pts {
        let Some(ci) = t
            .columns
            .iter()
            .position(|c| c.set == set && c.metric == metric)
        else {
            continue;
        };
        for row in &t.rows {
            if let Some(v) = row.values[ci].as_ref().filter(|v| v.mean.is_finite()) {
                let k = (super::table::method_order(&row.method).0, row.label.clone());
                by.entry(k).or_default().push((*r, v.mean));
            }
        }
    }
    by.into_iter().map(|((_, l), v)| (l, v)).collect()
}

fn panels(pts: &[(f64, &Table)], metric: &str, title: &str, path: &Path) -> Result<(), Dyn> {
    let root = BitMapBackend::new(path, (1300, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(title, ("sans-serif", 20))?;
    let (plots, legend) = root.split_horizontally(1080);
    let halves = plots.split_evenly((1, 2));
    let (xmin, xmax) = (pts[0].0, pts[pts.len() - 1].0);
    let mut labels: Vec<String> = vec![];
    for (area, (set, name)) in halves.iter().zip([("retain", "D_R"), ("forget", "D_F")]) {
        let lines = lines_of(pts, metric, set);
        let ys: Vec<f64> = lines
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .collect();
        let (lo, hi) = ys
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
                (a.min(y), b.max(y))
            });
        if !lo.is_finite() {
            continue;
        }
        let pad = ((hi - lo) * 0.1).max(1e-6);
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d((xmin - 0.5)..(xmax + 0.5), (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc("r (borders of r/32 of the side; 8·r px at 256)")
            .y_desc(metric.to_uppercase())
            .label_style(("sans-serif", 13))
            .draw()?;
        for (label, v) in lines {
            let i = match labels.iter().position(|l| *l == label) {
                Some(i) => i,
                None => {
                    labels.push(label.clone());
                    labels.len() - 1
                }
            };
            let color = if label == "Original" {
                BLACK
            } else {
                COLORS[i % COLORS.len()]
            };
            chart.draw_series(LineSeries::new(v.clone(), color.stroke_width(2)))?;
            chart.draw_series(v.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    for (i, l) in labels.iter().enumerate() {
        let color = if l == "Original" {
            BLACK
        } else {
            COLORS[i % COLORS.len()]
        };
        let y = 60 + i as i32 * 24;
        legend.draw(&PathElement::new(
            vec![(10, y), (40, y)],
            color.stroke_width(2),
        ))?;
        legend.draw(&Text::new(l.clone(), (48, y - 7), ("sans-serif", 14)))?;
    }
    root.present()?;
    Ok(())
}

/// The qualitative grid per (dataset, model, mask, α) whose cells saved figure images: rows are
/// the chosen images (D_F first), columns masked input · each method's output (the table's row
/// order) · ground truth.
pub fn qualitative(
    tables: &[Table],
    records: &[(CellRecord, PathBuf)],
    dir: &Path,
) -> Result<Vec<(String, PathBuf)>> {
    let mut out = vec![];
    for t in super::paper::main_tables(tables).into_values().flatten() {
        // (column label, the cell's results folder, its id)
        let mut cols: Vec<(String, crate::store::RunDir, &str)> = vec![];
        for row in &super::paper::block(t).rows {
            let rec = records.iter().find(|(r, _)| {
                r.cell.dataset == t.dataset
                    && r.cell.model == t.model
                    && r.cell.mask.to_string() == t.mask
                    && r.cell.label == row.0
                    && (r.cell.alpha.is_none() || r.cell.alpha == t.alpha)
            });
            if let Some((r, d)) = rec {
                let run = crate::store::RunDir::new(d);
                if run.figure_dir(&r.cell.id).join("rows.json").is_file() {
                    cols.push((row.0.clone(), run, r.cell.id.as_str()));
                }
            }
        }
        let Some((_, first, first_id)) = cols.first() else {
            continue;
        };
        let rows: Vec<serde_json::Value> = serde_json::from_str(
            &std::fs::read_to_string(first.figure_dir(first_id).join("rows.json"))
                .context("reading rows.json")?,
        )?;
        let mut rows: Vec<(String, usize, u64)> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r["set"].as_str()?.to_string(),
                    r["position"].as_u64()? as usize,
                    r["class"].as_u64()?,
                ))
            })
            .collect();
        rows.sort_by_key(|r| (r.0 != "forget", r.1));
        let img = |d: &crate::store::RunDir, id: &str, set: &str, p: usize, kind: &str| {
            let f = d.figure_image(id, set, p, kind);
            anyhow::Ok(
                image::open(&f)
                    .with_context(|| format!("reading {}", f.display()))?
                    .to_rgb8(),
            )
        };
        let mut grid: Vec<Vec<image::RgbImage>> = vec![];
        let mut row_labels = vec![];
        for (set, p, class) in &rows {
            let mut line = vec![img(first, first_id, set, *p, "masked")?];
            for (_, d, id) in &cols {
                line.push(img(d, id, set, *p, "output")?);
            }
            line.push(img(first, first_id, set, *p, "truth")?);
            grid.push(line);
            row_labels.push(format!(
                "{} #{p} (class {class})",
                if set == "forget" { "D_F" } else { "D_R" }
            ));
        }
        let mut col_labels = vec!["masked input".to_string()];
        col_labels.extend(cols.iter().map(|c| c.0.clone()));
        col_labels.push("ground truth".into());
        let title = format!(
            "Qualitative results — {} ({}) · {}",
            t.model, t.dataset, t.mask
        );
        let sheet = crate::draw::grid::labelled_grid(&grid, &row_labels, &col_labels, &title)?;
        let path = dir.join(format!(
            "{}_qualitative.png",
            slug(&format!("{}_{}_{}", t.dataset, t.model, t.mask))
        ));
        let mut bytes = std::io::Cursor::new(Vec::new());
        sheet.write_to(&mut bytes, image::ImageFormat::Png)?;
        crate::util::write_atomic(&path, bytes.get_ref())?;
        out.push((title, path));
    }
    Ok(out)
}
