//! Grid expansion: datasets × models × methods × α × masks × seeds → cells, each with a stable id
//! (a content hash of everything that determines its numbers), and `--shard k/n` selection.

use super::Experiment;
use crate::masks::MaskSpec;
use crate::unlearn::MethodSpec;
use serde::{Deserialize, Serialize};

/// Bump when a code change alters the numbers a cell produces, so old results are not reused.
pub const PROTOCOL_VERSION: u32 = 2;

/// One unlearning configuration to run and evaluate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// 16 hex digits of the SHA-256 of the cell's full resolved description.
    pub id: String,
    pub dataset: String,
    pub model: String,
    pub method: MethodSpec,
    /// The method's label in tables ("Ours (proxy D_R)").
    pub label: String,
    /// `None` for methods without a forget weight.
    pub alpha: Option<f64>,
    pub mask: MaskSpec,
    pub seed: u64,
    #[serde(skip)]
    pub dataset_idx: usize,
    #[serde(skip)]
    pub model_idx: usize,
}

/// All cells of an experiment, in a fixed order (dataset, model, table order, α, mask, seed).
pub fn expand(exp: &Experiment) -> Vec<Cell> {
    let mut methods = exp.methods.clone();
    methods.sort_by_key(|m| m.order());
    let mut cells = vec![];
    for (di, d) in exp.datasets.iter().enumerate() {
        for (mi, m) in exp.models.iter().enumerate() {
            for method in &methods {
                let alphas: Vec<Option<f64>> = if method.name.uses_alpha() {
                    exp.alphas.iter().map(|a| Some(*a)).collect()
                } else {
                    vec![None]
                };
                for alpha in alphas {
                    for mask in &exp.masks {
                        for &seed in &exp.seeds {
                            let desc = serde_json::json!({
                                "protocol_version": PROTOCOL_VERSION,
                                "dataset": d,
                                "model": m,
                                "unlearn": if method.name.trains() { serde_json::to_value(&exp.unlearn).unwrap() } else { serde_json::Value::Null },
                                "paper_compat": exp.paper_compat && method.name.trains(),
                                "method": method,
                                "alpha": alpha,
                                "mask": mask,
                                "seed": seed,
                                "metrics": exp.metrics,
                            });
                            let id = crate::util::content_hash(&desc)[..16].to_string();
                            cells.push(Cell {
                                id,
                                dataset: d.name.clone(),
                                model: m.name.clone(),
                                method: method.clone(),
                                label: method.label(),
                                alpha,
                                mask: *mask,
                                seed,
                                dataset_idx: di,
                                model_idx: mi,
                            });
                        }
                    }
                }
            }
        }
    }
    cells
}

/// `k/n`: the k-th of n shards (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub k: usize,
    pub n: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a shard: write K/N with 1 ≤ K ≤ N, e.g. 2/8");
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let k: usize = k.trim().parse().map_err(|_| bad())?;
        let n: usize = n.trim().parse().map_err(|_| bad())?;
        if n == 0 || k == 0 || k > n {
            return Err(bad());
        }
        Ok(Shard { k, n })
    }
}

impl Shard {
    /// Cells of this shard: every n-th cell of the fixed order, starting at k − 1.
    pub fn select(&self, cells: Vec<Cell>) -> Vec<Cell> {
        cells
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % self.n == self.k - 1)
            .map(|(_, c)| c)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Y: &str = r#"
name: t
seeds: [0, 1]
datasets:
  - name: tex
    source: {kind: embedded, classes: 6, size: 16}
    forget_classes: [0]
    retain_classes: [1, 2]
    proxy_classes: [3]
    train_per_class: 4
    eval_per_class: 4
models:
  - name: m
    family: mae
    config: {image_size: 16, patch_size: 4, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, decoder_hidden_size: 16, decoder_num_hidden_layers: 1, decoder_num_attention_heads: 2, decoder_intermediate_size: 32}
methods: [original, ours, {name: ours, retain: proxy}]
alphas: [0.1, 0.5]
masks: [center:2]
"#;

    #[test]
    fn grid_sizes_ids_and_shards() {
        let exp = crate::config::parse(Y, "t.yaml").unwrap();
        let cells = expand(&exp);
        // original: 1 α-less × 2 seeds; ours and proxy: 2 α × 2 seeds each.
        assert_eq!(cells.len(), 2 + 4 + 4);
        let ids: std::collections::HashSet<_> = cells.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), cells.len());
        assert_eq!(expand(&exp), cells, "expansion is deterministic");
        let mut union = vec![];
        for k in 1..=3 {
            union.extend(Shard { k, n: 3 }.select(cells.clone()));
        }
        union.sort_by(|a, b| a.id.cmp(&b.id));
        let mut all = cells.clone();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(union, all, "shards partition the grid");
        assert!("0/3".parse::<Shard>().is_err() && "4/3".parse::<Shard>().is_err());
        // Changing an unrelated cell's setting keeps ids; changing the unlearning steps changes
        // the trained cells' ids but not the original's.
        let exp2 = crate::config::parse(
            &Y.replace(
                "masks: [center:2]",
                "masks: [center:2]\nunlearn: {steps: 7}",
            ),
            "t.yaml",
        )
        .unwrap();
        let cells2 = expand(&exp2);
        assert_eq!(cells2[0].id, cells[0].id);
        assert_ne!(cells2[3].id, cells[3].id);
    }
}
