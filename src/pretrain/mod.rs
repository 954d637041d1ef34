//! Pre-training the original model on the dataset's training images, cached by content hash so
//! that a re-run (or another experiment with the same data, architecture and settings) skips it.

use crate::data::ImageSet;
use crate::models::{self, FamilyConfig, I2IModel, ModelInput, PretrainSpec, Scope, Weights};
use crate::nn::Mode;
use crate::train::{AdamW, Sampler, TrainVar};
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::Device;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

pub mod resume;
pub use resume::Resume;

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

/// What a pre-training returns.
pub struct Pretrained {
    pub weights: Weights,
    /// The last step's loss.
    pub last: f64,
}

/// Pre-train from a fresh initialisation, or from the checkpoint of `resume` when there is one
/// (the result is the same bytes); `on_step(step, loss)` counts over [`total_steps`].
pub fn pretrain(
    cfg: &FamilyConfig,
    spec: &PretrainSpec,
    data: &ImageSet,
    device: &Device,
    resume: Option<&Resume>,
    mut on_step: impl FnMut(usize, f64),
) -> Result<Pretrained> {
    let saved = match resume {
        Some(r) => resume::load(&r.path, data.len(), device)?,
        None => None,
    };
    let offset = cfg.pre_stage().map_or(0, |p| p.steps(spec));
    let init = match &saved {
        Some(s) => s.weights.clone(),
        None => {
            let mut init = cfg.init_weights(spec.seed, device)?;
            if let Some(stage) = cfg.pre_stage() {
                stage.run(spec, data, &mut init, device, &mut on_step)?;
            }
            init
        }
    };
    let model = cfg.build(&init, true, device)?;
    // Everything trains; the family decides weight decay, as for unlearning.
    let vars = crate::models::trainable(&*model, Scope::Full);
    let mut opt = AdamW::new(vars.clone(), spec.optim(spec.steps))?;
    let data_parallel = (spec.data_parallel > 1)
        .then(|| DataParallel::new(spec.data_parallel))
        .transpose()?;
    let mut rng = crate::util::rng("pretrain", spec.seed);
    let mut sampler = Sampler::new(data.len());
    let (mut start, mut last) = (0, f64::NAN);
    if let Some(s) = saved {
        opt.restore(s.adam)?;
        sampler = Sampler::restore(s.order, s.pos)?;
        rng.set_word_pos(s.word_pos);
        (start, last) = (s.step, s.last);
    }
    let mut saved_at = std::time::Instant::now();
    let checkpoint = |step: usize, last: f64, opt: &AdamW, sampler: &Sampler, rng: &ChaCha8Rng| {
        let Some(r) = resume else { return Ok(()) };
        let mut weights = init.clone();
        weights.extend(model.params().weights());
        let (order, pos) = sampler.state();
        resume::save(
            &r.path,
            &resume::State {
                step,
                done: offset + step,
                last,
                weights,
                adam: opt.state()?,
                order: order.to_vec(),
                pos,
                word_pos: rng.get_word_pos(),
            },
        )
    };
    if start == 0 && offset > 0 {
        // The pre-stage is paid for: a kill from here on resumes after it.
        checkpoint(0, last, &opt, &sampler, &rng)?;
    }
    for step in start..spec.steps {
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
        if resume.is_some_and(|r| saved_at.elapsed() >= r.every) && step + 1 < spec.steps {
            checkpoint(step + 1, last, &opt, &sampler, &rng)?;
            saved_at = std::time::Instant::now();
        }
        on_step(offset + step, last);
    }
    // Frozen parts (a tokenizer) are not among the trained parameters: keep them from `init`.
    let mut out = init;
    out.extend(model.params().weights());
    models::check_finite(&out).map_err(|e| {
        anyhow::anyhow!("pre-training ended with non-finite weights: {e}: lower pretrain.lr")
    })?;
    Ok(Pretrained { weights: out, last })
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

    /// A pre-training killed after its third step and resumed from its checkpoint ends with the
    /// same bytes and loss as one never killed.
    fn resumed_equals_uninterrupted(cfg: FamilyConfig, spec: PretrainSpec) {
        let dev = Device::Cpu;
        let (_, _, data, _) = crate::selfcheck::tiny_setup(&dev).unwrap();
        let whole = pretrain(&cfg, &spec, &data, &dev, None, |_, _| {}).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let r = Resume {
            path: dir.path().join("k.resume.safetensors"),
            every: std::time::Duration::ZERO,
        };
        let offset = total_steps(&cfg, &spec) - spec.steps;
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pretrain(&cfg, &spec, &data, &dev, Some(&r), |s, _| {
                assert!(s != offset + 2, "killed after step {s}")
            })
        }));
        assert!(killed.is_err());
        assert_eq!(resume::saved_steps(&r.path), Some(offset + 3));
        let mut seen = vec![];
        let resumed = pretrain(&cfg, &spec, &data, &dev, Some(&r), |s, _| seen.push(s)).unwrap();
        assert_eq!(seen, (offset + 3..offset + spec.steps).collect::<Vec<_>>());
        assert_eq!(resumed.last.to_bits(), whole.last.to_bits());
        assert_eq!(
            resumed.weights.keys().collect::<Vec<_>>(),
            whole.weights.keys().collect::<Vec<_>>()
        );
        for (k, a) in &whole.weights {
            let d = crate::util::max_abs_diff(a, &resumed.weights[k]).unwrap();
            assert!(d == 0.0, "{k} differs by {d} after the resume");
        }
    }

    fn short_spec() -> PretrainSpec {
        PretrainSpec {
            steps: 6,
            batch_size: 4,
            warmup_steps: 2,
            task_mask_share: 0.5,
            task_masks: vec!["center:2".parse().unwrap()],
            data_parallel: 2,
            tokenizer: crate::models::TokenizerPretrain {
                steps: 2,
                batch_size: 2,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn mae_pretraining_resumes_to_the_same_bytes() {
        resumed_equals_uninterrupted(crate::models::FamilyName::Mae.tiny(), short_spec());
    }

    #[test]
    fn mage_pretraining_resumes_after_its_tokenizer_to_the_same_bytes() {
        resumed_equals_uninterrupted(crate::models::FamilyName::Mage.tiny(), short_spec());
    }

    #[test]
    fn palette_pretraining_resumes_to_the_same_bytes() {
        resumed_equals_uninterrupted(crate::models::FamilyName::Palette.tiny(), short_spec());
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
