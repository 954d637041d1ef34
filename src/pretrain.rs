//! Pre-training the original model on the dataset's training images, cached by content hash so
//! that a re-run (or another experiment with the same data, architecture and settings) skips it.

use crate::data::ImageSet;
use crate::models::{self, FamilyConfig, PretrainSpec, Weights};
use crate::nn::Mode;
use crate::train::{AdamW, Sampler};
use anyhow::{Context, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// Cache file of a pre-training run.
pub fn cache_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir
        .join("pretrain")
        .join(format!("{key}.safetensors"))
}

/// Pre-train from a fresh initialisation; returns the final weights and the last loss.
pub fn pretrain(
    cfg: &FamilyConfig,
    spec: &PretrainSpec,
    data: &ImageSet,
    device: &Device,
    mut on_step: impl FnMut(usize, f64),
) -> Result<(Weights, f64)> {
    let init = models::init_weights(cfg, spec.seed, device)?;
    let model = models::build(cfg, &init, true, device)?;
    // Everything trains; the family decides weight decay, as for unlearning.
    let vars = crate::unlearn::trainer::trainable(&*model, crate::unlearn::Scope::Full);
    let mut opt = AdamW::new(vars, spec.optim(spec.steps))?;
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
        let keys = crate::unlearn::trainer::mask_keys(&batch.ids, spec.seed, Some(step));
        let mask = if use_task {
            task_masks[step % task_masks.len()].batch(cfg.mask_grid(), &keys)?
        } else {
            model.training_masks(&keys, &mut rng)?
        };
        let input = model.prepare(&batch.pixels, &mask, &mut rng)?;
        let loss = model.training_loss(&input, &batch.pixels, Mode::Train)?;
        last = loss.to_scalar::<f32>()? as f64;
        anyhow::ensure!(
            last.is_finite(),
            "pre-training loss is {last} at step {step}: lower pretrain.lr"
        );
        opt.step(&loss.backward()?)?;
        on_step(step, last);
    }
    Ok((model.params().weights(), last))
}

/// Load cached weights if present.
pub fn load_cached(path: &Path, device: &Device) -> Result<Option<Weights>> {
    if !path.exists() {
        return Ok(None);
    }
    models::load_weights(path, device)
        .map(Some)
        .with_context(|| {
            format!(
                "reading cached pre-trained weights {} (delete it to retrain)",
                path.display()
            )
        })
}
