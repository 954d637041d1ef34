//! The original model's quality gate (`quality_gate:`): before any unlearning, on held-out
//! evaluation images under the grid's first mask, the hole must be filled clearly better than by
//! the trivial fill (each image's mean known colour), and the family's own figures must hold
//! (MAGE: tokenizer and token prediction). Written to `gate-<dataset>-<model>.json`; with
//! `enforce`, a miss stops the run before any unlearning.

use crate::config::{Experiment, GateSpec};
use crate::data::ImageSet;
use crate::error::user;
use crate::masks::MaskSpec;
use crate::models::{I2IModel, QualityFigure};
use anyhow::Result;
use candle_core::{DType, Tensor};
use serde::Serialize;

/// What the gate measured.
#[derive(Clone, Debug, Serialize)]
pub struct GateReport {
    pub dataset: String,
    pub model: String,
    /// SHA-256 of the original model's weights.
    pub weights_sha256: String,
    /// Images measured and their ids (held-out evaluation images, never trained on).
    pub images: usize,
    pub ids: Vec<u64>,
    pub mask: String,
    pub generation: String,
    pub figures: Vec<QualityFigure>,
    pub passed: bool,
}

/// The first `n / 2` images of each evaluation set (forget, retain).
pub fn gate_images(forget: &ImageSet, retain: &ImageSet, n: usize) -> Result<ImageSet> {
    let f = forget.slice(0, (n / 2).min(forget.len()))?;
    let r = retain.slice(0, (n - n / 2).min(retain.len()))?;
    ImageSet::concat(&[&f, &r])
}

/// Hole MSE of `out` and of the trivial fill, against `truth` (`[B, 3, S, S]`), with `hole`
/// `[B, 1, S, S]` (1 in the hole).
pub fn hole_errors(truth: &Tensor, out: &Tensor, hole: &Tensor) -> Result<(f64, f64)> {
    let truth = truth.to_dtype(DType::F32)?;
    let known = (1.0 - hole)?;
    let n_hole = (hole.sum_all()?.to_scalar::<f32>()? as f64 * 3.0).max(1.0);
    let err = |x: &Tensor| -> Result<f64> {
        let d = (x.to_dtype(DType::F32)? - &truth)?
            .sqr()?
            .broadcast_mul(hole)?;
        Ok(d.sum_all()?.to_scalar::<f32>()? as f64 / n_hole)
    };
    // Each image's mean known colour, per channel.
    let sums = truth.broadcast_mul(&known)?.sum_keepdim((2, 3))?;
    let counts = known.sum_keepdim((2, 3))?.clamp(1f32, f32::MAX)?;
    let fill = sums.broadcast_div(&counts)?.broadcast_as(truth.shape())?;
    Ok((err(out)?, err(&fill.contiguous()?)?))
}

/// `mask` drawn for each image of `set` (keyed by its id, seed 0), on `model`'s grid.
pub fn set_mask(
    model: &dyn I2IModel,
    set: &ImageSet,
    mask: MaskSpec,
) -> Result<crate::masks::BatchMask> {
    let keys = crate::masks::mask_keys(&set.ids, 0, None);
    mask.batch(model.mask_grid(), &keys)
        .map_err(anyhow::Error::msg)
}

/// Measure the gate of `model` on `set` under `mask`; generation as the experiment's cells.
pub fn measure(
    exp: &Experiment,
    spec: &GateSpec,
    model: &dyn I2IModel,
    set: &ImageSet,
    mask: MaskSpec,
) -> Result<(Vec<QualityFigure>, String)> {
    let size = model.image_size();
    let m = set_mask(model, set, mask)?;
    let mut rngs: Vec<_> = set
        .ids
        .iter()
        .map(|&id| crate::util::rng("gate", id))
        .collect();
    let out = model.generate(&set.pixels, &m, &mut rngs, &exp.generate, &mut |_, _| {})?;
    let hole = m.pixel_mask(size, set.pixels.device())?;
    let (mse, trivial) = hole_errors(&set.pixels, &out, &hole)?;
    let mut figures = vec![QualityFigure {
        name: "hole MSE / trivial-fill MSE".into(),
        value: mse / trivial.max(1e-12),
        limit: spec.max_hole_ratio,
        rule: format!(
            "MSE in the hole of the composited output {mse:.5} over that of filling the hole with each image's mean known colour {trivial:.5}"
        ),
    }];
    let mut rng = crate::util::rng("gate-family", 0);
    figures.extend(model.quality(&set.pixels, &m, &mut rng)?);
    Ok((figures, model.describe_generation(&exp.generate)))
}

/// The gate of the original model of (dataset `di`, model `mi`), when the experiment asks for
/// one: measured, written beside the data manifest, logged; an enforced miss is an error.
pub fn check_original(
    exp: &Experiment,
    (di, mi): (usize, usize),
    (model, sha): (&dyn I2IModel, &str),
    splits: &crate::data::split::Splits,
    opts: &super::RunOptions,
) -> Result<()> {
    let Some(spec) = &exp.quality_gate else {
        return Ok(());
    };
    let (d, m) = (&exp.datasets[di], &exp.models[mi]);
    let set = gate_images(&splits.forget_eval, &splits.retain_eval, spec.images)?;
    let mask = exp.masks[0];
    let (figures, generation) = measure(exp, spec, model, &set, mask)?;
    let r = GateReport {
        dataset: d.name.clone(),
        model: m.name.clone(),
        weights_sha256: sha.to_string(),
        images: set.len(),
        ids: set.ids.clone(),
        mask: mask.to_string(),
        generation,
        passed: figures.iter().all(|f| f.passed()),
        figures,
    };
    let dir = crate::store::RunDir::new(&super::out_dir_of(opts, exp));
    crate::util::write_atomic(&dir.gate(&d.name, &m.name), &serde_json::to_vec_pretty(&r)?)?;
    for l in lines(&r) {
        opts.progress.note(&l);
    }
    if !r.passed && spec.enforce {
        return Err(missed(&r));
    }
    Ok(())
}

/// One line per figure, for the log.
pub fn lines(r: &GateReport) -> Vec<String> {
    r.figures
        .iter()
        .map(|f| {
            format!(
                "quality gate of `{}` on {} held-out images: {} = {:.3} (limit {:.3}) {}",
                r.model,
                r.images,
                f.name,
                f.value,
                f.limit,
                if f.passed() { "passed" } else { "MISSED" }
            )
        })
        .collect()
}

/// The error of an enforced gate that was missed.
pub fn missed(r: &GateReport) -> anyhow::Error {
    let bad: Vec<String> = r
        .figures
        .iter()
        .filter(|f| !f.passed())
        .map(|f| format!("{} {:.3} > {:.3}", f.name, f.value, f.limit))
        .collect();
    user(format!(
        "the original model `{}` misses its quality gate on dataset `{}` ({}): it has little to forget; train it longer, or set `quality_gate: {{enforce: false}}` to go on anyway",
        r.model,
        r.dataset,
        bad.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn the_trivial_fill_is_the_mean_known_colour() {
        let dev = Device::Cpu;
        // One 2×2 image, channel 0 = [0, 1; 1, 1] (hole at the first pixel), others zero.
        let mut v = vec![0f32; 12];
        v[1] = 1.0;
        v[2] = 1.0;
        v[3] = 1.0;
        let truth = Tensor::from_vec(v, (1, 3, 2, 2), &dev).unwrap();
        let hole = Tensor::from_vec(vec![1f32, 0., 0., 0.], (1, 1, 2, 2), &dev).unwrap();
        // The trivial fill puts 1 in channel 0 where the truth is 0: error 1 over 3 values.
        let (mse, trivial) = hole_errors(&truth, &truth, &hole).unwrap();
        assert_eq!(mse, 0.0);
        assert!((trivial - 1.0 / 3.0).abs() < 1e-6, "{trivial}");
    }
}
