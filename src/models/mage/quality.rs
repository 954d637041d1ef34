//! MAGE's quality figures (the original-model gate): a tokenizer that cannot reconstruct, or a
//! transformer no better than guessing tokens, leaves nothing for unlearning to remove.

use super::{masked_cross_entropy, transformer, Mage};
use crate::masks::BatchMask;
use crate::models::{I2IModel, QualityFigure};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

/// The tokenizer's reconstruction MSE over the pixel variance of `pixels` (limit 0.25), and the
/// masked-token cross-entropy under `mask` (no label smoothing) over ln(codebook size) (limit
/// 0.6: uniform guessing is 1).
pub fn figures(
    m: &Mage,
    pixels: &Tensor,
    mask: &BatchMask,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<QualityFigure>> {
    let pixels = pixels.detach();
    let tokens = m.tokenize(&pixels)?;
    let recon = m.vq.decode_tokens(&tokens)?.clamp(0f32, 1f32)?;
    let mse = (&recon - &pixels)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64;
    let mean = pixels.mean_all()?.to_scalar::<f32>()? as f64;
    let var = (pixels
        .affine(1.0, -mean)?
        .sqr()?
        .mean_all()?
        .to_scalar::<f32>()? as f64)
        .max(1e-12);
    let input = m.prepare(&pixels, mask, rng)?;
    let (logits, toks) = m.logits(&input, Mode::Infer)?;
    let w = transformer::mask_tensor(&toks.masked, logits.device())?;
    let k = m.cfg.codebook_size();
    let ce = masked_cross_entropy(
        &logits.narrow(1, 1, m.cfg.num_tokens())?,
        &toks.ids,
        &w,
        k,
        0.0,
    )?
    .to_scalar::<f32>()? as f64;
    Ok(vec![
        QualityFigure {
            name: "tokenizer reconstruction MSE / pixel variance".into(),
            value: mse / var,
            limit: 0.25,
            rule: format!("VQ-GAN encode → decode of the images, MSE {mse:.5} over the images' pixel variance {var:.5}"),
        },
        QualityFigure {
            name: "masked-token cross-entropy / ln(codebook size)".into(),
            value: ce / (k as f64).ln(),
            limit: 0.6,
            rule: format!("cross-entropy {ce:.4} nats of the masked tokens under the gate's mask (no label smoothing) over ln {k} = {:.4} (uniform guessing: 1)", (k as f64).ln()),
        },
    ])
}
