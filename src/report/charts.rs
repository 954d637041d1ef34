//! Charts (Plotters, PNG): per table, one grouped bar chart per metric (methods × D_R / D_F, with
//! whiskers: the 95 % bootstrap interval where stored, else ± the seed std) and, when the grid
//! has several α, each metric against α. The membership audit's chart adds the chance level (0.5)
//! and the retrain oracle's D_F AUC as reference lines. The t-SNE figure is `tsne_chart.rs`.
//!
//! Labels use the embedded DejaVu Sans (or the TrueType file named by `I2I_UNLEARN_FONT`).

use super::table::{Col, Table};
use anyhow::{Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Register the chart font once: `I2I_UNLEARN_FONT` if set, else the embedded DejaVu Sans.
pub(crate) fn ensure_font() -> Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let (regular, bold): (&'static [u8], &'static [u8]) =
            match std::env::var_os("I2I_UNLEARN_FONT") {
                Some(p) => {
                    let bytes = std::fs::read(&p).map_err(|e| {
                        format!("I2I_UNLEARN_FONT={}: {e}", PathBuf::from(&p).display())
                    })?;
                    let b: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    (b, b)
                }
                None => (dejavu::sans::regular(), dejavu::sans::bold()),
            };
        register_font("sans-serif", FontStyle::Normal, regular)
            .map_err(|_| "the chart font is not a TrueType font".to_string())?;
        register_font("sans-serif", FontStyle::Bold, bold)
            .map_err(|_| "the chart font is not a TrueType font".to_string())?;
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

pub(crate) const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn metric_title(m: &str) -> &'static str {
    match m {
        "fid" => "FID",
        "is" => "Inception Score",
        "clip" => "CLIP similarity",
        "mia_auc" => "membership-audit AUC",
        _ => "value",
    }
}

/// The metric's name as the table's protocol computed it: with the domain extractor, "IS" and
/// "CLIP" would be wrong names.
fn metric_title_of(t: &Table, m: &str) -> String {
    let domain = t
        .protocols
        .iter()
        .any(|(c, p, _)| c.metric == m && p.contains("domain extractor"));
    match (m, domain) {
        ("clip", true) => "cosine similarity (domain extractor)".into(),
        ("is", true) => "IS (domain extractor)".into(),
        (m, true) => format!("{} (domain extractor)", metric_title(m)),
        (m, false) => metric_title(m).into(),
    }
}

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

pub(crate) type Dyn = Box<dyn std::error::Error + Send + Sync>;

/// Width of the legend column right of a bar chart's plot area.
const LEGEND_W: u32 = 150;

fn bars(t: &Table, metric: &str, path: &Path) -> Result<()> {
    draw_bars(t, metric, path).map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

fn draw_bars(t: &Table, metric: &str, path: &Path) -> Result<(), Dyn> {
    let cols: Vec<(usize, &Col)> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.metric == metric)
        .collect();
    let n = t.rows.len();
    let mut top: f64 = 0.0;
    for r in &t.rows {
        for (ci, _) in &cols {
            if let Some(v) = &r.values[*ci] {
                let whisker = v.ci.map(|c| c.1).unwrap_or(v.mean + v.std.unwrap_or(0.0));
                top = top.max(v.mean.max(whisker));
            }
        }
    }
    let top = if metric == "mia_auc" {
        1.0f64.max(top * 1.05)
    } else if top > 0.0 {
        top * 1.15
    } else {
        1.0
    };
    let plot_w = 140 * n as u32 + 160;
    let full = BitMapBackend::new(path, (plot_w + LEGEND_W, 520)).into_drawing_area();
    full.fill(&WHITE)?;
    // The legend sits right of the plot area, never on the bars.
    let (root, legend) = full.split_horizontally(plot_w);
    let name = metric_title_of(t, metric);
    let title = format!("{name} — {}", t.title());
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(70)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(name.as_str())
        .label_style(("sans-serif", 14))
        .draw()?;
    let width = 0.8 / cols.len().max(1) as f64;
    let mut sets: Vec<(&str, RGBColor)> = vec![];
    for (k, (ci, col)) in cols.iter().enumerate() {
        let color = COLORS[if col.set == "retain" { 0 } else { 1 }];
        let set_label = if col.set == "retain" {
            "D_R (retain)"
        } else {
            "D_F (forget)"
        };
        sets.push((set_label, color));
        for (i, r) in t.rows.iter().enumerate() {
            let Some(v) = &r.values[*ci] else { continue };
            let x0 = i as f64 + 0.1 + k as f64 * width;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x0, 0.0), (x0 + width * 0.9, v.mean)],
                color.filled(),
            )))?;
            let whisker = v.ci.or(v.std.map(|sd| (v.mean - sd, v.mean + sd)));
            if let Some((lo, hi)) = whisker {
                let xc = x0 + width * 0.45;
                let cap = width * 0.15;
                for seg in [
                    vec![(xc, lo), (xc, hi)],
                    vec![(xc - cap, lo), (xc + cap, lo)],
                    vec![(xc - cap, hi), (xc + cap, hi)],
                ] {
                    chart.draw_series(std::iter::once(PathElement::new(
                        seg,
                        BLACK.stroke_width(2),
                    )))?;
                }
            }
        }
    }
    // The audit's references: chance (0.5) and the oracle's D_F AUC.
    let mut refs: Vec<(String, RGBColor, f64)> = vec![];
    if metric == "mia_auc" {
        refs.push(("chance (0.5)".into(), RGBColor(0x7f, 0x7f, 0x7f), 0.5));
        let forget = cols
            .iter()
            .find(|(_, c)| c.set == "forget")
            .map(|(i, _)| *i);
        if let Some(v) = t
            .rows
            .iter()
            .find(|r| r.method == crate::unlearn::MethodName::Retrain.as_str())
            .and_then(|r| forget.and_then(|i| r.values[i].as_ref()))
        {
            refs.push(("oracle D_F".into(), BLACK, v.mean));
        }
        for (k, (_, color, y)) in refs.iter().enumerate() {
            chart.draw_series(DashedLineSeries::new(
                vec![(0.0, *y), (n as f64, *y)],
                4 + 4 * k as u32,
                4,
                color.stroke_width(2),
            ))?;
        }
    }
    // Two lines, so that the note fits the legend column.
    let whiskers = if t
        .rows
        .iter()
        .flat_map(|r| cols.iter().filter_map(|(i, _)| r.values[*i].as_ref()))
        .any(|v| v.ci.is_some())
    {
        ["whiskers:", "95% bootstrap CI"]
    } else {
        ["whiskers:", "± seed std"]
    };
    for (j, (label, color)) in refs.iter().map(|(l, c, _)| (l.as_str(), *c)).enumerate() {
        let y = 70 + 26 * (sets.len() + j) as i32;
        legend.draw(&PathElement::new(
            vec![(8, y), (26, y)],
            color.stroke_width(2),
        ))?;
        legend.draw(&Text::new(
            label.to_string(),
            (32, y - 8),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    for (k, line) in whiskers.iter().enumerate() {
        legend.draw(&Text::new(
            line.to_string(),
            (
                8,
                70 + 26 * (sets.len() + refs.len()) as i32 + 16 * k as i32,
            ),
            ("sans-serif", 12).into_font(),
        ))?;
    }
    for (j, (label, color)) in sets.iter().enumerate() {
        let y = 70 + 26 * j as i32;
        legend.draw(&Rectangle::new([(10, y - 7), (24, y + 7)], color.filled()))?;
        legend.draw(&Text::new(
            label.to_string(),
            (32, y - 8),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    // Method names under the bars, in pixel coordinates.
    for (i, r) in t.rows.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(i as f64 + 0.5, 0.0));
        for (j, line) in wrap(&r.label, 16).iter().enumerate() {
            let style = TextStyle::from(("sans-serif", 14).into_font()).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Top,
                ),
            );
            root.draw(&Text::new(
                line.clone(),
                (px, py + 8 + 16 * j as i32),
                style,
            ))?;
        }
    }
    full.present()?;
    Ok(())
}

fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in s.split(' ') {
        let cur = lines.last_mut().unwrap();
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(w.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
    }
    lines
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
    draw_versus(ts, xs, metric, x_desc, what, title, path)
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
