//! MAGE's tokenizer pre-trained here, the stage before the model's own pre-training
//! ([`PreStage`]): a plain VQ autoencoder standing in for the official adversarially trained
//! VQ-GAN, for originals that are not loaded from the official checkpoints.

use super::{MageConfig, VqGan, VQ_PREFIX};
use crate::models::{PreStage, PretrainSpec, TokenizerPretrain, TrainImages, Weights};
use crate::train::{AdamW, Sampler};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};

impl PreStage for MageConfig {
    fn steps(&self, spec: &PretrainSpec) -> usize {
        spec.tokenizer.steps
    }
    fn run(
        &self,
        spec: &PretrainSpec,
        data: &dyn TrainImages,
        weights: &mut Weights,
        device: &Device,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<()> {
        pretrain_tokenizer(
            self,
            &spec.tokenizer,
            spec.seed,
            data,
            weights,
            device,
            on_step,
        )
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
    data: &dyn TrainImages,
    weights: &mut Weights,
    device: &Device,
    on_step: &mut dyn FnMut(usize, f64),
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
        let batch = data.pixels(&sampler.next(spec.batch_size, &mut rng))?;
        let pixels = crop(&batch, spec.crop, &mut rng)?;
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
