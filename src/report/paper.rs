//! `report --layout paper DIR...`: the folders of several experiments merged into the paper's
//! layout (`paper/paper.md`, `paper/paper.tex`, PNGs): the main table of each inpainting mask with
//! a block per family (model) — rows Original … Ours (proxy D_R), then Retrain (oracle) where
//! present; FID / IS / CLIP on D_R and D_F —, the α table of Ours, the outpainting curves (D_R and
//! D_F panels), the t-SNE per family and the qualitative figure per family; the protocol of every
//! number under its table. Text here; the figures are `paper_charts.rs`.

use super::render::{arrow, fmt_value, tex_escape};
use super::table::{column_name, Better, Col, Table, Value};
use crate::names::{MethodName, MetricId};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The paper's six columns.
pub fn paper_columns() -> [Col; 6] {
    let c = |set, m: MetricId, better| Col {
        set,
        metric: m.as_str(),
        better,
    };
    [
        c("retain", MetricId::Fid, Better::Lower),
        c("retain", MetricId::Is, Better::Higher),
        c("retain", MetricId::Clip, Better::Higher),
        c("forget", MetricId::Fid, Better::Higher),
        c("forget", MetricId::Is, Better::Lower),
        c("forget", MetricId::Clip, Better::Lower),
    ]
}

/// One block of a paper table: a family's model on its dataset.
pub struct Block<'a> {
    pub table: &'a Table,
    /// (label, values in [`paper_columns`] order), in the paper's row order.
    pub rows: Vec<(String, Vec<Option<Value>>)>,
}

fn value(t: &Table, row: usize, c: &Col) -> Option<Value> {
    let i = t
        .columns
        .iter()
        .position(|x| x.set == c.set && x.metric == c.metric)?;
    t.rows[row].values[i].clone()
}

/// The paper's row order: the reference Original first, the oracle last.
fn row_rank(method: &str) -> (usize, (usize, String)) {
    let oracle = MethodName::from_key(method) == Some(MethodName::Retrain);
    (oracle as usize, super::table::method_order(method))
}

/// A block from a table: its rows in the paper's order with the paper's columns.
pub fn block(t: &Table) -> Block<'_> {
    let mut idx: Vec<usize> = (0..t.rows.len()).collect();
    idx.sort_by_key(|&i| row_rank(&t.rows[i].method));
    let cols = paper_columns();
    Block {
        table: t,
        rows: idx
            .into_iter()
            .map(|i| {
                (
                    t.rows[i].label.clone(),
                    cols.iter().map(|c| value(t, i, c)).collect(),
                )
            })
            .collect(),
    }
}

/// The main tables: per inpainting mask (`center:K`), per (dataset, model), the table with the
/// most rows (the grid with every method; ties: the smallest α).
pub fn main_tables(tables: &[Table]) -> BTreeMap<String, Vec<&Table>> {
    let mut best: BTreeMap<(String, String, String), &Table> = BTreeMap::new();
    for t in tables.iter().filter(|t| t.mask.starts_with("center:")) {
        let k = (t.mask.clone(), t.dataset.clone(), t.model.clone());
        let better = |old: &Table| {
            (t.rows.len(), std::cmp::Reverse(t.alpha.map(f64::to_bits)))
                > (
                    old.rows.len(),
                    std::cmp::Reverse(old.alpha.map(f64::to_bits)),
                )
        };
        if best.get(&k).is_none_or(|o| better(o)) {
            best.insert(k, t);
        }
    }
    let mut out: BTreeMap<String, Vec<&Table>> = BTreeMap::new();
    for ((mask, _, _), t) in best {
        out.entry(mask).or_default().push(t);
    }
    out
}

/// Ours' values at one α, in [`paper_columns`] order.
pub type AlphaRow = (f64, Vec<Option<Value>>);

/// The α tables: per (dataset, model, mask) with several α, Ours' row at each α.
pub fn alpha_tables(tables: &[Table]) -> Vec<(String, Vec<AlphaRow>)> {
    let mut by: BTreeMap<(String, String, String), Vec<AlphaRow>> = BTreeMap::new();
    let cols = paper_columns();
    for t in tables {
        let (Some(a), Some(r)) = (
            t.alpha,
            t.rows
                .iter()
                .position(|r| r.method == MethodName::Ours.as_str()),
        ) else {
            continue;
        };
        by.entry((t.dataset.clone(), t.model.clone(), t.mask.clone()))
            .or_default()
            .push((a, cols.iter().map(|c| value(t, r, c)).collect()));
    }
    by.into_iter()
        .filter(|(_, v)| v.len() > 1)
        .map(|((d, m, mask), mut v)| {
            v.sort_by(|a, b| a.0.total_cmp(&b.0));
            (format!("{m} ({d}) · {mask}"), v)
        })
        .collect()
}

fn mask_title(mask: &str) -> String {
    match mask.strip_prefix("center:") {
        Some(k) => format!("Inpainting, centre {k} × {k} cells"),
        None => mask.to_string(),
    }
}

/// The protocols of a block's columns, each once.
fn protocols(t: &Table) -> Vec<String> {
    let mut v: Vec<String> = vec![];
    for c in paper_columns() {
        if let Some((_, p, n)) = t
            .protocols
            .iter()
            .find(|(x, _, _)| x.set == c.set && x.metric == c.metric)
        {
            let line = format!(
                "{} ({}): {p}; N = {n}",
                column_name(c.metric, Some(p)),
                c.set
            );
            if !v.contains(&line) {
                v.push(line);
            }
        }
    }
    v
}

fn md_cell(c: &Col, v: &Option<Value>) -> String {
    v.as_ref()
        .map(|v| fmt_value(c.metric, v, " ± ", false))
        .unwrap_or_else(|| "–".into())
}

/// `paper.md`: the tables, then the figures written beside it (`figures`: (title, file name)).
pub fn markdown(tables: &[Table], figures: &[(String, String)]) -> String {
    let cols = paper_columns();
    let mut s = String::from("# The paper's tables and figures\n\nBuilt by `i2i-unlearn report --layout paper` from the stored cells of the folders given. D_R: retain set (lower FID, higher IS and CLIP are better), D_F: forget set (the reverse). Mean ± std over seeds where there are several. The protocol of every column is under its table.\n");
    let header = |s: &mut String, first: &str| {
        let _ = write!(s, "\n| {first} |");
        for c in &cols {
            let set = if c.set == "retain" { "D_R" } else { "D_F" };
            let _ = write!(
                s,
                " {set} {} {} |",
                column_name(c.metric, None),
                arrow(c, true)
            );
        }
        let _ = writeln!(s, "\n|---|{}", "---:|".repeat(cols.len()));
    };
    for (mask, ts) in main_tables(tables) {
        let _ = writeln!(s, "\n## {}\n", mask_title(&mask));
        header(&mut s, "Method");
        for t in &ts {
            let b = block(t);
            let alpha = t.alpha.map(|a| format!(", α = {a}")).unwrap_or_default();
            let _ = writeln!(
                s,
                "| **{} ({}{alpha})** |{}",
                t.model,
                t.dataset,
                " |".repeat(cols.len())
            );
            for (label, vals) in &b.rows {
                let _ = write!(s, "| {label} |");
                for (c, v) in cols.iter().zip(vals) {
                    let _ = write!(s, " {} |", md_cell(c, v));
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s, "\nProtocol:");
        for t in &ts {
            for p in protocols(t) {
                let _ = writeln!(s, "- {} ({}): {p}", t.model, t.dataset);
            }
        }
    }
    let alphas = alpha_tables(tables);
    if !alphas.is_empty() {
        let _ = writeln!(s, "\n## α ablation (Ours)\n");
        header(&mut s, "α");
        for (title, rows) in &alphas {
            let _ = writeln!(s, "| **{title}** |{}", " |".repeat(cols.len()));
            for (a, vals) in rows {
                let _ = write!(s, "| {a} |");
                for (c, v) in cols.iter().zip(vals) {
                    let _ = write!(s, " {} |", md_cell(c, v));
                }
                let _ = writeln!(s);
            }
        }
        let _ = writeln!(s, "\nProtocol: as the main table of the same model.");
    }
    for (title, file) in figures {
        let _ = writeln!(s, "\n## {title}\n\n![{title}]({file})");
    }
    s
}

/// `paper.tex`: one `table*` per paper table (booktabs).
pub fn latex(tables: &[Table]) -> String {
    let cols = paper_columns();
    let mut s = String::from(
        "% Generated by i2i-unlearn report --layout paper; needs \\usepackage{booktabs}.\n",
    );
    let head = |s: &mut String, caption: &str, first: &str| {
        let _ = writeln!(
            s,
            "\\begin{{table*}}[t]\n\\centering\n\\caption{{{}}}",
            tex_escape(caption)
        );
        let _ = writeln!(
            s,
            "\\begin{{tabular}}{{l{}}}\n\\toprule",
            "c".repeat(cols.len())
        );
        let _ = writeln!(s, " & \\multicolumn{{3}}{{c}}{{$D_R$}} & \\multicolumn{{3}}{{c}}{{$D_F$}} \\\\\n\\cmidrule(lr){{2-4}}\\cmidrule(lr){{5-7}}");
        let _ = write!(s, "{first}");
        for c in &cols {
            let _ = write!(s, " & {} {}", column_name(c.metric, None), arrow(c, false));
        }
        let _ = writeln!(s, " \\\\");
    };
    let row = |s: &mut String, label: &str, vals: &[Option<Value>]| {
        let _ = write!(s, "{}", tex_escape(label).replace("D\\_R", "$D_R$"));
        for (c, v) in cols.iter().zip(vals) {
            let cell = v
                .as_ref()
                .map(|v| format!("${}$", fmt_value(c.metric, v, " \\pm ", false)))
                .unwrap_or_else(|| "--".into());
            let _ = write!(s, " & {cell}");
        }
        let _ = writeln!(s, " \\\\");
    };
    for (mask, ts) in main_tables(tables) {
        head(&mut s, &mask_title(&mask), "Method");
        for t in &ts {
            let _ = writeln!(
                s,
                "\\midrule\n\\multicolumn{{7}}{{l}}{{\\textit{{{} ({})}}}} \\\\",
                tex_escape(&t.model),
                tex_escape(&t.dataset)
            );
            for (label, vals) in &block(t).rows {
                row(&mut s, label, vals);
            }
        }
        let _ = writeln!(s, "\\bottomrule\n\\end{{tabular}}");
        for t in &ts {
            for p in protocols(t) {
                let _ = writeln!(
                    s,
                    "% protocol, {} ({}): {}",
                    t.model,
                    t.dataset,
                    p.replace('\n', " ")
                );
            }
        }
        let _ = writeln!(s, "\\end{{table*}}\n");
    }
    let alphas = alpha_tables(tables);
    if !alphas.is_empty() {
        head(&mut s, "α ablation of Ours", "$\\alpha$");
        for (title, rows) in &alphas {
            let _ = writeln!(
                s,
                "\\midrule\n\\multicolumn{{7}}{{l}}{{\\textit{{{}}}}} \\\\",
                tex_escape(title)
            );
            for (a, vals) in rows {
                row(&mut s, &a.to_string(), vals);
            }
        }
        let _ = writeln!(s, "\\bottomrule\n\\end{{tabular}}\n\\end{{table*}}\n");
    }
    s
}
