//! The tables as text: `table.md` (Markdown, with how to read it and each column's protocol)
//! and `table.tex` (booktabs), both optionally with the bootstrap intervals (`report --ci`).

use super::table::{column_name, Better, Col, Table, Value, BOLD_RULE};
use crate::names::MetricId;
use crate::store::CellRecord;
use std::collections::BTreeSet;
use std::fmt::Write;

/// Digits for a metric: FID and IS to 3 significant-ish decimals, CLIP to 4.
pub(crate) fn fmt_num(metric: &str, v: f64) -> String {
    match metric {
        m if m == MetricId::Clip.as_str() => format!("{v:.4}"),
        _ if v.abs() >= 100.0 => format!("{v:.1}"),
        _ if v.abs() >= 10.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

/// Mean (± seed std), and with `ci` the bootstrap interval as `[low, high]`.
pub(crate) fn fmt_value(metric: &str, v: &Value, pm: &str, ci: bool) -> String {
    if !v.mean.is_finite() {
        return "n/a".into();
    }
    let mut out = match v.std {
        Some(s) => format!("{}{pm}{}", fmt_num(metric, v.mean), fmt_num(metric, s)),
        None => fmt_num(metric, v.mean),
    };
    if let (true, Some((lo, hi))) = (ci, v.ci) {
        out.push_str(&format!(
            " [{}, {}]",
            fmt_num(metric, lo),
            fmt_num(metric, hi)
        ));
    }
    out
}

pub(crate) fn arrow(c: &Col, md: bool) -> &'static str {
    match (c.better, md) {
        (Better::Higher, true) => "↑",
        (Better::Lower, true) => "↓",
        (Better::Toward(_), true) => "→0.5",
        (Better::Higher, false) => "$\\uparrow$",
        (Better::Lower, false) => "$\\downarrow$",
        (Better::Toward(_), false) => "$\\to 0.5$",
        (Better::Neither, _) => "",
    }
}

fn set_name(set: &str) -> &'static str {
    if set == "retain" {
        "D_R"
    } else {
        "D_F"
    }
}

/// `table.md`: every table, with how to read it and the protocol of each column; `notes` (rows
/// the grid could not have, and why) under the tables; with `ci` every value carries its 95 %
/// bootstrap interval.
pub fn markdown(tables: &[Table], records: &[CellRecord], notes: &[String], ci: bool) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "D_R = retain set, D_F = forget set. Arrows give the better direction for an unlearned model: on D_R it should stay as good as the original (low FID, high IS, high similarity), on D_F it should get worse (high FID, low IS, low similarity, membership-audit AUC toward 0.5). Headers name what computed each column: FID / IS / CLIP with Inception and CLIP; \"(domain)\" with the domain extractor, whose similarity column is the cosine of its features. MIA AUC: the ROC AUC of a loss-threshold membership attack on training vs held-out images of the set's classes (0.5 = no trace of membership; D_R is the control). Values are mean ± sample std over seeds (no ± with one seed){}; Original and Retrain (oracle: pre-trained without the forget classes) are references and are never bold. docs/metrics.md says what the intervals mean.\n",
        if ci {
            ", then the 95% bootstrap interval over images [low, high] (averaged over seeds)"
        } else {
            " (`report --ci` adds the 95% bootstrap intervals)"
        }
    );
    for t in tables {
        let _ = writeln!(s, "## {}\n", t.title());
        let mut header = String::from("| Method |");
        let mut rule = String::from("|---|");
        for c in &t.columns {
            let name = format!(
                "{} {} {}",
                set_name(c.set),
                column_name(c.metric, t.protocol_of(c)),
                arrow(c, true)
            );
            let _ = write!(header, " {} |", name.trim_end());
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        let best = t.best();
        for (i, r) in t.rows.iter().enumerate() {
            let _ = write!(s, "| {} |", r.label);
            for (c, v) in r.values.iter().enumerate() {
                let cell = match v {
                    Some(v) => {
                        let txt = fmt_value(t.columns[c].metric, v, " ± ", ci);
                        if best[c] == Some(i) {
                            format!("**{txt}**")
                        } else {
                            txt
                        }
                    }
                    None => "–".into(),
                };
                let _ = write!(s, " {cell} |");
            }
            s.push('\n');
        }
        let seeds: BTreeSet<usize> = t
            .rows
            .iter()
            .flat_map(|r| r.values.iter().flatten().map(|v| v.seeds))
            .collect();
        let _ = writeln!(
            s,
            "\nSeeds per row: {}. {BOLD_RULE}",
            seeds
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        oracle_markdown(&mut s, t, ci);
        let mut seen = BTreeSet::new();
        for (c, proto, n) in &t.protocols {
            if seen.insert((c.metric, proto.clone(), *n, c.set)) {
                let _ = writeln!(
                    s,
                    "- {} {}: N = {n}; {proto}",
                    set_name(c.set),
                    column_name(c.metric, Some(proto))
                );
            }
        }
        s.push('\n');
    }
    for n in notes {
        let _ = writeln!(s, "{n}\n");
    }
    // Values that could not be computed are n/a in the tables; say why, row by row.
    let na: Vec<String> = records
        .iter()
        .flat_map(|r| &r.rows)
        .filter(|row| !row.value.is_finite())
        .map(|row| {
            format!(
                "{} ({}, {}, seed {}) {} {}: {}",
                row.label,
                row.model,
                row.mask,
                row.seed,
                set_name(&row.set),
                row.metric,
                row.protocol
            )
        })
        .collect();
    if !na.is_empty() {
        let _ = writeln!(s, "n/a — not computed:\n");
        for l in na {
            let _ = writeln!(s, "- {l}");
        }
        s.push('\n');
    }
    if let Some(r) = records.first() {
        let shas: BTreeSet<&str> = records
            .iter()
            .map(|r| r.provenance.original_weights_sha256.as_str())
            .collect();
        let _ = writeln!(
            s,
            "Produced by {} (protocol v{}); original weights sha256: {}.",
            r.provenance.tool,
            r.provenance.protocol_version,
            shas.into_iter()
                .map(|x| &x[..x.len().min(16)])
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    s
}

/// The distance of every method to the retrain oracle, under its table: the difference of each
/// column (method − oracle; 0 = the oracle's value) and the FID between the method's outputs and
/// the oracle's outputs on the same inputs; then which method is closest.
fn oracle_markdown(s: &mut String, t: &Table, ci: bool) {
    if t.oracle.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\nDistance to the retrain oracle (the model pre-trained without the forget classes): FID to oracle = FID between this row's outputs and the oracle's on the same inputs (0 = the same outputs); Δ = this row − the oracle's value.\n"
    );
    let mut header = String::from("| Method | D_R FID to oracle | D_F FID to oracle |");
    let mut rule = String::from("|---|---:|---:|");
    for c in &t.columns {
        let _ = write!(
            header,
            " Δ {} {} |",
            set_name(c.set),
            column_name(c.metric, t.protocol_of(c))
        );
        rule.push_str("---:|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for r in &t.oracle {
        let _ = write!(s, "| {} |", r.label);
        for v in &r.fid_to_oracle {
            let cell = v
                .as_ref()
                .map(|v| fmt_value(MetricId::FidOracle.as_str(), v, " ± ", ci))
                .unwrap_or_else(|| "–".into());
            let _ = write!(s, " {cell} |");
        }
        for (c, d) in t.columns.iter().zip(&r.delta) {
            let cell = d
                .map(|d| {
                    format!(
                        "{}{}",
                        if d >= 0.0 { "+" } else { "" },
                        fmt_num(c.metric, d)
                    )
                })
                .unwrap_or_else(|| "–".into());
            let _ = write!(s, " {cell} |");
        }
        s.push('\n');
    }
    for (k, set) in ["D_R", "D_F"].iter().enumerate() {
        let mut ranked: Vec<(&str, f64)> = t
            .oracle
            .iter()
            .filter(|r| !super::table::is_reference(&r.method))
            .filter_map(|r| {
                r.fid_to_oracle[k]
                    .as_ref()
                    .map(|v| (r.label.as_str(), v.mean))
            })
            .collect();
        ranked.sort_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((label, v)) = ranked.first() {
            let _ = writeln!(
                s,
                "{}Closest to the oracle's outputs on {set}: {label} (FID to oracle {}).",
                if k == 0 { "\n" } else { "" },
                fmt_num(MetricId::FidOracle.as_str(), *v)
            );
        }
    }
}

pub(crate) fn tex_escape(s: &str) -> String {
    let mut out = String::new();
    for ch in s.chars() {
        match ch {
            '&' | '%' | '$' | '#' | '{' | '}' => {
                out.push('\\');
                out.push(ch);
            }
            '_' => out.push_str("\\_"),
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '\\' => out.push_str("\\textbackslash{}"),
            'α' => out.push_str("$\\alpha$"),
            _ => out.push(ch),
        }
    }
    out
}

/// `table.tex`: one booktabs table per group, ready for `\input{}` (needs `\usepackage{booktabs}`).
pub fn latex(tables: &[Table], ci: bool) -> String {
    let mut s = String::from("% Generated by i2i-unlearn report; needs \\usepackage{booktabs}.\n");
    for t in tables {
        let n = t.columns.len();
        let _ = writeln!(
            s,
            "\\begin{{table}}[t]\n\\centering\n\\caption{{{} {}}}",
            tex_escape(&t.title()),
            tex_escape(BOLD_RULE)
        );
        let _ = writeln!(s, "\\begin{{tabular}}{{l{}}}\n\\toprule", "c".repeat(n));
        // Group headers over consecutive columns of the same set.
        let mut spans: Vec<(&str, usize, usize)> = vec![];
        for (i, c) in t.columns.iter().enumerate() {
            match spans.last_mut() {
                Some((set, _, end)) if *set == c.set => *end = i,
                _ => spans.push((c.set, i, i)),
            }
        }
        let _ = write!(s, " ");
        for (set, a, b) in &spans {
            let _ = write!(
                s,
                "& \\multicolumn{{{}}}{{c}}{{${}$}} ",
                b - a + 1,
                if *set == "retain" { "D_R" } else { "D_F" }
            );
        }
        let _ = writeln!(s, "\\\\");
        for (_, a, b) in &spans {
            let _ = write!(s, "\\cmidrule(lr){{{}-{}}}", a + 2, b + 2);
        }
        let _ = write!(s, "\nMethod");
        for c in &t.columns {
            let _ = write!(
                s,
                " & {} {}",
                column_name(c.metric, t.protocol_of(c)),
                arrow(c, false)
            );
        }
        let _ = writeln!(s, " \\\\\n\\midrule");
        let best = t.best();
        for (i, r) in t.rows.iter().enumerate() {
            let label = tex_escape(&r.label).replace("D\\_R", "$D_R$");
            let _ = write!(s, "{label}");
            for (c, v) in r.values.iter().enumerate() {
                let cell = match v {
                    Some(v) => {
                        let txt = fmt_value(t.columns[c].metric, v, " \\pm ", ci);
                        if best[c] == Some(i) {
                            format!("$\\mathbf{{{txt}}}$")
                        } else {
                            format!("${txt}$")
                        }
                    }
                    None => "--".into(),
                };
                let _ = write!(s, " & {cell}");
            }
            let _ = writeln!(s, " \\\\");
            // A rule under the reference rows (Original, Retrain).
            let next_is_method = t
                .rows
                .get(i + 1)
                .is_some_and(|n| !super::table::is_reference(&n.method));
            if super::table::is_reference(&r.method) && next_is_method {
                let _ = writeln!(s, "\\midrule");
            }
        }
        let _ = writeln!(s, "\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n");
    }
    s
}
