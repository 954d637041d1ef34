//! The names of the unlearning methods: the one list of the method registry (`unlearn::method`
//! builds each from its name, an exhaustive match the compiler checks against this list). A leaf
//! module, so that the report orders and labels its rows without importing `unlearn`.

use serde::{Deserialize, Serialize};

/// Generates [`MethodName`] from one list: YAML name, table label, whether the row is a reference
/// (never unlearned, never bold), whether `retain: proxy` applies (the retain term keeps the
/// original model). The list's order is the paper's table order.
macro_rules! method_names {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal, $label:literal,
       reference: $reference:literal, proxy: $proxy:literal, sweep: $sweep:ident;)+) => {
        /// Unlearning methods known to the registry.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
        )]
        pub enum MethodName {
            $($(#[doc = $doc])* #[serde(rename = $name)] $variant,)+
        }

        impl MethodName {
            /// Every method, in the order of the paper's table.
            pub const ALL: &'static [MethodName] = &[$(MethodName::$variant,)+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $(MethodName::$variant => $name,)+
                }
            }
            /// The row label in tables.
            pub fn display(self) -> &'static str {
                match self {
                    $(MethodName::$variant => $label,)+
                }
            }
            /// The reference rows of a table: the original model and the retrain oracle.
            pub fn is_reference(self) -> bool {
                match self {
                    $(MethodName::$variant => $reference,)+
                }
            }
            /// Whether `retain: proxy` applies: the retain term keeps the original model.
            pub fn takes_proxy(self) -> bool {
                match self {
                    $(MethodName::$variant => $proxy,)+
                }
            }
            /// The grid axis that sweeps the method's trade-off.
            pub fn sweep(self) -> Sweep {
                match self {
                    $(MethodName::$variant => Sweep::$sweep,)+
                }
            }
        }
    };
}

/// The grid axis along which a method's cells sweep its forget / retain trade-off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// Not swept (the reference rows).
    None,
    /// The forget term's weight α (`alphas:`).
    Alpha,
    /// The retain budget ε (`epsilons:`).
    Epsilon,
}

impl MethodName {
    /// Whether the method runs the unlearning trainer (the original model and the oracle are
    /// pre-trained, not unlearned).
    pub fn trains(self) -> bool {
        !self.is_reference()
    }
    pub fn uses_alpha(self) -> bool {
        self.sweep() == Sweep::Alpha
    }
    pub fn uses_epsilon(self) -> bool {
        self.sweep() == Sweep::Epsilon
    }
    /// The name of a method key (`ours+proxy` → `ours`), if it names a method.
    pub fn from_key(key: &str) -> Option<MethodName> {
        let name = key.split('+').next().unwrap_or(key);
        MethodName::ALL.iter().copied().find(|m| m.as_str() == name)
    }
}

// The registry's list, in the order of the paper's table.
method_names! {
    /// The untouched original model.
    Original = "original", "Original", reference: true, proxy: false, sweep: None;
    /// The oracle: the same pre-training without the forget classes (models pre-trained here).
    Retrain = "retrain", "Retrain (oracle)", reference: true, proxy: false, sweep: None;
    /// Gradient ascent on the forget set's training loss, descent on the retain set's (full model).
    MaxLoss = "max_loss", "Max Loss", reference: false, proxy: false, sweep: Alpha;
    /// Full model trained to output noise for forget images, the truth for retain images.
    NoisyLabel = "noisy_label", "Noisy Label", reference: false, proxy: false, sweep: Alpha;
    /// Full model: forget outputs pushed to the original model's outputs on retain images.
    RetainLabel = "retain_label", "Retain Label", reference: false, proxy: true, sweep: Alpha;
    /// Encoder: forget embeddings pushed to Gaussian features with the teacher's statistics.
    RandomEncoder = "random_encoder", "Random Encoder", reference: false, proxy: true, sweep: Alpha;
    /// The paper's method (encoder; retain embeddings kept, forget embeddings sent to noise's).
    Ours = "ours", "Ours", reference: false, proxy: true, sweep: Alpha;
    /// Ours' two terms as a constrained problem: forget as much as possible while the retain term
    /// stays within a budget ε (Feng et al., ICLR 2025).
    Controllable = "controllable", "Controllable", reference: false, proxy: true, sweep: Epsilon;
}
