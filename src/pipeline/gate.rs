//! The original model's quality gate (`quality_gate:`): before any unlearning, on held-out
//! evaluation images under the grid's first mask, the hole must be filled clearly better than by
//! the trivial fill (each image's mean known colour), and the family's own figures must hold
//! (MAGE: tokenizer and token prediction). Written to `gate-<dataset>-<model>.json`; with
//! `enforce`, a miss stops the run before any unlearning.

use crate::config::{Experiment, GateSpec};
use crate::data::ImageSet;
use crate::error::user;
use crate::masks::hole::hole_errors;
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
    /// With `samples` ≥ 2: how much of the one-sample hole error is the samples' spread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spread: Option<SampleSpread>,
}

/// The hole error of K generations per image, split as `one_sample = of_mean + spread` (exact):
/// `of_mean` the MSE of the samples' mean, `spread` the mean squared distance of a sample from
/// it. The posterior mean's error is estimated as `of_mean − spread / (K − 1)` (the mean of K
/// samples keeps 1/K of their variance). All over the trivial fill's MSE.
#[derive(Clone, Debug, Serialize)]
pub struct SampleSpread {
    pub samples: usize,
    pub trivial_mse: f64,
    pub one_sample_ratio: f64,
    pub mean_of_samples_ratio: f64,
    pub spread_ratio: f64,
    pub posterior_mean_ratio: f64,
}

/// The first `n / 2` images of each evaluation set (forget, retain).
pub fn gate_images(forget: &ImageSet, retain: &ImageSet, n: usize) -> Result<ImageSet> {
    let f = forget.slice(0, (n / 2).min(forget.len()))?;
    let r = retain.slice(0, (n - n / 2).min(retain.len()))?;
    ImageSet::concat(&[&f, &r])
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
) -> Result<(Vec<QualityFigure>, String, Option<SampleSpread>)> {
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
    let spread = (spec.samples > 1)
        .then(|| spread(exp, spec.samples, model, set, (&m, &hole), &out))
        .transpose()?;
    let mut figures = vec![QualityFigure {
        name: "hole MSE / trivial-fill MSE".into(),
        value: mse / trivial.max(1e-12),
        limit: Some(spec.max_hole_ratio),
        rule: format!(
            "MSE in the hole of the composited output {mse:.5} over that of filling the hole with each image's mean known colour {trivial:.5}"
        ),
    }];
    let mut rng = crate::util::rng("gate-family", 0);
    figures.extend(model.quality(&set.pixels, &m, &mut rng)?);
    Ok((figures, model.describe_generation(&exp.generate), spread))
}

/// [`SampleSpread`] of `samples` generations, the gate's own `first` and `samples − 1` more from
/// streams of their own.
fn spread(
    exp: &Experiment,
    samples: usize,
    model: &dyn I2IModel,
    set: &ImageSet,
    (m, hole): (&crate::masks::BatchMask, &Tensor),
    first: &Tensor,
) -> Result<SampleSpread> {
    let mut outs = vec![first.to_dtype(DType::F32)?];
    for k in 1..samples {
        let mut rngs: Vec<_> = set
            .ids
            .iter()
            .map(|&id| crate::util::rng("gate", crate::util::mix(&[id, k as u64])))
            .collect();
        let o = model.generate(&set.pixels, m, &mut rngs, &exp.generate, &mut |_, _| {})?;
        outs.push(o.to_dtype(DType::F32)?);
    }
    let mean = (Tensor::stack(&outs, 0)?.sum(0)? / samples as f64)?;
    let (of_mean, trivial) = hole_errors(&set.pixels, &mean, hole)?;
    let (mut one, mut spread) = (0.0, 0.0);
    for o in &outs {
        one += hole_errors(&set.pixels, o, hole)?.0 / samples as f64;
        spread += hole_errors(&mean, o, hole)?.0 / samples as f64;
    }
    let t = trivial.max(1e-12);
    Ok(SampleSpread {
        samples,
        trivial_mse: trivial,
        one_sample_ratio: one / t,
        mean_of_samples_ratio: of_mean / t,
        spread_ratio: spread / t,
        posterior_mean_ratio: (of_mean - spread / (samples - 1) as f64) / t,
    })
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
    let (figures, generation, spread) = measure(exp, spec, model, &set, mask)?;
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
        spread,
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
            let verdict = match f.limit {
                Some(l) => format!("(limit {l:.3}) {}", if f.passed() { "passed" } else { "MISSED" }),
                None => "(a diagnostic, no limit)".to_string(),
            };
            format!(
                "quality gate of `{}` on {} held-out images: {} = {:.3} {verdict}",
                r.model, r.images, f.name, f.value
            )
        })
        .chain(r.spread.iter().map(|s| {
            format!(
                "quality gate of `{}`, {} samples per image: hole MSE / trivial-fill MSE of one sample {:.3} = of their mean {:.3} + their spread {:.3}; of the posterior mean (estimated) {:.3}",
                r.model, s.samples, s.one_sample_ratio, s.mean_of_samples_ratio, s.spread_ratio, s.posterior_mean_ratio
            )
        }))
        .collect()
}

/// The error of an enforced gate that was missed.
pub fn missed(r: &GateReport) -> anyhow::Error {
    let bad: Vec<String> = r
        .figures
        .iter()
        .filter(|f| !f.passed())
        .filter_map(|f| Some(format!("{} {:.3} > {:.3}", f.name, f.value, f.limit?)))
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
