//! The Pareto chart of a grid: per (dataset, model, mask), a metric on D_R (x) against the same
//! metric on D_F (y), one point per cell row of the tables — each α of an α-swept method, each
//! retain budget ε of `controllable` — with each method's points joined in the order of its
//! sweep; reference rows (Original, Retrain) and methods with one point are single markers.
//! Drawn when some method sweeps at least two points.

use super::chart_style::{metric_title, slug, Dyn, COLORS};
use super::table::Table;
use crate::names::MethodName;
use anyhow::Result;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One method's points: (sweep value, D_R value, D_F value), in sweep order.
type Series = Vec<(f64, f64, f64)>;

/// A row's series (its method key without the `+eps…` of an ε sweep) and sweep value (its ε, or
/// the table's α).
fn series_of(method: &str, t: &Table) -> (String, f64) {
    match method.split_once("+eps") {
        Some((base, e)) => (base.to_string(), e.parse().unwrap_or(f64::NAN)),
        None => (method.to_string(), t.alpha.unwrap_or(0.0)),
    }
}

/// The points of one (dataset, model, mask): series key → (label, points). Rows without an α
/// (reference rows, ε sweeps) appear in every α table: they are read once.
fn points(ts: &[&Table], metric: &str) -> BTreeMap<(usize, String), (String, Series)> {
    let mut out: BTreeMap<(usize, String), (String, Series)> = BTreeMap::new();
    for (k, t) in ts.iter().enumerate() {
        let col = |set: &str| {
            t.columns
                .iter()
                .position(|c| c.set == set && c.metric == metric)
        };
        let (Some(cr), Some(cf)) = (col("retain"), col("forget")) else {
            continue;
        };
        for r in &t.rows {
            let (key, sweep) = series_of(&r.method, t);
            let swept_by_alpha = MethodName::from_key(&r.method).is_some_and(|m| m.uses_alpha());
            if k > 0 && !swept_by_alpha {
                continue;
            }
            let (Some(x), Some(y)) = (&r.values[cr], &r.values[cf]) else {
                continue;
            };
            let order = super::table::method_order(&key).0;
            let label = match r.label.split_once(" (ε = ") {
                Some((base, _)) => base.to_string(),
                None => r.label.clone(),
            };
            let e = out.entry((order, key)).or_insert((label, vec![]));
            e.1.push((sweep, x.mean, y.mean));
        }
    }
    for (_, pts) in out.values_mut() {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// Draw the Pareto chart of every (dataset, model, mask) of `tables` whose grid sweeps a method
/// over two points or more; returns the files written.
pub fn draw_pareto(tables: &[Table], metric: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    let mut groups: BTreeMap<(String, String, String), Vec<&Table>> = BTreeMap::new();
    for t in tables {
        groups
            .entry((t.dataset.clone(), t.model.clone(), t.mask.clone()))
            .or_default()
            .push(t);
    }
    let mut files = vec![];
    for ((d, m, mask), mut ts) in groups {
        ts.sort_by(|a, b| a.alpha.unwrap_or(0.0).total_cmp(&b.alpha.unwrap_or(0.0)));
        let pts = points(&ts, metric);
        if !pts.values().any(|(_, p)| p.len() >= 2) {
            continue;
        }
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!(
            "pareto_{}_{metric}.png",
            slug(&format!("{d}_{m}_{mask}"))
        ));
        let title = format!("{d} · {m} · {mask}");
        super::chart_style::atomic_png(&path, |p| draw(&pts, metric, &title, p))
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}

fn draw(
    pts: &BTreeMap<(usize, String), (String, Series)>,
    metric: &str,
    title: &str,
    path: &Path,
) -> Result<(), Dyn> {
    let all: Vec<(f64, f64)> = pts
        .values()
        .flat_map(|(_, p)| p.iter().map(|&(_, x, y)| (x, y)))
        .collect();
    let span = |v: Vec<f64>| {
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        let pad = ((hi - lo) * 0.08).max(hi.abs() * 0.02).max(1e-6);
        (lo - pad)..(hi + pad)
    };
    let xr = span(all.iter().map(|p| p.0).collect());
    let yr = span(all.iter().map(|p| p.1).collect());
    let root = BitMapBackend::new(path, (1100, 620)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(820);
    let name = metric_title(metric);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            format!("Pareto: {name} on D_F vs D_R — {title}"),
            ("sans-serif", 18),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(xr, yr)?;
    chart
        .configure_mesh()
        .x_desc(format!("{name} on D_R (retain)"))
        .y_desc(format!("{name} on D_F (forget)"))
        .label_style(("sans-serif", 14))
        .draw()?;
    for (i, ((_, key), (label, p))) in pts.iter().enumerate() {
        let reference = MethodName::from_key(key).is_some_and(|m| m.is_reference());
        let color = if reference && key == MethodName::Original.as_str() {
            BLACK
        } else {
            COLORS[i % COLORS.len()]
        };
        let xy: Vec<(f64, f64)> = p.iter().map(|&(_, x, y)| (x, y)).collect();
        if xy.len() >= 2 {
            chart.draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))?;
        }
        chart.draw_series(xy.iter().map(|&c| Circle::new(c, 5, color.filled())))?;
        let y = 60 + i as i32 * 24;
        legend.draw(&Circle::new((20, y), 5, color.filled()))?;
        let sweep = match (xy.len(), key.as_str()) {
            (1, _) => String::new(),
            (n, k) if MethodName::from_key(k).is_some_and(|m| m.uses_epsilon()) => {
                format!(" ({n} ε)")
            }
            (n, _) => format!(" ({n} α)"),
        };
        legend.draw(&Text::new(
            format!("{label}{sweep}"),
            (32, y - 8),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}
