//! Pre-training the original model on the dataset's training images, cached by content hash so
//! that a re-run (or another experiment with the same data, architecture and settings) skips it.

use crate::data::ImageSet;
use crate::models::mage::{MageConfig, VqGan, VQ_PREFIX};
use crate::models::{
    self, FamilyConfig, I2IModel, ModelInput, PretrainSpec, TokenizerPretrain, Weights,
};
use crate::nn::Mode;
use crate::train::{AdamW, Sampler, TrainVar};
use anyhow::{Context, Result};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use std::path::{Path, PathBuf};

/// Cache file of a pre-training run.
pub fn cache_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir
        .join("pretrain")
        .join(format!("{key}.safetensors"))
}

/// Steps of a whole pre-training: the tokenizer's first (families with one), then the model's.
pub fn total_steps(cfg: &FamilyConfig, spec: &PretrainSpec) -> usize {
    match cfg {
        FamilyConfig::Mage(_) => spec.tokenizer.steps + spec.steps,
        _ => spec.steps,
    }
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
    let mut init = models::init_weights(cfg, spec.seed, device)?;
    let mut offset = 0;
    if let FamilyConfig::Mage(c) = cfg {
        pretrain_tokenizer(
            c,
            &spec.tokenizer,
            spec.seed,
            data,
            &mut init,
            device,
            &mut on_step,
        )?;
        offset = spec.tokenizer.steps;
    }
    let model = models::build(cfg, &init, true, device)?;
    // Everything trains; the family decides weight decay, as for unlearning.
    let vars = crate::unlearn::trainer::trainable(&*model, crate::unlearn::Scope::Full);
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
        let keys = crate::unlearn::trainer::mask_keys(&batch.ids, spec.seed, Some(step));
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

/// Train MAGE's VQ tokenizer (the `vqgan.*` tensors of `weights`, replaced in place): a plain
/// VQ autoencoder — reconstruction MSE + codebook + commitment — standing in for the official
/// adversarially trained VQ-GAN. The codebook starts on encoder outputs of the first batch, and
/// entries unused for `restart_every` steps are re-seated on encoder outputs (so that a small
/// codebook is used, not collapsed onto a few codes).
fn pretrain_tokenizer(
    cfg: &MageConfig,
    spec: &TokenizerPretrain,
    seed: u64,
    data: &ImageSet,
    weights: &mut Weights,
    device: &Device,
    on_step: &mut impl FnMut(usize, f64),
) -> Result<()> {
    anyhow::ensure!(
        spec.crop % cfg.downsampling() == 0,
        "pretrain.tokenizer.crop {} must be a multiple of the tokenizer's downsampling factor {}",
        spec.crop,
        cfg.downsampling()
    );
    let varmap = candle_nn::VarMap::new();
    let mut vars = Vec::new();
    {
        let mut map = varmap.data().lock().expect("varmap lock");
        for (name, t) in weights.iter() {
            if let Some(short) = name.strip_prefix(VQ_PREFIX) {
                let v = Var::from_tensor(t)?;
                map.insert(short.to_string(), v.clone());
                vars.push((short.to_string(), v, false));
            }
        }
    }
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, device);
    let vq = VqGan::new(vb, &cfg.vqgan)?;
    let codebook = vars
        .iter()
        .find(|(n, _, _)| n == "quantize.embedding.weight")
        .map(|(_, v, _)| v.clone())
        .context("tokenizer without a codebook")?;
    let n_codes = cfg.vqgan.n_embed;
    let mut rng = crate::util::rng("pretrain-tokenizer", seed);
    let mut sampler = Sampler::new(data.len());
    let mut opt = AdamW::new(vars, spec.optim(spec.steps))?;
    let mut used = vec![false; n_codes];
    for step in 0..spec.steps {
        let batch = data.select(&sampler.next(spec.batch_size, &mut rng))?;
        let pixels = crop(&batch.pixels, spec.crop, &mut rng)?;
        if step == 0 {
            let z = vq.encoder.forward(&pixels)?;
            codebook.set(&random_rows(&z, n_codes, &mut rng)?)?;
        }
        let l = vq.training_loss(&pixels)?;
        let loss = l.total.to_scalar::<f32>()? as f64;
        anyhow::ensure!(
            loss.is_finite(),
            "tokenizer pre-training loss is {loss} at step {step}: lower pretrain.tokenizer.lr"
        );
        for t in l.tokens.flatten_all()?.to_vec1::<u32>()? {
            used[t as usize] = true;
        }
        opt.step(&l.total.backward()?)?;
        if spec.restart_every > 0 && (step + 1) % spec.restart_every == 0 && step + 1 < spec.steps {
            let dead: Vec<usize> = (0..n_codes).filter(|&i| !used[i]).collect();
            if !dead.is_empty() {
                let fresh = random_rows(&l.z.detach(), dead.len(), &mut rng)?;
                let idx = Tensor::from_vec(
                    dead.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                    dead.len(),
                    device,
                )?;
                let cb = codebook.as_tensor().detach();
                let updated = cb.index_add(&idx, &(fresh - cb.index_select(&idx, 0)?)?, 0)?;
                codebook.set(&updated)?;
            }
            used.iter_mut().for_each(|u| *u = false);
        }
        on_step(step, loss);
    }
    for (name, v) in varmap.data().lock().expect("varmap lock").iter() {
        weights.insert(format!("{VQ_PREFIX}{name}"), v.as_tensor().detach());
    }
    Ok(())
}

/// A random `side`² crop of a batch (one offset per batch); the batch itself when `side` is 0
/// or not smaller than the images.
fn crop(pixels: &Tensor, side: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    use rand::Rng;
    let (_, _, h, w) = pixels.dims4()?;
    if side == 0 || side >= h.min(w) {
        return Ok(pixels.clone());
    }
    let y = rng.random_range(0..=h - side);
    let x = rng.random_range(0..=w - side);
    Ok(pixels
        .narrow(2, y, side)?
        .narrow(3, x, side)?
        .contiguous()?)
}

/// `n` rows `[n, C]` drawn (with replacement when needed) from the vectors of `z` (`[B, C, h, w]`),
/// with a little noise so that duplicates separate.
fn random_rows(z: &Tensor, n: usize, rng: &mut rand_chacha::ChaCha8Rng) -> Result<Tensor> {
    use rand::Rng;
    let (b, c, h, w) = z.dims4()?;
    let flat = z
        .permute((0, 2, 3, 1))?
        .reshape((b * h * w, c))?
        .contiguous()?;
    let m = b * h * w;
    let idx: Vec<u32> = (0..n).map(|_| rng.random_range(0..m) as u32).collect();
    let rows = flat.index_select(&Tensor::from_vec(idx, n, z.device())?, 0)?;
    let scale = rows.abs()?.mean_all()?.to_scalar::<f32>()? as f64 * 0.01;
    let noise = crate::util::normal_vec(rng, n * c);
    let noise = (Tensor::from_vec(noise, (n, c), z.device())? * scale)?;
    Ok((rows + noise)?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unlearn::{trainer::trainable, Scope};

    /// Shards of a batch give the whole batch's loss and gradient, up to float rounding: the
    /// families' loss denominators weigh each shard as its share of the batch.
    fn shards_match_the_whole_batch(cfg: FamilyConfig) {
        let dev = Device::Cpu;
        let mut rng = crate::util::rng("shards-test", 0);
        // Moved off the initialisation, whose zero convolutions (Palette) block gradients.
        let weights: Weights = models::init_weights(&cfg, 1, &dev)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let n = crate::util::normal_vec(&mut rng, v.elem_count());
                let n = (Tensor::from_vec(n, v.shape(), &dev).unwrap() * 0.05).unwrap();
                (k, (v + n).unwrap())
            })
            .collect();
        let model = models::build(&cfg, &weights, true, &dev).unwrap();
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
