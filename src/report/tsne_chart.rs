//! The paper's Figure 4 drawn from stored embeddings (the t-SNE itself is `tsne.rs`).

use super::chart_style::{slug, Dyn, COLORS};
use super::table::Table;
use crate::draw::ensure_font;
use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// The paper's Figure 4: per table, one panel per method with a joint t-SNE (perplexity 20, seed
/// 0) of the stored embeddings — generated vs ground truth × forget vs retain, 50 points each —
/// of that method's cell with the lowest seed.
pub fn draw_tsne(
    tables: &[Table],
    records: &[(crate::store::CellRecord, PathBuf)],
    dir: &Path,
) -> Result<Vec<PathBuf>> {
    let mut files = vec![];
    for t in tables {
        let mut panels = vec![];
        for row in &t.rows {
            let cell = records
                .iter()
                .filter(|(r, _)| {
                    r.cell.dataset == t.dataset
                        && r.cell.model == t.model
                        && r.cell.mask.to_string() == t.mask
                        && r.cell.method.key() == row.method
                        && (r.cell.alpha.is_none() || r.cell.alpha == t.alpha)
                })
                .min_by_key(|(r, _)| r.cell.seed);
            let Some((rec, d)) = cell else { continue };
            let path = d
                .join("embeddings")
                .join(format!("{}.safetensors", rec.cell.id));
            if !path.is_file() {
                continue;
            }
            let m = candle_core::safetensors::load(&path, &candle_core::Device::Cpu)
                .with_context(|| format!("reading {}", path.display()))?;
            let groups = [
                "forget_generated",
                "forget_truth",
                "retain_generated",
                "retain_truth",
            ];
            let mut points = vec![];
            let mut labels = vec![];
            let mut dim = 0;
            for (gi, g) in groups.iter().enumerate() {
                let Some(e) = m.get(*g) else { continue };
                let (n, d) = e.dims2()?;
                dim = d;
                points.extend(e.flatten_all()?.to_vec1::<f32>()?);
                labels.extend(std::iter::repeat_n(gi, n));
            }
            if labels.is_empty() {
                continue;
            }
            let y = super::tsne::tsne(
                &points,
                labels.len(),
                dim,
                &super::tsne::TsneParams::default(),
            );
            panels.push((row.label.clone(), y, labels));
        }
        if panels.is_empty() {
            continue;
        }
        ensure_font()?;
        std::fs::create_dir_all(dir)?;
        let suffix = t.alpha.map(|a| format!("_alpha{a}")).unwrap_or_default();
        let path = dir.join(format!(
            "{}_tsne{suffix}.png",
            slug(&format!("{}_{}_{}", t.dataset, t.model, t.mask))
        ));
        super::chart_style::atomic_png(&path, |p| tsne_figure(&panels, &t.title(), p))
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
        files.push(path);
    }
    Ok(files)
}

type Panel = (String, Vec<[f64; 2]>, Vec<usize>);

fn tsne_figure(panels: &[Panel], title: &str, path: &Path) -> Result<(), Dyn> {
    let cols = panels.len().min(4);
    let rows = panels.len().div_ceil(cols);
    let (pw, ph) = (340u32, 340u32);
    let root =
        BitMapBackend::new(path, (pw * cols as u32, ph * rows as u32 + 70)).into_drawing_area();
    root.fill(&WHITE)?;
    let (header, body) = root.split_vertically(70);
    header.draw(&Text::new(
        format!("t-SNE of the similarity embeddings — {title}"),
        (10, 8),
        ("sans-serif", 18).into_font(),
    ))?;
    // Legend: forget red, retain blue; truth hollow circles, generated filled triangles.
    let legend = [
        ("D_F truth", COLORS[1], false),
        ("D_F generated", COLORS[1], true),
        ("D_R truth", COLORS[0], false),
        ("D_R generated", COLORS[0], true),
    ];
    for (i, (name, color, filled)) in legend.iter().enumerate() {
        let x = 14 + 170 * i as i32;
        if *filled {
            header.draw(&TriangleMarker::new((x, 48), 6, color.filled()))?;
        } else {
            header.draw(&Circle::new((x, 48), 5, color.stroke_width(2)))?;
        }
        header.draw(&Text::new(
            name.to_string(),
            (x + 12, 40),
            ("sans-serif", 14).into_font(),
        ))?;
    }
    let areas = body.split_evenly((rows, cols));
    for ((label, y, groups), area) in panels.iter().zip(areas) {
        let (lo_x, hi_x) = y
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p[0]), b.max(p[0]))
            });
        let (lo_y, hi_y) = y
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p[1]), b.max(p[1]))
            });
        let (px, py) = (
            ((hi_x - lo_x) * 0.05).max(1e-6),
            ((hi_y - lo_y) * 0.05).max(1e-6),
        );
        let mut chart = ChartBuilder::on(&area)
            .caption(label.as_str(), ("sans-serif", 15))
            .margin(8)
            .build_cartesian_2d((lo_x - px)..(hi_x + px), (lo_y - py)..(hi_y + py))?;
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()?;
        for (p, g) in y.iter().zip(groups) {
            let color = if *g < 2 { COLORS[1] } else { COLORS[0] };
            let pt = (p[0], p[1]);
            if g % 2 == 0 {
                chart.draw_series(std::iter::once(TriangleMarker::new(pt, 4, color.filled())))?;
            } else {
                chart.draw_series(std::iter::once(Circle::new(pt, 3, color.stroke_width(1))))?;
            }
        }
    }
    root.present()?;
    Ok(())
}
