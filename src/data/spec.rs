//! The dataset entry of an experiment file: a source and its forget / retain / proxy class split.

use super::SourceSpec;
use serde::{Deserialize, Serialize};

/// A class named by its index in the source's label order or by its identifier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ClassRef {
    Index(usize),
    Name(String),
}

impl std::fmt::Display for ClassRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClassRef::Index(i) => write!(f, "{i}"),
            ClassRef::Name(s) => write!(f, "{s}"),
        }
    }
}

/// A dataset and its forget / retain / proxy class split.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    pub name: String,
    pub source: SourceSpec,
    /// A source on this machine to use instead of `source` when it is present (e.g. a local copy
    /// of the hub dataset); otherwise `source` is used.
    #[serde(default)]
    pub local: Option<SourceSpec>,
    /// The paper's class split by name (`imagenet1k-paper`, `places365-paper`); explicit class
    /// lists below, when given, override the preset's.
    #[serde(default)]
    pub preset: Option<String>,
    /// Keep only the preset's classes the source has (for CPU-sized subsets of the datasets);
    /// how many were kept is reported.
    #[serde(default)]
    pub restrict_to_available: bool,
    /// Classes to forget (D_F).
    #[serde(default)]
    pub forget_classes: Vec<ClassRef>,
    /// Classes to keep (D_R).
    #[serde(default)]
    pub retain_classes: Vec<ClassRef>,
    /// Classes for "Ours (proxy D_R)": images that are neither forgotten nor retained.
    #[serde(default)]
    pub proxy_classes: Vec<ClassRef>,
    /// Training images per class used for unlearning.
    pub train_per_class: usize,
    /// Held-out images per class used for evaluation.
    pub eval_per_class: usize,
    /// Training images per class for pre-training the original model (all classes of the source);
    /// defaults to `train_per_class`.
    #[serde(default)]
    pub pretrain_per_class: Option<usize>,
    /// Seed of the per-class image sampling.
    #[serde(default)]
    pub sample_seed: u64,
    /// Fail when a class has fewer images than this after decoding (default: 1).
    #[serde(default)]
    pub min_per_class: Option<usize>,
    /// Images per forget / retain class for the membership audit, as members (training images
    /// of the original model) and as many non-members (held-out images, never the evaluation
    /// ones); default `min(eval_per_class, 50)`, 0 turns the audit off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_per_class: Option<usize>,
    /// For a source without a validation split (a train-only copy): hold `per_class` training
    /// images per class out (drawn with `seed`) as the evaluation split. A deviation from an
    /// official validation split, recorded in the data manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_from_train: Option<super::held_out::HeldOutSpec>,
}

impl DatasetSpec {
    /// Members (and non-members) per class of the membership audit; 0 when it is off.
    pub fn audit_count(&self) -> usize {
        self.audit_per_class
            .unwrap_or_else(|| self.eval_per_class.min(50))
    }

    /// `local` when it is present on this machine, else `source`.
    pub fn effective_source(&self) -> &SourceSpec {
        match &self.local {
            Some(l) if l.is_present() => l,
            _ => &self.source,
        }
    }
}

/// Find a class by index or identifier.
pub fn resolve_class(r: &ClassRef, classes: &[String]) -> Option<usize> {
    match r {
        ClassRef::Index(i) => (*i < classes.len()).then_some(*i),
        ClassRef::Name(n) => classes.iter().position(|c| c == n),
    }
}
