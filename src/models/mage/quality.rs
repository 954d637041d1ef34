//! MAGE's quality figures (the original-model gate): a tokenizer that cannot reconstruct, or a
//! transformer no better than guessing tokens, leaves nothing for unlearning to remove. Beside
//! the two gated figures, three diagnostics (no limit) say which part falls short: the hole
//! error of the true tokens decoded (the tokenizer's ceiling for any token predictor), of one
//! pass of argmax tokens (the predictor's best guess, without sampling's spread), and the
//! entropy of the images' token frequencies (the cross-entropy of a predictor that ignores the
//! context).

use super::{masked_cross_entropy, transformer, Mage};
use crate::masks::hole::hole_errors;
use crate::masks::BatchMask;
use crate::models::{I2IModel, QualityFigure};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

/// The tokenizer's reconstruction MSE over the pixel variance of `pixels` (limit 0.25), the
/// masked-token cross-entropy under `mask` (no label smoothing) over ln(codebook size) (limit
/// 0.6: uniform guessing is 1), then the diagnostics of the module's header.
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
    let mut figures = vec![
        QualityFigure {
            name: "tokenizer reconstruction MSE / pixel variance".into(),
            value: mse / var,
            limit: Some(0.25),
            rule: format!("VQ-GAN encode → decode of the images, MSE {mse:.5} over the images' pixel variance {var:.5}"),
        },
        QualityFigure {
            name: "masked-token cross-entropy / ln(codebook size)".into(),
            value: ce / (k as f64).ln(),
            limit: Some(0.6),
            rule: format!("cross-entropy {ce:.4} nats of the masked tokens under the gate's mask (no label smoothing) over ln {k} = {:.4} (uniform guessing: 1)", (k as f64).ln()),
        },
    ];
    figures.extend(diagnostics(m, &pixels, (&tokens, &recon), mask)?);
    Ok(figures)
}

/// The figures without a limit (the module's header); `tokens` and `recon` are the images'
/// true tokens and their decoding.
fn diagnostics(
    m: &Mage,
    pixels: &Tensor,
    (tokens, recon): (&Tensor, &Tensor),
    mask: &BatchMask,
) -> Result<Vec<QualityFigure>> {
    let hole = mask.pixel_mask(m.image_size(), pixels.device())?;
    let (ceiling, trivial) = hole_errors(pixels, recon, &hole)?;
    let guess = m.predict(pixels, mask, &mut [])?.clamp(0f32, 1f32)?;
    let (argmax, _) = hole_errors(pixels, &guess, &hole)?;
    let k = m.cfg.codebook_size();
    let mut counts = vec![0usize; k];
    let ids = tokens.flatten_all()?.to_vec1::<u32>()?;
    for &t in &ids {
        counts[t as usize] += 1;
    }
    let n = ids.len().max(1) as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| -(c as f64 / n) * (c as f64 / n).ln())
        .sum();
    let used = counts.iter().filter(|&&c| c > 0).count();
    let t = trivial.max(1e-12);
    Ok(vec![
        QualityFigure {
            name: "hole MSE / trivial-fill MSE of the true tokens decoded".into(),
            value: ceiling / t,
            limit: None,
            rule: format!("the tokenizer's ceiling: the images' own tokens decoded, MSE in the hole {ceiling:.5} over the trivial fill's {trivial:.5}"),
        },
        QualityFigure {
            name: "hole MSE / trivial-fill MSE of one pass of argmax tokens".into(),
            value: argmax / t,
            limit: None,
            rule: format!("the predictor's best single guess: every hole token's argmax in one pass, decoded, no compositing; MSE in the hole {argmax:.5}"),
        },
        QualityFigure {
            name: "token-frequency entropy / ln(codebook size)".into(),
            value: entropy / (k as f64).ln(),
            limit: None,
            rule: format!("the cross-entropy of a predictor that knows only how often each code occurs: {entropy:.4} nats over the images' {} tokens ({used} of {k} codes used; the plug-in estimate, biased low by about {:.3} nats)", ids.len(), (used.saturating_sub(1)) as f64 / (2.0 * n)),
        },
    ])
}
