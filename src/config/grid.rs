//! Grid expansion: datasets × models × methods × α × masks × seeds → cells, each with a stable id
//! (a content hash of everything that determines its numbers), and `--shard k/n` selection.

use super::Experiment;
use crate::masks::MaskSpec;
use crate::unlearn::MethodSpec;
use serde::{Deserialize, Serialize};

/// Bump when a code change alters the numbers a cell produces, so old results are not reused.
pub const PROTOCOL_VERSION: u32 = 4;

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
    /// The retain budget of methods swept along `epsilons:` (`controllable`), else `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    pub mask: MaskSpec,
    pub seed: u64,
    /// 16 hex digits identifying the unlearned model this cell evaluates: cells that differ only
    /// in the evaluation mask share it (unless `unlearn.mask` is `task`), so a (dataset, model,
    /// method, α, seed) is unlearned once and evaluated under every mask.
    #[serde(default)]
    pub unlearn_key: String,
    /// For methods swept along `epsilons:`, the key the cells of every ε share (the boundary
    /// solutions of `controllable` are computed once for all of them); empty otherwise.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub boundary_key: String,
    #[serde(skip)]
    pub dataset_idx: usize,
    #[serde(skip)]
    pub model_idx: usize,
}

/// What the experiment file names only by path, identified by content: per dataset, the
/// fingerprint of a local image folder ([`crate::data::folder::fingerprint`]); per model, the
/// SHA-256 of its checkpoint files. `None` where the spec itself identifies the content (the
/// embedded textures, hub sources at a revision, models pre-trained here). Folded into the keys
/// of cells, unlearned models and cached pre-trainings, so that a file changed in place is
/// computed again rather than reported with the old numbers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fingerprints {
    pub data: Vec<Option<String>>,
    pub weights: Vec<Option<String>>,
}

impl Fingerprints {
    pub fn data(&self, di: usize) -> Option<&str> {
        self.data.get(di).and_then(|f| f.as_deref())
    }
    pub fn weights(&self, mi: usize) -> Option<&str> {
        self.weights.get(mi).and_then(|f| f.as_deref())
    }
}

/// All cells of an experiment, in a fixed order (dataset, model, table order, α, mask, seed),
/// keyed by the spec alone (what `check` shows; a run uses [`expand_with`]).
pub fn expand(exp: &Experiment) -> Vec<Cell> {
    expand_with(exp, &Fingerprints::default())
}

/// [`expand`] with the content fingerprints of local data and weights in every key.
pub fn expand_with(exp: &Experiment, fp: &Fingerprints) -> Vec<Cell> {
    let mut methods = exp.methods.clone();
    methods.sort_by_key(|m| m.order());
    let mut cells = vec![];
    for (di, d) in exp.datasets.iter().enumerate() {
        for (mi, m) in exp.models.iter().enumerate() {
            for method in &methods {
                if method.name == crate::unlearn::MethodName::Retrain && !oracle_possible(m) {
                    continue;
                }
                // The method's sweep: α for most, the retain budget ε for `controllable`.
                let sweep: Vec<(Option<f64>, Option<f64>)> = if method.name.uses_alpha() {
                    exp.alphas.iter().map(|a| (Some(*a), None)).collect()
                } else if method.name.uses_epsilon() {
                    exp.epsilons.iter().map(|e| (None, Some(*e))).collect()
                } else {
                    vec![(None, None)]
                };
                for (alpha, epsilon) in sweep {
                    for mask in &exp.masks {
                        for &seed in &exp.seeds {
                            cells.push(cell(
                                (exp, fp),
                                (di, d),
                                (mi, m),
                                method,
                                (alpha, epsilon),
                                mask,
                                seed,
                            ));
                        }
                    }
                }
            }
        }
    }
    cells
}

/// One cell: its unlearned model's key (and, for ε sweeps, the key every ε shares), its id.
fn cell(
    (exp, fp): (&Experiment, &Fingerprints),
    (di, d): (usize, &crate::data::DatasetSpec),
    (mi, m): (usize, &crate::models::ModelSpec),
    method: &MethodSpec,
    (alpha, epsilon): (Option<f64>, Option<f64>),
    mask: &MaskSpec,
    seed: u64,
) -> Cell {
    let trains = method.name.trains();
    let mut unlearn = serde_json::json!({
        "protocol_version": PROTOCOL_VERSION,
        "dataset": d,
        "model": m,
        "unlearn": if trains { serde_json::to_value(&exp.unlearn).unwrap() } else { serde_json::Value::Null },
        "paper_compat": exp.paper_compat && trains,
        "method": method,
        "alpha": alpha,
        "seed": if trains { Some(seed) } else { None },
        "mask": if trains && exp.unlearn.depends_on_eval_mask() { Some(mask) } else { None },
    });
    // Content, where the spec names it by path only (absent otherwise, so those keys stay).
    if let Some(f) = fp.data(di) {
        unlearn["data_content"] = serde_json::json!(f);
    }
    if let Some(f) = fp.weights(mi) {
        unlearn["weights_content"] = serde_json::json!(f);
    }
    // Keys of the methods without ε are as they were before ε existed.
    let boundary_key = match epsilon {
        None => String::new(),
        Some(e) => {
            unlearn["controllable"] = serde_json::to_value(&exp.controllable).unwrap();
            let shared = crate::util::content_hash(&unlearn)[..16].to_string();
            unlearn["epsilon"] = serde_json::json!(e);
            shared
        }
    };
    let unlearn_key = crate::util::content_hash(&unlearn)[..16].to_string();
    let desc = serde_json::json!({
        "unlearned": unlearn_key,
        "mask": mask,
        "seed": seed,
        "generate": exp.generate,
        "metrics": exp.metrics,
    });
    let id = crate::util::content_hash(&desc)[..16].to_string();
    let mut label = method.label();
    if let Some(e) = epsilon {
        label.push_str(&format!(" (ε = {e})"));
    }
    Cell {
        id,
        dataset: d.name.clone(),
        model: m.name.clone(),
        method: method.clone(),
        label,
        alpha,
        epsilon,
        mask: *mask,
        seed,
        unlearn_key,
        boundary_key,
        dataset_idx: di,
        model_idx: mi,
    }
}

impl Cell {
    /// The method's key in stored rows: the method's (`ours+proxy`), with the retain budget of an
    /// ε sweep (`controllable+eps0.25`), so that every ε is a row of its own.
    pub fn method_key(&self) -> String {
        match self.epsilon {
            Some(e) => format!("{}+eps{e}", self.method.key()),
            None => self.method.key(),
        }
    }
}

/// Whether a model can have the retrain oracle: only when this harness pre-trains it (the
/// oracle repeats that pre-training without the forget classes).
pub fn oracle_possible(m: &crate::models::ModelSpec) -> bool {
    m.weights.is_none()
}

/// Why rows the experiment asks for are absent from its grid (for the report).
pub fn absent_rows(exp: &Experiment) -> Vec<String> {
    let mut notes = vec![];
    if exp
        .methods
        .iter()
        .any(|m| m.name == crate::unlearn::MethodName::Retrain)
    {
        for m in exp.models.iter().filter(|m| !oracle_possible(m)) {
            notes.push(format!(
                "No Retrain (oracle) row for model `{}`: it is loaded from a checkpoint, and the oracle is this harness's own pre-training repeated without the forget classes — retraining the checkpoint's model is out of reach here.",
                m.name
            ));
        }
    }
    notes
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
    /// Cells of this shard: the unlearned models, in the order the grid first names them, are
    /// dealt round-robin (every n-th, starting at k − 1), and a shard takes all cells of its
    /// models — so each model is unlearned by one shard only.
    pub fn select(&self, cells: Vec<Cell>) -> Vec<Cell> {
        let mut order: Vec<String> = vec![];
        for c in &cells {
            if !order.contains(&c.unlearn_key) {
                order.push(c.unlearn_key.clone());
            }
        }
        let mine: std::collections::HashSet<&String> = order
            .iter()
            .enumerate()
            .filter(|(i, _)| i % self.n == self.k - 1)
            .map(|(_, k)| k)
            .collect();
        cells
            .iter()
            .filter(|c| mine.contains(&c.unlearn_key))
            .cloned()
            .collect()
    }
}

/// How many unlearned models a set of cells needs (the original model's cells need none).
pub fn unlearnings(cells: &[Cell]) -> usize {
    let keys: std::collections::HashSet<&String> = cells
        .iter()
        .filter(|c| c.method.name.trains())
        .map(|c| &c.unlearn_key)
        .collect();
    keys.len()
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
metrics: {is_splits: 2}
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

    #[test]
    fn masks_share_an_unlearning_unless_the_task_mask_is_used() {
        let two = Y.replace("masks: [center:2]", "masks: [center:2, outpaint:8]");
        let exp = crate::config::parse(&two, "t.yaml").unwrap();
        let cells = expand(&exp);
        assert_eq!(cells.len(), 2 * (2 + 4 + 4));
        // ours and proxy: 2 α × 2 seeds each.
        assert_eq!(unlearnings(&cells), 8);
        let by_mask = |m: &str| -> Vec<String> {
            cells
                .iter()
                .filter(|c| c.mask.to_string() == m && c.method.name.trains())
                .map(|c| c.unlearn_key.clone())
                .collect()
        };
        assert_eq!(by_mask("center:2"), by_mask("outpaint:8"));
        // The cells differ, their unlearned model does not.
        let ids: std::collections::HashSet<_> = cells.iter().map(|c| c.id.clone()).collect();
        assert_eq!(ids.len(), cells.len());
        // A longer mask list keeps the keys (stored unlearnings stay valid).
        let one = expand(&crate::config::parse(Y, "t.yaml").unwrap());
        assert_eq!(
            one.iter().map(|c| &c.unlearn_key).collect::<Vec<_>>(),
            cells
                .iter()
                .filter(|c| c.mask.to_string() == "center:2")
                .map(|c| &c.unlearn_key)
                .collect::<Vec<_>>()
        );
        let task = crate::config::parse(
            &two.replace(
                "masks: [center:2, outpaint:8]",
                "masks: [center:2, outpaint:8]\nunlearn: {mask: task}",
            ),
            "t.yaml",
        )
        .unwrap();
        assert_eq!(unlearnings(&expand(&task)), 16);
        // Shards never split an unlearned model.
        for k in 1..=3 {
            let part = Shard { k, n: 3 }.select(cells.clone());
            for c in &part {
                let all_of_key = cells
                    .iter()
                    .filter(|x| x.unlearn_key == c.unlearn_key)
                    .count();
                let mine = part
                    .iter()
                    .filter(|x| x.unlearn_key == c.unlearn_key)
                    .count();
                assert_eq!(all_of_key, mine);
            }
        }
    }
}
