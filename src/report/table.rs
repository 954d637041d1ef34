//! Tables in the paper's layout: rows Original, Retrain (oracle), Max Loss, Noisy Label, Retain
//! Label, Random Encoder, Ours, Ours (proxy D_R); columns FID / IS / CLIP and the membership
//! audit's AUC on D_R and on D_F with the better direction as an arrow; mean ± std over seeds; the
//! best unlearning method per column in bold. With the oracle, a second table gives each
//! method's distance to it. Rendering is in `render.rs`.

use super::Agg;
use crate::names::{MethodName, MetricId};
use std::collections::{BTreeMap, BTreeSet};

/// Which direction of a column is better for an unlearned model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Better {
    Higher,
    Lower,
    /// Closer to this value (the audit's AUC: 0.5 = no trace of membership).
    Toward(f64),
    /// Neither: a control column, never bold.
    Neither,
}

/// A column: a metric on a set, and which direction is better there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Col {
    pub set: &'static str,
    pub metric: &'static str,
    pub better: Better,
}

const fn col(set: &'static str, metric: &'static str, better: Better) -> Col {
    Col {
        set,
        metric,
        better,
    }
}

/// The paper's columns: on D_R the unlearned model should stay good (low FID, high IS, high CLIP),
/// on D_F it should become bad (high FID, low IS, low CLIP). The audit's AUC: on D_F toward 0.5
/// (no membership signal left), on D_R a control.
pub const COLUMNS: [Col; 8] = [
    col("retain", MetricId::Fid.as_str(), Better::Lower),
    col("retain", MetricId::Is.as_str(), Better::Higher),
    col("retain", MetricId::Clip.as_str(), Better::Higher),
    col("retain", MetricId::MiaAuc.as_str(), Better::Neither),
    col("forget", MetricId::Fid.as_str(), Better::Higher),
    col("forget", MetricId::Is.as_str(), Better::Lower),
    col("forget", MetricId::Clip.as_str(), Better::Lower),
    col("forget", MetricId::MiaAuc.as_str(), Better::Toward(0.5)),
];

fn metric_name(m: &str) -> &'static str {
    MetricId::parse(m).map_or("?", |m| m.short())
}

/// A column's name as its protocol computed it: "CLIP" and "IS" only when CLIP and an
/// Inception network computed them; with the domain extractor the similarity column is a cosine
/// of its features and every metric says "(domain)".
pub(crate) fn column_name(metric: &str, protocol: Option<&str>) -> String {
    let domain = protocol.is_some_and(|p| p.contains("domain extractor"));
    match (MetricId::parse(metric), domain) {
        (Some(MetricId::MiaAuc), _) => metric_name(metric).into(),
        (Some(MetricId::Clip), true) => "cos (domain)".into(),
        (Some(MetricId::Clip), false) if protocol.is_some_and(|p| !p.contains("CLIP")) => {
            "cos".into()
        }
        (_, true) => format!("{} (domain)", metric_name(metric)),
        (_, false) => metric_name(metric).into(),
    }
}

impl Table {
    /// The protocol string of column `c`, if the table has one.
    pub(crate) fn protocol_of(&self, c: &Col) -> Option<&str> {
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
    /// The 95 % bootstrap interval over images (averaged over seeds), where stored.
    pub ci: Option<(f64, f64)>,
}

#[derive(Clone, Debug)]
pub struct TableRow {
    pub method: String,
    pub label: String,
    pub values: Vec<Option<Value>>,
}

/// A method's distance to the retrain oracle: per table column the difference (method − oracle),
/// and the FID between its outputs and the oracle's on the same inputs, on D_R and D_F.
#[derive(Clone, Debug)]
pub struct OracleRow {
    pub method: String,
    pub label: String,
    /// Per column of the table: method mean − oracle mean.
    pub delta: Vec<Option<f64>>,
    /// `fid_oracle` on (D_R, D_F).
    pub fid_to_oracle: [Option<Value>; 2],
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
    /// Distances to the oracle (empty without a Retrain row).
    pub oracle: Vec<OracleRow>,
}

/// Whether a method key is a reference row (the original model, the oracle): never bold.
pub fn is_reference(method: &str) -> bool {
    MethodName::from_key(method).is_some_and(|m| m.is_reference())
}

impl Table {
    pub fn title(&self) -> String {
        let a = self
            .alpha
            .map(|a| format!(" · α = {a}"))
            .unwrap_or_default();
        format!("{} · {} · {}{a}", self.dataset, self.model, self.mask)
    }

    /// Per column, the best unlearning method (reference rows aside) — only where it is ahead of
    /// the runner-up beyond the noise ([`BOLD_RULE`]); `None` otherwise.
    pub fn best(&self) -> Vec<Option<usize>> {
        (0..self.columns.len())
            .map(|c| {
                let col = self.columns[c];
                // Smaller key = better.
                let key = |v: &Value| match col.better {
                    Better::Higher => Some(-v.mean),
                    Better::Lower => Some(v.mean),
                    Better::Toward(x) => Some((v.mean - x).abs()),
                    Better::Neither => None,
                };
                let mut ranked: Vec<(usize, &Value, f64)> = self
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !is_reference(&r.method))
                    .filter_map(|(i, r)| r.values[c].as_ref().map(|v| (i, v)))
                    .filter(|(_, v)| v.mean.is_finite())
                    .filter_map(|(i, v)| key(v).map(|k| (i, v, k)))
                    .collect();
                ranked.sort_by(|a, b| a.2.partial_cmp(&b.2).unwrap());
                // Bold needs a runner-up: a lone method leads nothing.
                let (best, v, _) = *ranked.first()?;
                let (_, r, _) = ranked.get(1)?;
                beyond_noise(v, r).then_some(best)
            })
            .collect()
    }
}

/// Whether two values differ by more than what they are measured with: their bootstrap
/// intervals do not overlap (where both have one, and the seed spread does not say otherwise);
/// else the difference exceeds the sum of their noise.
pub fn beyond_noise(a: &Value, b: &Value) -> bool {
    let margin = (a.mean - b.mean).abs();
    let by_noise = match (a.noise, b.noise) {
        (Some(x), Some(y)) => Some(margin > x + y),
        _ => None,
    };
    let by_ci = match (a.ci, b.ci) {
        (Some((alo, ahi)), Some((blo, bhi))) => Some(ahi < blo || bhi < alo),
        _ => None,
    };
    match (by_ci, by_noise) {
        (Some(c), Some(n)) => c && n,
        (Some(c), None) => c,
        (None, Some(n)) => n,
        (None, None) => false,
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

fn value_of(a: &Agg, split: Option<f64>) -> Value {
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
        ci: a.ci,
    }
}

/// Group aggregates into tables: one per (dataset, model, mask, α); the reference rows (no α)
/// appear in every α's table.
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
            let find = |method: &str, set: &str, metric: &str| {
                in_table
                    .iter()
                    .find(|a| a.method == method && a.set == set && a.metric == metric)
                    .copied()
                    .copied()
            };
            let mut methods: Vec<(String, String)> = in_table
                .iter()
                .map(|a| (a.method.clone(), a.label.clone()))
                .collect();
            methods.sort_by_key(|(m, _)| method_order(m));
            methods.dedup();
            let rows: Vec<TableRow> = methods
                .iter()
                .map(|(method, label)| {
                    let values = columns
                        .iter()
                        .map(|c| {
                            find(method, c.set, c.metric).map(|a| {
                                // The IS split std, measured per cell, if stored.
                                let split = (c.metric == MetricId::Is.as_str())
                                    .then(|| find(method, c.set, MetricId::IsSplitStd.as_str()))
                                    .flatten()
                                    .map(|s| s.mean);
                                value_of(a, split)
                            })
                        })
                        .collect();
                    TableRow {
                        method: method.clone(),
                        label: label.clone(),
                        values,
                    }
                })
                .collect();
            let oracle = oracle_rows(&rows, |method, set| {
                find(method, set, MetricId::FidOracle.as_str()).map(|a| value_of(a, None))
            });
            let mut protocols: Vec<(Col, String, u64)> = columns
                .iter()
                .filter_map(|c| {
                    find_any(&in_table, c.set, c.metric).map(|a| (*c, a.protocol.clone(), a.n))
                })
                .collect();
            for set in ["retain", "forget"] {
                if let Some(a) = find_any(&in_table, set, MetricId::FidOracle.as_str()) {
                    let c = if set == "retain" {
                        FID_ORACLE[0]
                    } else {
                        FID_ORACLE[1]
                    };
                    protocols.push((c, a.protocol.clone(), a.n));
                }
            }
            out.push(Table {
                dataset: dataset.clone(),
                model: model.clone(),
                mask: mask.clone(),
                alpha,
                columns: columns.clone(),
                rows,
                protocols,
                oracle,
            });
        }
    }
    out
}

/// Each method's distance to the retrain oracle's row (none without one): the difference of
/// every column, and the FID of its outputs to the oracle's (`fid_to_oracle(method, set)`).
fn oracle_rows(
    rows: &[TableRow],
    fid_to_oracle: impl Fn(&str, &str) -> Option<Value>,
) -> Vec<OracleRow> {
    let Some(o) = rows
        .iter()
        .find(|r| r.method == MethodName::Retrain.as_str())
    else {
        return vec![];
    };
    rows.iter()
        .filter(|r| r.method != o.method)
        .map(|r| OracleRow {
            method: r.method.clone(),
            label: r.label.clone(),
            delta: r
                .values
                .iter()
                .zip(&o.values)
                .map(|(v, ov)| Some(v.as_ref()?.mean - ov.as_ref()?.mean))
                .collect(),
            fid_to_oracle: ["retain", "forget"].map(|set| fid_to_oracle(&r.method, set)),
        })
        .collect()
}

/// The oracle table's FID columns (for their protocols).
pub const FID_ORACLE: [Col; 2] = [
    col("retain", MetricId::FidOracle.as_str(), Better::Lower),
    col("forget", MetricId::FidOracle.as_str(), Better::Lower),
];

fn find_any<'a>(items: &[&&'a Agg], set: &str, metric: &str) -> Option<&'a Agg> {
    items
        .iter()
        .find(|a| a.set == set && a.metric == metric)
        .map(|a| **a)
}

/// When a value is bold (said under every table).
pub const BOLD_RULE: &str = "Bold: the best unlearning method of a column (Original and Retrain are references, never bold), only where it is ahead of the runner-up beyond the noise: their 95% bootstrap intervals over images do not overlap, and where several seeds or the Inception Score's splits estimate a noise, the difference also exceeds the sum of the two noises; no bold where nothing estimates the noise (one seed, no intervals) or where a column has a single unlearning method (no runner-up).";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::render::{latex, markdown};

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
            ci: None,
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
        let md = markdown(&t, &[], &[], false);
        assert!(md.contains("| D_R FID ↓ | D_F FID ↑ |"), "{md}");
        assert!(md.contains("| Ours | 1.000 ± 0.100 |"), "{md}");
        assert!(md.contains(BOLD_RULE), "{md}");
        let tex = latex(&t, false);
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
        // A lone unlearning method beside the Original, with intervals and a seed spread that
        // overlap the Original's: nothing to lead, no bold.
        let lone = |method: &str, mean: f64| Agg {
            ci: Some((mean - 1.0, mean + 1.0)),
            ..agg(method, method, "retain", "fid", mean, None)
        };
        let t = tables(&[lone("original", 10.0), lone("ours", 10.5)]);
        assert_eq!(t[0].rows.len(), 2);
        assert_eq!(t[0].best(), vec![None]);
        let t = tables(&[lone("original", 10.0), lone("ours", 30.0)]);
        assert_eq!(t[0].best(), vec![None], "a lone method is never bold");
    }

    #[test]
    fn a_value_that_could_not_be_computed_is_n_a() {
        let t = tables(&[
            agg("ours", "Ours", "forget", "mia_auc", f64::NAN, None),
            agg("max_loss", "Max Loss", "forget", "mia_auc", 0.6, None),
        ]);
        let md = markdown(&t, &[], &[], false);
        assert!(md.contains("n/a"), "{md}");
        assert_eq!(t[0].best(), vec![None], "n/a leads nothing");
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
