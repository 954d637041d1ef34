//! The ids of the metrics a cell stores (the `metric` column of `runs.csv`).

/// Every metric a row can carry: id, column name in tables, axis title in charts.
macro_rules! metric_ids {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal, $short:literal, $title:literal;)+) => {
        /// A metric's id, as stored in each row.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum MetricId {
            $($(#[doc = $doc])* $variant,)+
        }

        impl MetricId {
            pub const ALL: &'static [MetricId] = &[$(MetricId::$variant,)+];
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(MetricId::$variant => $name,)+
                }
            }
            /// The column name in tables.
            pub fn short(self) -> &'static str {
                match self {
                    $(MetricId::$variant => $short,)+
                }
            }
            /// The axis title in charts.
            pub fn title(self) -> &'static str {
                match self {
                    $(MetricId::$variant => $title,)+
                }
            }
        }
    };
}

metric_ids! {
    /// Fréchet distance between the generated images and their ground truth.
    Fid = "fid", "FID", "FID";
    /// Inception Score of the generated images (mean over splits).
    Is = "is", "IS", "Inception Score";
    /// The Inception Score's standard deviation over its splits.
    IsSplitStd = "is_split_std", "IS split std", "IS split std";
    /// Mean cosine similarity between each output's embedding and its ground truth's.
    Clip = "clip", "CLIP", "CLIP similarity";
    /// Kernel Inception Distance (mean over subsets).
    Kid = "kid", "KID", "KID";
    /// KID's standard deviation over its subsets.
    KidSubsetStd = "kid_subset_std", "KID subset std", "KID subset std";
    /// The membership audit's ROC AUC.
    MiaAuc = "mia_auc", "MIA AUC", "membership-audit AUC";
    /// Fréchet distance between a model's outputs and the retrain oracle's on the same inputs.
    FidOracle = "fid_oracle", "FID to oracle", "FID to the retrain oracle";
}

impl MetricId {
    /// The id a stored row names, if it is one of these.
    pub fn parse(s: &str) -> Option<MetricId> {
        MetricId::ALL.iter().copied().find(|m| m.as_str() == s)
    }
}

impl PartialEq<MetricId> for String {
    fn eq(&self, other: &MetricId) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<MetricId> for &str {
    fn eq(&self, other: &MetricId) -> bool {
        *self == other.as_str()
    }
}

impl std::fmt::Display for MetricId {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
