//! Charts (Plotters, PNG): per table, one grouped bar chart per metric (methods × D_R / D_F, with
//! whiskers: the 95 % bootstrap interval where stored, else ± the seed std) and, when the grid
//! has several α, each metric against α. The membership audit's chart adds the chance level (0.5)
//! and the retrain oracle's D_F AUC as reference lines. The t-SNE figure is `tsne_chart.rs`.
//!
//! Labels use the embedded DejaVu Sans (or the TrueType file named by `I2I_UNLEARN_FONT`).

use super::bars::bars;
use super::chart_style::{metric_title, slug, Dyn, COLORS};
use super::table::Table;
use crate::draw::ensure_font;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Draw every chart; returns the files written.
pub fn draw_all(tables: &[Table], dir: &Path) -> Result<Vec<PathBuf>> {
    if tables.is_empty() {
        return Ok(vec![]);
    }
    ensure_font()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = vec![];
    let mut by_group: BTreeMap<(String, String, String), Vec<&Table>> = BTreeMap::new();
    for t in tables {
        by_group
            .entry((t.dataset.clone(), t.model.clone(), t.mask.clone()))
            .or_default()
            .push(t);
    }
    for ((d, m, mask), ts) in by_group {
        let several = ts.len() > 1;
        let base = slug(&format!("{d}_{m}_{mask}"));
        for t in &ts {
            for metric in metrics_of(t) {
                let suffix = match (several, t.alpha) {
                    (true, Some(a)) => format!("_alpha{a}"),
                    _ => String::new(),
                };
                let path = dir.join(format!("{base}_{metric}{suffix}.png"));
                bars(t, metric, &path)?;
                files.push(path);
            }
        }
        if several {
            for metric in metrics_of(ts[0]) {
                let path = dir.join(format!("{base}_{metric}_vs_alpha.png"));
                let xs: Vec<f64> = ts.iter().map(|t| t.alpha.unwrap_or(f64::NAN)).collect();
                let title = format!("{} · {} · {}", ts[0].dataset, ts[0].model, ts[0].mask);
                versus(
                    &ts,
                    &xs,
                    metric,
                    "α (forget-term weight)",
                    "α",
                    &title,
                    &path,
                )?;
                files.push(path);
            }
        }
    }
    // The outpainting curve: with several `outpaint:R` masks, each metric against R.
    // (dataset, model, α) → [(R, table)].
    type Curves<'a> = BTreeMap<(String, String, String), Vec<(f64, &'a Table)>>;
    let mut curves: Curves = BTreeMap::new();
    for t in tables {
        if let Some(r) = t
            .mask
            .strip_prefix("outpaint:")
            .and_then(|r| r.parse::<f64>().ok())
        {
            curves
                .entry((
                    t.dataset.clone(),
                    t.model.clone(),
                    t.alpha.map(|a| a.to_string()).unwrap_or_default(),
                ))
                .or_default()
                .push((r, t));
        }
    }
    for ((d, m, a), mut pts) in curves {
        if pts.len() < 2 {
            continue;
        }
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        let xs: Vec<f64> = pts.iter().map(|p| p.0).collect();
        let ts: Vec<&Table> = pts.iter().map(|p| p.1).collect();
        let alpha = if a.is_empty() {
            String::new()
        } else {
            format!("_alpha{a}")
        };
        let title = format!(
            "{d} · {m}{}",
            if a.is_empty() {
                String::new()
            } else {
                format!(" · α = {a}")
            }
        );
        for metric in metrics_of(ts[0]) {
            let path = dir.join(format!(
                "{}_{metric}_vs_outpaint{alpha}.png",
                slug(&format!("{d}_{m}"))
            ));
            versus(
                &ts,
                &xs,
                metric,
                "outpainting R (each border R/32 of the side)",
                "outpainting",
                &title,
                &path,
            )?;
            files.push(path);
        }
    }
    Ok(files)
}

/// The table's metrics, each once, in column order.
fn metrics_of(t: &Table) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = vec![];
    for c in &t.columns {
        if !v.contains(&c.metric) {
            v.push(c.metric);
        }
    }
    v
}

/// One metric of several tables against a number per table (α, the outpainting width): one line
/// per method and set (D_R solid with circles, D_F dashed with triangles), the Original in black.
fn versus(
    ts: &[&Table],
    xs: &[f64],
    metric: &str,
    x_desc: &str,
    what: &str,
    title: &str,
    path: &Path,
) -> Result<()> {
    super::chart_style::atomic_png(path, |p| {
        draw_versus(ts, xs, metric, x_desc, what, title, p)
    })
    .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

fn draw_versus(
    ts: &[&Table],
    xs: &[f64],
    metric: &str,
    x_desc: &str,
    what: &str,
    title: &str,
    path: &Path,
) -> Result<(), Dyn> {
    // (method order, method label, set) → [(x, mean)].
    let mut lines: BTreeMap<(usize, String, String), Vec<(f64, f64)>> = BTreeMap::new();
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (t, &x) in ts.iter().zip(xs) {
        if !x.is_finite() {
            continue;
        }
        for (ci, c) in t.columns.iter().enumerate() {
            if c.metric != metric {
                continue;
            }
            for (ri, r) in t.rows.iter().enumerate() {
                if let Some(v) = &r.values[ci] {
                    lo = lo.min(v.mean);
                    hi = hi.max(v.mean);
                    lines
                        .entry((ri, r.label.clone(), c.set.to_string()))
                        .or_default()
                        .push((x, v.mean));
                }
            }
        }
    }
    if !lo.is_finite() {
        return Ok(());
    }
    let pad = ((hi - lo) * 0.1).max(1e-6);
    let (xmin, xmax) = xs
        .iter()
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        });
    let xpad = ((xmax - xmin) * 0.05).max(1e-3);
    // The legend sits right of the plot area, never on the data.
    let root = BitMapBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot, legend) = root.split_horizontally(800);
    let caption = format!("{} vs {what} — {title}", metric_title(metric));
    let mut builder = ChartBuilder::on(&plot);
    builder
        .caption(caption, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60);
    let x_range = (xmin - xpad)..(xmax + xpad);
    // Values spanning more than a decade and a half (one method's FID exploding) get a log axis,
    // so the other lines stay readable.
    let entries = if lo > 0.0 && hi / lo > 30.0 {
        let mut chart =
            builder.build_cartesian_2d(x_range, ((lo * 0.8)..(hi * 1.25)).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(format!("{} (log scale)", metric_title(metric)))
            .label_style(("sans-serif", 14))
            .draw()?;
        draw_lines(&mut chart, lines)?
    } else {
        let mut chart = builder.build_cartesian_2d(x_range, (lo - pad)..(hi + pad))?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(metric_title(metric))
            .label_style(("sans-serif", 14))
            .draw()?;
        draw_lines(&mut chart, lines)?
    };
    for (i, (name, color, retain)) in entries.iter().enumerate() {
        let y = 60 + i as i32 * 22;
        if *retain {
            legend.draw(&PathElement::new(
                vec![(10, y), (40, y)],
                color.stroke_width(2),
            ))?;
            legend.draw(&Circle::new((25, y), 4, color.filled()))?;
        } else {
            legend.draw(&PathElement::new(
                vec![(10, y), (18, y)],
                color.stroke_width(2),
            ))?;
            legend.draw(&PathElement::new(
                vec![(32, y), (40, y)],
                color.stroke_width(2),
            ))?;
            legend.draw(&TriangleMarker::new((25, y), 5, color.filled()))?;
        }
        legend.draw(&Text::new(
            name.clone(),
            (48, y - 8),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// One line per (method, set): D_R solid with circles, D_F dashed with triangles, the Original in
/// black; returns the legend entries (name, colour, is D_R).
fn draw_lines<DB: DrawingBackend, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    lines: BTreeMap<(usize, String, String), Vec<(f64, f64)>>,
) -> Result<Vec<(String, RGBColor, bool)>, Dyn>
where
    DB::ErrorType: 'static,
{
    let labels: Vec<String> = {
        let mut v: Vec<String> = lines.keys().map(|(_, l, _)| l.clone()).collect();
        v.dedup();
        v
    };
    let mut entries: Vec<(String, RGBColor, bool)> = vec![];
    for ((_, label, set), mut pts) in lines {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = if label == "Original" {
            BLACK
        } else {
            COLORS[labels.iter().position(|l| *l == label).unwrap_or(0) % COLORS.len()]
        };
        let retain = set == "retain";
        entries.push((
            format!("{label} ({})", if retain { "D_R" } else { "D_F" }),
            color,
            retain,
        ));
        if retain {
            chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?;
            chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
        } else {
            chart.draw_series(DashedLineSeries::new(
                pts.clone(),
                6,
                4,
                color.stroke_width(2),
            ))?;
            chart.draw_series(
                pts.iter()
                    .map(|p| TriangleMarker::new(*p, 5, color.filled())),
            )?;
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::super::bars::{draw_bars, LEGEND_W};
    use super::super::chart_style::metric_title_of;
    use super::super::table::Col;
    use super::*;
    use crate::report::table::{Better, TableRow, Value};

    /// The legend of a bar chart is drawn in its own column right of the plot area (never on the
    /// bars), and the title names the domain extractor when it computed the metric.
    #[test]
    fn bar_chart_legend_is_outside_the_plot() {
        let v = |m: f64| {
            Some(Value {
                mean: m,
                std: None,
                seeds: 1,
                noise: None,
                ci: Some((m - 1.0, m + 1.0)),
            })
        };
        let cols = vec![
            Col {
                set: "retain",
                metric: "fid",
                better: Better::Lower,
            },
            Col {
                set: "forget",
                metric: "fid",
                better: Better::Higher,
            },
        ];
        let t = Table {
            dataset: "d".into(),
            model: "m".into(),
            mask: "center:4".into(),
            alpha: None,
            columns: cols.clone(),
            rows: vec![
                TableRow {
                    method: "original".into(),
                    label: "Original".into(),
                    values: vec![v(10.0), v(12.0)],
                },
                TableRow {
                    method: "ours".into(),
                    label: "Ours".into(),
                    values: vec![v(11.0), v(30.0)],
                },
            ],
            protocols: cols
                .iter()
                .map(|c| (*c, "FID, domain extractor (CNN)".to_string(), 10))
                .collect(),
            oracle: vec![],
        };
        assert_eq!(metric_title_of(&t, "fid"), "FID (domain extractor)");
        ensure_font().unwrap();
        let path = std::env::temp_dir().join(format!("i2i-bars-{}.png", std::process::id()));
        draw_bars(&t, "fid", &path).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        std::fs::remove_file(&path).ok();
        let plot_w = 140 * 2 + 160;
        assert_eq!(img.width(), plot_w + LEGEND_W);
        for c in [COLORS[0], COLORS[1]] {
            let in_legend = (plot_w..img.width())
                .any(|x| (0..img.height()).any(|y| img.get_pixel(x, y).0 == [c.0, c.1, c.2]));
            assert!(in_legend, "legend swatch {c:?} not right of the plot");
        }
    }
}
