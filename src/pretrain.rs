//! Pre-training the original model on the dataset's training images, cached by content hash so
//! that a re-run (or another experiment with the same data, architecture and settings) skips it.

use crate::data::ImageSet;
use crate::models::{self, FamilyConfig, I2IModel, ModelInput, PretrainSpec, Scope, Weights};
use crate::nn::Mode;
use crate::train::{AdamW, Sampler, TrainVar};
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::Device;
use std::path::{Path, PathBuf};

impl models::TrainImages for ImageSet {
    fn len(&self) -> usize {
        ImageSet::len(self)
    }
    fn pixels(&self, indices: &[usize]) -> Result<candle_core::Tensor> {
        Ok(self.select(indices)?.pixels)
    }
}

/// Cache file of a pre-training run.
pub fn cache_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir
        .join("pretrain")
        .join(format!("{key}.safetensors"))
}

/// Steps of a whole pre-training: the family's pre-stage first (MAGE's tokenizer), then the
/// model's.
pub fn total_steps(cfg: &FamilyConfig, spec: &PretrainSpec) -> usize {
    cfg.pre_stage().map_or(0, |p| p.steps(spec)) + spec.steps
}

/// Pre-train from a fresh initialisation; returns the final weights and the last loss.
/// `on_step(step, loss)` counts over [`total_steps`].
pub fn pretrain(
    cfg: &FamilyConfig,
    spec: &PretrainSpec,
    data: &ImageSet,
    device: &Device,
    mut on_step: impl FnMut(usize, f64),
) -> Result<(Weights, f64)> {
    let mut init = cfg.init_weights(spec.seed, device)?;
    let mut offset = 0;
    if let Some(stage) = cfg.pre_stage() {
        stage.run(spec, data, &mut init, device, &mut on_step)?;
        offset = stage.steps(spec);
    }
    let model = cfg.build(&init, true, device)?;
    // Everything trains; the family decides weight decay, as for unlearning.
    let vars = crate::models::trainable(&*model, Scope::Full);
    let mut opt = AdamW::new(vars.clone(), spec.optim(spec.steps))?;
    let data_parallel = (spec.data_parallel > 1)
        .then(|| DataParallel::new(spec.data_parallel))
        .transpose()?;
    let mut rng = crate::util::rng("pretrain", spec.seed);
    let mut sampler = Sampler::new(data.len());
    let mut last = f64::NAN;
    for step in 0..spec.steps {
        let batch = data.select(&sampler.next(spec.batch_size, &mut rng))?;
        // Deterministic interleaving: a task-mask batch whenever the running share falls behind.
        let task_masks = &spec.task_masks;
        let use_task = !task_masks.is_empty()
            && ((step + 1) as f64 * spec.task_mask_share).floor()
                > (step as f64 * spec.task_mask_share).floor();
        let keys = crate::masks::mask_keys(&batch.ids, spec.seed, Some(step));
        let mask = if use_task {
            task_masks[step % task_masks.len()].batch(cfg.mask_grid(), &keys)?
        } else {
            model.training_masks(&keys, &mut rng)?
        };
        let input = model.prepare(&batch.pixels, &mask, &mut rng)?;
        let grads = if let Some(dp) = &data_parallel {
            let (loss, grads) = dp.gradient(&*model, &input, &vars)?;
            last = loss;
            grads
        } else {
            let loss = model.training_loss(&input, &batch.pixels, Mode::Train)?;
            last = loss.to_scalar::<f32>()? as f64;
            loss.backward()?
        };
        anyhow::ensure!(
            last.is_finite(),
            "pre-training loss is {last} at step {step}: lower pretrain.lr"
        );
        opt.step(&grads)?;
        on_step(offset + step, last);
    }
    // Frozen parts (a tokenizer) are not among the trained parameters: keep them from `init`.
    let mut out = init;
    out.extend(model.params().weights());
    models::check_finite(&out).map_err(|e| {
        anyhow::anyhow!("pre-training ended with non-finite weights: {e}: lower pretrain.lr")
    })?;
    Ok((out, last))
}

/// Computes a batch's loss and gradient as equal shards at the same time, each on a one-thread
/// pool of its own ([`crate::parallel::Shards`]): on small models whole shards per core beat
/// splitting every op over the cores (their hand-offs cost more than the ops).
pub struct DataParallel {
    shards: crate::parallel::Shards,
}

impl DataParallel {
    pub fn new(n: usize) -> Result<Self> {
        Ok(Self {
            shards: crate::parallel::Shards::new(n)?,
        })
    }

    /// The whole batch's training loss and gradient: shard `s` contributes `(d_s / d) · loss_s`,
    /// `d` being the loss's denominator ([`I2IModel::loss_denominator`]), so the sum is the
    /// batch's loss. Shards are summed in their order, whatever their timing: the result does
    /// not depend on the thread count.
    pub fn gradient(
        &self,
        model: &dyn I2IModel,
        input: &ModelInput,
        vars: &[TrainVar],
    ) -> Result<(f64, GradStore)> {
        let (n, shards) = (input.len(), self.shards.len());
        anyhow::ensure!(
            n % shards == 0,
            "a batch of {n} does not split into {shards} shards"
        );
        let total = model.loss_denominator(input);
        let parts = self.shards.map(n, |_, r| -> Result<(f64, GradStore)> {
            let part = input.slice(r.start, r.len())?;
            let loss = model.training_loss(&part, &part.pixels, Mode::Train)?;
            let loss = (loss * (model.loss_denominator(&part) / total))?;
            Ok((loss.to_scalar::<f32>()? as f64, loss.backward()?))
        })?;
        let mut parts = parts.into_iter();
        let (mut loss, mut grads) = parts.next().expect("at least one shard");
        for (l, g) in parts {
            loss += l;
            crate::train::accumulate(&mut grads, &g, vars)?;
        }
        Ok((loss, grads))
    }
}

/// Load cached pre-trained weights, checked against their seal; with their SHA-256.
pub fn load_cached(path: &Path, device: &Device) -> Result<(Weights, String)> {
    crate::store::sealed::load(path, device).with_context(|| {
        format!(
            "reading cached pre-trained weights {} (delete it to retrain)",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{trainable, Scope};
    use candle_core::Tensor;

    /// Shards of a batch give the whole batch's loss and gradient, up to float rounding: the
    /// families' loss denominators weigh each shard as its share of the batch.
    fn shards_match_the_whole_batch(cfg: FamilyConfig) {
        let dev = Device::Cpu;
        let mut rng = crate::util::rng("shards-test", 0);
        // Moved off the initialisation, whose zero convolutions (Palette) block gradients.
        let weights: Weights = cfg
            .init_weights(1, &dev)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let n = crate::util::normal_vec(&mut rng, v.elem_count());
                let n = (Tensor::from_vec(n, v.shape(), &dev).unwrap() * 0.05).unwrap();
                (k, (v + n).unwrap())
            })
            .collect();
        let model = cfg.build(&weights, true, &dev).unwrap();
        let s = cfg.image_size();
        let px: Vec<f32> = crate::util::normal_vec(&mut rng, 8 * 3 * s * s)
            .into_iter()
            .map(|v| (0.5 + 0.2 * v).clamp(0.0, 1.0))
            .collect();
        let pixels = Tensor::from_vec(px, (8, 3, s, s), &dev).unwrap();
        let keys: Vec<u64> = (0..8).collect();
        let mask = model.training_masks(&keys, &mut rng).unwrap();
        let input = model.prepare(&pixels, &mask, &mut rng).unwrap();
        let vars = trainable(&*model, Scope::Full);
        let whole = model
            .training_loss(&input, &input.pixels, Mode::Train)
            .unwrap();
        let whole_grads = whole.backward().unwrap();
        let whole = whole.to_scalar::<f32>().unwrap() as f64;
        for shards in [2, 4] {
            let (loss, grads) = DataParallel::new(shards)
                .unwrap()
                .gradient(&*model, &input, &vars)
                .unwrap();
            assert!(
                (loss - whole).abs() <= 1e-5 * whole.abs(),
                "{shards} shards: loss {loss} vs {whole}"
            );
            // Gradients that are zero in exact arithmetic (the key bias under softmax) are
            // rounding noise on both sides: measured against the largest gradient.
            let mut global = 0f32;
            for (_, v, _) in &vars {
                if let Some(a) = whole_grads.get(v.as_tensor()) {
                    global = global.max(a.abs().unwrap().max_all().unwrap().to_scalar().unwrap());
                }
            }
            let mut compared = 0;
            for (name, v, _) in &vars {
                let (a, b) = (whole_grads.get(v.as_tensor()), grads.get(v.as_tensor()));
                assert_eq!(
                    a.is_some(),
                    b.is_some(),
                    "{shards} shards: gradient of {name}"
                );
                let (Some(a), Some(b)) = (a, b) else { continue };
                let scale = a
                    .abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                let diff = crate::util::max_abs_diff(a, b).unwrap();
                assert!(
                    diff <= 1e-4 * scale + 1e-6 * global,
                    "{shards} shards: gradient of {name} differs by {diff} (max {scale})"
                );
                compared += (scale > 0.0) as usize;
            }
            assert!(
                compared > vars.len() / 2,
                "only {compared} non-zero gradients"
            );
        }
    }

    #[test]
    fn mae_shards_match_the_whole_batch() {
        let (cfg, ..) = crate::selfcheck::tiny_setup(&Device::Cpu).unwrap();
        shards_match_the_whole_batch(cfg);
    }

    #[test]
    fn mage_shards_match_the_whole_batch() {
        let (cfg, _) = crate::models::mage::tests::tiny();
        shards_match_the_whole_batch(FamilyConfig::Mage(cfg));
    }

    #[test]
    fn palette_shards_match_the_whole_batch() {
        let cfg = crate::models::palette::tests::tiny_cfg();
        shards_match_the_whole_batch(FamilyConfig::Palette(cfg));
    }
}
