//! The decoder probe (`map_probe:`), the inference-only part of the Palette question: before any
//! unlearning, the original generates the first evaluation images of D_F and D_R with the encoder
//! maps from index `keep` on replaced by those of the pure-noise input Ours trains the forget
//! images toward (`keep` = 1: all but map 0; 2: all but maps 0–1; 0: every map), and plainly.
//! If the hole error with only map 0 real stays near the plain one, the decoder reads the image
//! through map 0 and Ours' encoder target cannot remove it; if it rises to the all-replaced
//! error, the deep maps carry it and an Ours that closes their gap should move the outputs.
//! Written to `map-probe-<dataset>-<model>.json`.

use crate::config::Experiment;
use crate::data::ImageSet;
use crate::error::user;
use crate::masks::hole::hole_errors;
use crate::models::I2IModel;
use anyhow::Result;
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct ProbeRow {
    /// `forget` or `retain`.
    pub set: String,
    /// Maps taken from the real input (the rest from the pure-noise input); `None`: all (the
    /// plain generation).
    pub real_maps: Option<usize>,
    pub hole_mse: f64,
    /// The hole MSE of the trivial fill (each image's mean known colour), for scale.
    pub trivial_mse: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ProbeReport {
    pub dataset: String,
    pub model: String,
    pub weights_sha256: String,
    pub mask: String,
    pub generation: String,
    pub pure_noise_input: String,
    pub rows: Vec<ProbeRow>,
}

fn label(k: Option<usize>) -> String {
    match k {
        None => "every map real".into(),
        Some(0) => "no map real".into(),
        Some(1) => "only map 0 real".into(),
        Some(k) => format!("maps 0–{} real", k - 1),
    }
}

/// Probe the original of (dataset `di`, model `mi`) when the experiment asks for it.
pub fn probe_original(
    exp: &Experiment,
    (di, mi): (usize, usize),
    (model, sha): (&dyn I2IModel, &str),
    splits: &crate::data::split::Splits,
    opts: &super::RunOptions,
) -> Result<()> {
    let Some(spec) = &exp.map_probe else {
        return Ok(());
    };
    let (d, m) = (&exp.datasets[di], &exp.models[mi]);
    let mask = exp.masks[0];
    let mut rows = vec![];
    for (set, all) in [
        ("forget", &splits.forget_eval),
        ("retain", &splits.retain_eval),
    ] {
        let s: ImageSet = all.slice(0, spec.images.min(all.len()))?;
        let bm = super::gate::set_mask(model, &s, mask)?;
        let hole = bm.pixel_mask(model.image_size(), s.pixels.device())?;
        let rngs = || -> Vec<_> {
            s.ids
                .iter()
                .map(|&id| crate::util::rng("map-probe", id))
                .collect()
        };
        for k in [None, Some(2), Some(1), Some(0)] {
            let out = match k {
                None => model.generate(&s.pixels, &bm, &mut rngs(), &exp.generate, &mut |_, _| {})?,
                Some(k) => model
                    .generate_noise_maps(&s.pixels, &bm, &mut rngs(), &exp.generate, k)
                    .ok_or_else(|| {
                        user(format!(
                            "map_probe: the `{}` family's decoder reads no separate encoder maps (the probe is for Palette)",
                            m.family.as_str()
                        ))
                    })??,
            };
            let (hole_mse, trivial_mse) = hole_errors(&s.pixels, &out, &hole)?;
            opts.progress.note(&format!(
                "map probe of `{}` on {} {set} images: hole MSE {hole_mse:.5} with {} (trivial fill {trivial_mse:.5})",
                m.name,
                s.len(),
                label(k)
            ));
            rows.push(ProbeRow {
                set: set.into(),
                real_maps: k,
                hole_mse,
                trivial_mse,
            });
        }
    }
    let r = ProbeReport {
        dataset: d.name.clone(),
        model: m.name.clone(),
        weights_sha256: sha.into(),
        mask: mask.to_string(),
        generation: model.describe_generation(&exp.generate),
        pure_noise_input: "the condition image and noise level of each step, N(0, 1) in the noisy image's hole (the condition's hole noise of the same image)".into(),
        rows,
    };
    let dir = crate::store::RunDir::new(&super::out_dir_of(opts, exp));
    crate::util::write_atomic(
        &dir.map_probe(&d.name, &m.name),
        &serde_json::to_vec_pretty(&r)?,
    )
}
