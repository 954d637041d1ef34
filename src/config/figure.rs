//! `figure:` of the experiment file: the evaluation images of the qualitative figure.

use super::{at, Invalid};
use crate::locate::Seg::Key;
use serde::{Deserialize, Serialize};

/// `figure:`: positions in the class-ordered evaluation sets (0 = the first image of the first
/// class), at most 8 per set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FigureSpec {
    #[serde(default)]
    pub forget: Vec<usize>,
    #[serde(default)]
    pub retain: Vec<usize>,
}

impl FigureSpec {
    /// The positions of a set (`forget` / `retain`).
    pub fn of(&self, set: &str) -> &[usize] {
        match set {
            "forget" => &self.forget,
            "retain" => &self.retain,
            _ => &[],
        }
    }
    pub(crate) fn validate(&self) -> std::result::Result<(), Invalid> {
        for (k, v) in [("forget", &self.forget), ("retain", &self.retain)] {
            if v.len() > 8 {
                return Err(at(
                    &[Key("figure"), Key(k)],
                    format!("at most 8 images per set, got {}", v.len()),
                ));
            }
        }
        if self.forget.is_empty() && self.retain.is_empty() {
            return Err(at(
                &[Key("figure")],
                "name at least one image: `figure: {forget: [0, 10], retain: [0]}` (positions in the evaluation sets)",
            ));
        }
        Ok(())
    }
}
