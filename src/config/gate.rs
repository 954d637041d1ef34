//! `quality_gate:` of the experiment file: the checks an original model must pass on held-out
//! images before any unlearning (an original that cannot inpaint has nothing to forget).

use super::{at, Invalid};
use crate::locate::Seg::Key;
use serde::{Deserialize, Serialize};

fn default_images() -> usize {
    64
}
fn default_hole_ratio() -> f64 {
    0.5
}
fn yes() -> bool {
    true
}

/// `quality_gate: {images, max_hole_ratio, enforce}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GateSpec {
    /// Held-out evaluation images measured (half forget, half retain, the first of each set).
    #[serde(default = "default_images")]
    pub images: usize,
    /// The hole's MSE must be at most this share of the MSE of filling the hole with each image's
    /// mean known colour (the trivial fill).
    #[serde(default = "default_hole_ratio")]
    pub max_hole_ratio: f64,
    /// Stop before any unlearning when a figure misses its limit (else: a warning).
    #[serde(default = "yes")]
    pub enforce: bool,
    /// Generations per image for the sampling spread (a sampler's one-sample hole MSE is its
    /// posterior mean's plus the samples' spread): with 2 or more, the record also gives the
    /// hole MSE of the samples' mean and the spread. 1 = the gate's one generation only.
    #[serde(default = "one")]
    pub samples: usize,
}

fn one() -> usize {
    1
}

impl GateSpec {
    pub(crate) fn validate(&self) -> std::result::Result<(), Invalid> {
        if self.images < 2 {
            return Err(at(
                &[Key("quality_gate"), Key("images")],
                format!("at least 2 images, got {}", self.images),
            ));
        }
        if self.samples == 0 {
            return Err(at(
                &[Key("quality_gate"), Key("samples")],
                "at least 1 generation per image, got 0".to_string(),
            ));
        }
        if !(self.max_hole_ratio > 0.0 && self.max_hole_ratio.is_finite()) {
            return Err(at(
                &[Key("quality_gate"), Key("max_hole_ratio")],
                format!("a positive share, got {}", self.max_hole_ratio),
            ));
        }
        Ok(())
    }
}

fn default_probe_images() -> usize {
    16
}

/// `map_probe: {images}`: the decoder probe of the original (Palette): generation with the
/// encoder's maps from the pure-noise input everywhere but map 0, everywhere but maps 0–1, and
/// everywhere, against the plain generation — the hole error of `images` forget and as many
/// retain evaluation images each.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MapProbeSpec {
    #[serde(default = "default_probe_images")]
    pub images: usize,
}
