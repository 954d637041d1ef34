//! Grouped bar charts: per table and metric, methods × (D_R, D_F) with whiskers (the 95 %
//! bootstrap interval where stored, else ± the seed std); the membership audit's chart adds the
//! chance level and the retrain oracle's D_F AUC as reference lines.

use super::chart_style::{metric_title_of, wrap, Dyn, COLORS};
use super::table::{Col, Table};
use crate::names::MetricId;
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// Width of the legend column right of a bar chart's plot area.
pub(crate) const LEGEND_W: u32 = 150;

pub(crate) fn bars(t: &Table, metric: &str, path: &Path) -> Result<()> {
    super::chart_style::atomic_png(path, |p| draw_bars(t, metric, p))
        .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))
}

pub(crate) fn draw_bars(t: &Table, metric: &str, path: &Path) -> Result<(), Dyn> {
    let cols: Vec<(usize, &Col)> = t
        .columns
        .iter()
        .enumerate()
        .filter(|(_, c)| c.metric == metric)
        .collect();
    let n = t.rows.len();
    let top = bar_top(t, &cols, metric);
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
            if let Some((lo, hi)) = v.ci.or(v.std.map(|sd| (v.mean - sd, v.mean + sd))) {
                draw_whisker(&mut chart, x0 + width * 0.45, width * 0.15, lo, hi)?;
            }
        }
    }
    let refs = audit_refs(t, &cols, metric);
    for (k, (_, color, y)) in refs.iter().enumerate() {
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, *y), (n as f64, *y)],
            4 + 4 * k as u32,
            4,
            color.stroke_width(2),
        ))?;
    }
    let with_ci = t
        .rows
        .iter()
        .flat_map(|r| cols.iter().filter_map(|(i, _)| r.values[*i].as_ref()))
        .any(|v| v.ci.is_some());
    draw_legend(&legend, &sets, &refs, with_ci)?;
    draw_row_labels(&root, &chart, t)?;
    full.present()?;
    Ok(())
}

type Chart<'a> = ChartContext<
    'a,
    BitMapBackend<'a>,
    plotters::coord::cartesian::Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::types::RangedCoordf64,
    >,
>;
type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// The top of the value axis: above every bar and whisker (the audit's AUC axis reaches 1).
fn bar_top(t: &Table, cols: &[(usize, &Col)], metric: &str) -> f64 {
    let mut top: f64 = 0.0;
    for r in &t.rows {
        for (ci, _) in cols {
            if let Some(v) = &r.values[*ci] {
                let whisker = v.ci.map(|c| c.1).unwrap_or(v.mean + v.std.unwrap_or(0.0));
                top = top.max(v.mean.max(whisker));
            }
        }
    }
    if metric == MetricId::MiaAuc.as_str() {
        1.0f64.max(top * 1.05)
    } else if top > 0.0 {
        top * 1.15
    } else {
        1.0
    }
}

/// A whisker from `lo` to `hi` at `xc`, with caps of half-width `cap`.
fn draw_whisker(chart: &mut Chart<'_>, xc: f64, cap: f64, lo: f64, hi: f64) -> Result<(), Dyn> {
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
    Ok(())
}

/// The audit's reference lines: chance (0.5) and the oracle's D_F AUC (none for other metrics).
fn audit_refs(t: &Table, cols: &[(usize, &Col)], metric: &str) -> Vec<(String, RGBColor, f64)> {
    let mut refs = vec![];
    if metric != MetricId::MiaAuc.as_str() {
        return refs;
    }
    refs.push(("chance (0.5)".into(), RGBColor(0x7f, 0x7f, 0x7f), 0.5));
    let forget = cols
        .iter()
        .find(|(_, c)| c.set == "forget")
        .map(|(i, _)| *i);
    if let Some(v) = t
        .rows
        .iter()
        .find(|r| r.method == crate::names::MethodName::Retrain.as_str())
        .and_then(|r| forget.and_then(|i| r.values[i].as_ref()))
    {
        refs.push(("oracle D_F".into(), BLACK, v.mean));
    }
    refs
}

/// The legend column: the sets' colours, the reference lines, what the whiskers are.
fn draw_legend(
    legend: &Area<'_>,
    sets: &[(&str, RGBColor)],
    refs: &[(String, RGBColor, f64)],
    with_ci: bool,
) -> Result<(), Dyn> {
    // Two lines, so that the note fits the legend column.
    let whiskers = if with_ci {
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
    Ok(())
}

/// Method names under the bars, in pixel coordinates.
fn draw_row_labels(root: &Area<'_>, chart: &Chart<'_>, t: &Table) -> Result<(), Dyn> {
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
    Ok(())
}
