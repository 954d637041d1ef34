//! Tables in the paper's layout: rows Original, Max Loss, Noisy Label, Retain Label, Random
//! Encoder, Ours, Ours (proxy D_R); columns FID / IS / CLIP on D_R and on D_F with the better
//! direction as an arrow; mean ± std over seeds; the best unlearning method per column in bold.

use super::Agg;
use crate::store::CellRecord;
use crate::unlearn::MethodName;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// A column: a metric on a set, and which direction is better there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Col {
    pub set: &'static str,
    pub metric: &'static str,
    pub higher_is_better: bool,
}

/// The paper's columns: on D_R the unlearned model should stay good (low FID, high IS, high CLIP),
/// on D_F it should become bad (high FID, low IS, low CLIP).
pub const COLUMNS: [Col; 6] = [
    Col {
        set: "retain",
        metric: "fid",
        higher_is_better: false,
    },
    Col {
        set: "retain",
        metric: "is",
        higher_is_better: true,
    },
    Col {
        set: "retain",
        metric: "clip",
        higher_is_better: true,
    },
    Col {
        set: "forget",
        metric: "fid",
        higher_is_better: true,
    },
    Col {
        set: "forget",
        metric: "is",
        higher_is_better: false,
    },
    Col {
        set: "forget",
        metric: "clip",
        higher_is_better: false,
    },
];

fn metric_name(m: &str) -> &'static str {
    match m {
        "fid" => "FID",
        "is" => "IS",
        "clip" => "CLIP",
        _ => "?",
    }
}

/// A column's name as its protocol computed it: "CLIP" and "IS" only when CLIP and an
/// Inception network computed them; with the domain extractor the similarity column is a cosine
/// of its features and every metric says "(domain)".
fn column_name(metric: &str, protocol: Option<&str>) -> String {
    let domain = protocol.is_some_and(|p| p.contains("domain extractor"));
    match (metric, domain) {
        ("clip", true) => "cos (domain)".into(),
        ("clip", false) if protocol.is_some_and(|p| !p.contains("CLIP")) => "cos".into(),
        (m, true) => format!("{} (domain)", metric_name(m)),
        (m, false) => metric_name(m).into(),
    }
}

impl Table {
    /// The protocol string of column `c`, if the table has one.
    fn protocol_of(&self, c: &Col) -> Option<&str> {
        self.protocols
            .iter()
            .find(|(pc, _, _)| pc == c)
            .map(|(_, p, _)| p.as_str())
    }
}

/// One cell of a table.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub mean: f64,
    pub std: Option<f64>,
    pub seeds: usize,
    /// The noise the value is measured with: the Inception Score's split std (combined with the
    /// seed std when there are several seeds); for other metrics the seed std; `None` when
    /// nothing estimates it (one seed).
    pub noise: Option<f64>,
}

#[derive(Clone, Debug)]
pub struct TableRow {
    pub method: String,
    pub label: String,
    pub values: Vec<Option<Value>>,
}

#[derive(Clone, Debug)]
pub struct Table {
    pub dataset: String,
    pub model: String,
    pub mask: String,
    pub alpha: Option<f64>,
    pub columns: Vec<Col>,
    pub rows: Vec<TableRow>,
    /// Protocol and N per column.
    pub protocols: Vec<(Col, String, u64)>,
}

impl Table {
    pub fn title(&self) -> String {
        let a = self
            .alpha
            .map(|a| format!(" · α = {a}"))
            .unwrap_or_default();
        format!("{} · {} · {}{a}", self.dataset, self.model, self.mask)
    }

    /// Per column, the best non-original row — only where it beats the runner-up by more than
    /// the sum of the two rows' noise ([`Value::noise`]); `None` otherwise (a tie within the
    /// noise, or no noise estimate, as for FID with one seed). The rule [`BOLD_RULE`] says so
    /// under every table.
    pub fn best(&self) -> Vec<Option<usize>> {
        (0..self.columns.len())
            .map(|c| {
                let col = self.columns[c];
                let mut ranked: Vec<(usize, &Value)> = self
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.method != "original")
                    .filter_map(|(i, r)| r.values[c].as_ref().map(|v| (i, v)))
                    .filter(|(_, v)| v.mean.is_finite())
                    .collect();
                ranked.sort_by(|a, b| {
                    let o = a.1.mean.partial_cmp(&b.1.mean).unwrap();
                    if col.higher_is_better {
                        o.reverse()
                    } else {
                        o
                    }
                });
                let (best, v) = *ranked.first()?;
                match ranked.get(1) {
                    None => v.noise.map(|_| best),
                    Some((_, r)) => {
                        let margin = (v.mean - r.mean).abs();
                        match (v.noise, r.noise) {
                            (Some(a), Some(b)) if margin > a + b => Some(best),
                            _ => None,
                        }
                    }
                }
            })
            .collect()
    }
}

/// Sort key of a method key (`ours+proxy`): the paper's row order, variants after the plain method.
pub fn method_order(key: &str) -> (usize, String) {
    let (name, rest) = key.split_once('+').unwrap_or((key, ""));
    let i = MethodName::ALL
        .iter()
        .position(|m| m.as_str() == name)
        .unwrap_or(MethodName::ALL.len());
    (i, rest.to_string())
}

/// Group aggregates into tables: one per (dataset, model, mask, α); the Original row (no α)
/// appears in every α's table.
pub fn tables(aggs: &[Agg]) -> Vec<Table> {
    let mut groups: BTreeMap<(String, String, String), Vec<&Agg>> = BTreeMap::new();
    for a in aggs {
        groups
            .entry((a.dataset.clone(), a.model.clone(), a.mask.clone()))
            .or_default()
            .push(a);
    }
    let mut out = vec![];
    for ((dataset, model, mask), items) in groups {
        let alphas: BTreeSet<u64> = items
            .iter()
            .filter_map(|a| a.alpha.map(f64::to_bits))
            .collect();
        let alphas: Vec<Option<f64>> = if alphas.is_empty() {
            vec![None]
        } else {
            let mut v: Vec<f64> = alphas.into_iter().map(f64::from_bits).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v.into_iter().map(Some).collect()
        };
        let columns: Vec<Col> = COLUMNS
            .iter()
            .copied()
            .filter(|c| items.iter().any(|a| a.set == c.set && a.metric == c.metric))
            .collect();
        for alpha in alphas {
            let in_table: Vec<&&Agg> = items
                .iter()
                .filter(|a| a.alpha.is_none() || a.alpha == alpha)
                .collect();
            let mut methods: Vec<(String, String)> = in_table
                .iter()
                .map(|a| (a.method.clone(), a.label.clone()))
                .collect();
            methods.sort_by_key(|(m, _)| method_order(m));
            methods.dedup();
            let rows = methods
                .into_iter()
                .map(|(method, label)| {
                    let values = columns
                        .iter()
                        .map(|c| {
                            in_table
                                .iter()
                                .find(|a| {
                                    a.method == method && a.set == c.set && a.metric == c.metric
                                })
                                .map(|a| {
                                    // The IS split std, measured per cell, if stored.
                                    let split = (c.metric == "is")
                                        .then(|| {
                                            in_table.iter().find(|s| {
                                                s.method == method
                                                    && s.set == c.set
                                                    && s.metric == "is_split_std"
                                            })
                                        })
                                        .flatten()
                                        .map(|s| s.mean);
                                    let seed = a.std.filter(|_| a.seeds >= 2);
                                    let noise = match (split, seed) {
                                        (Some(x), Some(y)) => Some((x * x + y * y).sqrt()),
                                        (x, y) => x.or(y),
                                    };
                                    Value {
                                        mean: a.mean,
                                        std: a.std,
                                        seeds: a.seeds,
                                        noise,
                                    }
                                })
                        })
                        .collect();
                    TableRow {
                        method,
                        label,
                        values,
                    }
                })
                .collect();
            let protocols = columns
                .iter()
                .filter_map(|c| {
                    in_table
                        .iter()
                        .find(|a| a.set == c.set && a.metric == c.metric)
                        .map(|a| (*c, a.protocol.clone(), a.n))
                })
                .collect();
            out.push(Table {
                dataset: dataset.clone(),
                model: model.clone(),
                mask: mask.clone(),
                alpha,
                columns: columns.clone(),
                rows,
                protocols,
            });
        }
    }
    out
}

/// Digits for a metric: FID and IS to 3 significant-ish decimals, CLIP to 4.
fn fmt_num(metric: &str, v: f64) -> String {
    match metric {
        "clip" => format!("{v:.4}"),
        _ if v.abs() >= 100.0 => format!("{v:.1}"),
        _ if v.abs() >= 10.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

fn fmt_value(metric: &str, v: &Value, pm: &str) -> String {
    match v.std {
        Some(s) => format!("{}{pm}{}", fmt_num(metric, v.mean), fmt_num(metric, s)),
        None => fmt_num(metric, v.mean),
    }
}

fn arrow(c: &Col, md: bool) -> &'static str {
    match (c.higher_is_better, md) {
        (true, true) => "↑",
        (false, true) => "↓",
        (true, false) => "$\\uparrow$",
        (false, false) => "$\\downarrow$",
    }
}

fn set_name(set: &str) -> &'static str {
    if set == "retain" {
        "D_R"
    } else {
        "D_F"
    }
}

/// When a value is bold (said under every table).
pub const BOLD_RULE: &str = "Bold: the best unlearning method of a column, only where it beats the runner-up by more than the sum of their noise (the Inception Score's split std, combined with the seed std when there are several seeds; for FID and similarity the seed std); no bold where the difference is within that noise or nothing estimates it (FID and similarity with one seed).";

/// `table.md`: every table, with how to read it and the protocol of each column.
pub fn markdown(tables: &[Table], records: &[CellRecord]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Results\n");
    let _ = writeln!(
        s,
        "D_R = retain set, D_F = forget set. Arrows give the better direction for an unlearned model: on D_R it should stay as good as the original (low FID, high IS, high similarity), on D_F it should get worse (high FID, low IS, low similarity). Headers name what computed each column: FID / IS / CLIP with Inception and CLIP; \"(domain)\" with the domain extractor, whose similarity column is the cosine of its features. Values are mean ± sample std over seeds (no ± with one seed); the Original row is the reference and is never bold.\n"
    );
    for t in tables {
        let _ = writeln!(s, "## {}\n", t.title());
        let mut header = String::from("| Method |");
        let mut rule = String::from("|---|");
        for c in &t.columns {
            let _ = write!(
                header,
                " {} {} {} |",
                set_name(c.set),
                column_name(c.metric, t.protocol_of(c)),
                arrow(c, true)
            );
            rule.push_str("---:|");
        }
        let _ = writeln!(s, "{header}\n{rule}");
        let best = t.best();
        for (i, r) in t.rows.iter().enumerate() {
            let _ = write!(s, "| {} |", r.label);
            for (c, v) in r.values.iter().enumerate() {
                let cell = match v {
                    Some(v) => {
                        let txt = fmt_value(t.columns[c].metric, v, " ± ");
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

fn tex_escape(s: &str) -> String {
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
pub fn latex(tables: &[Table]) -> String {
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
                        let txt = fmt_value(t.columns[c].metric, v, " \\pm ");
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
            if r.method == "original" {
                let _ = writeln!(s, "\\midrule");
            }
        }
        let _ = writeln!(s, "\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agg(
        method: &str,
        label: &str,
        set: &str,
        metric: &str,
        mean: f64,
        alpha: Option<f64>,
    ) -> Agg {
        Agg {
            dataset: "d".into(),
            model: "m".into(),
            mask: "center:4".into(),
            alpha,
            method: method.into(),
            label: label.into(),
            set: set.into(),
            metric: metric.into(),
            mean,
            std: Some(0.1),
            seeds: 2,
            n: 50,
            protocol: "proto".into(),
        }
    }

    #[test]
    fn rows_in_paper_order_best_per_direction_and_original_in_every_alpha() {
        let mut aggs = vec![];
        for a in [0.1, 0.5] {
            aggs.push(agg(
                "ours+proxy",
                "Ours (proxy D_R)",
                "retain",
                "fid",
                1.1,
                Some(a),
            ));
            aggs.push(agg("ours", "Ours", "retain", "fid", 1.0, Some(a)));
            aggs.push(agg("max_loss", "Max Loss", "retain", "fid", 3.0, Some(a)));
            aggs.push(agg("ours", "Ours", "forget", "fid", 5.0, Some(a)));
            aggs.push(agg("max_loss", "Max Loss", "forget", "fid", 9.0, Some(a)));
        }
        aggs.push(agg("original", "Original", "retain", "fid", 0.9, None));
        aggs.push(agg("original", "Original", "forget", "fid", 1.0, None));
        let t = tables(&aggs);
        assert_eq!(t.len(), 2);
        let labels: Vec<&str> = t[0].rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["Original", "Max Loss", "Ours", "Ours (proxy D_R)"]);
        // Retain FID: lower is better and Original is excluded → Ours, but only 0.1 ahead of
        // Ours (proxy) with a seed std of 0.1 each: within the noise, no bold. Forget FID:
        // higher → Max Loss, 4.0 ahead: bold.
        assert_eq!(t[0].best(), vec![None, Some(1)]);
        let md = markdown(&t, &[]);
        assert!(md.contains("| D_R FID ↓ | D_F FID ↑ |"), "{md}");
        assert!(md.contains("| Ours | 1.000 ± 0.100 |"), "{md}");
        assert!(md.contains(BOLD_RULE), "{md}");
        let tex = latex(&t);
        assert!(
            tex.contains("\\toprule")
                && tex.contains("Ours (proxy $D_R$)")
                && tex.contains("$\\mathbf{9.000 \\pm 0.100}$"),
            "{tex}"
        );
    }

    /// One seed: nothing estimates the noise of FID, so no bold; the Inception Score's split std
    /// does, so a clear IS difference is bold and a small one is not.
    #[test]
    fn bold_needs_a_difference_beyond_the_noise() {
        let one = |method: &str, set: &str, metric: &str, mean: f64| Agg {
            std: None,
            seeds: 1,
            ..agg(method, method, set, metric, mean, Some(0.5))
        };
        let aggs = vec![
            one("ours", "retain", "fid", 1.0),
            one("max_loss", "retain", "fid", 9.0),
            one("ours", "retain", "is", 5.0),
            one("ours", "retain", "is_split_std", 0.1),
            one("max_loss", "retain", "is", 3.0),
            one("max_loss", "retain", "is_split_std", 0.2),
            one("ours", "forget", "is", 2.0),
            one("ours", "forget", "is_split_std", 0.3),
            one("max_loss", "forget", "is", 2.4),
            one("max_loss", "forget", "is_split_std", 0.3),
        ];
        let t = tables(&aggs);
        let cols: Vec<(&str, &str)> = t[0].columns.iter().map(|c| (c.set, c.metric)).collect();
        assert_eq!(
            cols,
            [("retain", "fid"), ("retain", "is"), ("forget", "is")]
        );
        let labels: Vec<&str> = t[0].rows.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(labels, ["max_loss", "ours"]);
        // FID: no noise estimate → no bold however large the gap; retain IS: 2.0 apart with
        // noise 0.3 → bold Ours; forget IS: 0.4 apart with noise 0.6 → no bold.
        assert_eq!(t[0].best(), vec![None, Some(1), None]);
    }

    #[test]
    fn headers_name_the_extractor_that_computed_the_column() {
        let domain = "FID generated-vs-truth, domain extractor (3-layer CNN) sha256:0";
        assert_eq!(column_name("fid", Some(domain)), "FID (domain)");
        assert_eq!(column_name("is", Some(domain)), "IS (domain)");
        assert_eq!(column_name("clip", Some(domain)), "cos (domain)");
        let clip = "CLIP openai/clip-vit-base-patch32 sha256:0 projected";
        assert_eq!(column_name("clip", Some(clip)), "CLIP");
        assert_eq!(
            column_name("fid", Some("pytorch-fid InceptionV3 pool3")),
            "FID"
        );
    }
}
