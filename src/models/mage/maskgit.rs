//! MaskGIT iterative decoding as the official MAGE evaluation (`inpaint_image_mage_multisteps`
//! of the fork's `testpaint.py`), kept apart from the network:
//!
//! - iteration s of T (T = 20): ratio r = (s + 1)/T, target mask ratio m = cos(π/2 · r); the
//!   iteration is **skipped** while m ≥ the masked share of the tokens (so a 100-of-256 mask
//!   runs 6 real iterations);
//! - the network predicts every token; masked ones are sampled from the categorical of their
//!   logits (the first `codebook` entries), known ones kept;
//! - the next mask length is ⌊N · m⌋ with N = *all* tokens (the official
//!   `unknown_number_in_the_beginning = 256`), clamped to [1, unknown − 1];
//! - confidence = log p(sampled) + 6.0 · (1 − r) · Gumbel noise (known tokens: p = 1e20, so log p ≈ 46); the
//!   tokens whose confidence is ≤ the mask-length-th smallest are masked again;
//! - the tokens sampled in the last iteration are decoded.
//!
//! `greedy`: argmax instead of sampling and no Gumbel noise (deterministic, for parity). All
//! randomness comes from one seeded stream per image.

use super::transformer::{keep_all, Tokens, Transformer};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::{Device, Tensor};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// Settings of one decoding.
pub struct MaskGit {
    pub num_iter: usize,
    pub choice_temperature: f64,
    pub greedy: bool,
}

/// The probability the official code gives known tokens (its confidence is the log of it).
const KNOWN_PROB: f32 = 1e20;

fn softmax(row: &[f32]) -> Vec<f32> {
    let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = row.iter().map(|&x| (x - m).exp()).collect();
    let s: f32 = e.iter().sum();
    e.into_iter().map(|x| x / s).collect()
}

fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

fn sample(probs: &[f32], rng: &mut ChaCha8Rng) -> usize {
    let u: f32 = rng.random::<f32>() * probs.iter().sum::<f32>();
    let mut acc = 0f32;
    for (i, &p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.len() - 1
}

fn gumbel(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    -(-u.ln()).ln()
}

impl MaskGit {
    /// Fill the masked tokens of `ids` (`masked[b][i]`). Returns the final token ids per image.
    pub fn run(
        &self,
        net: &Transformer,
        ids: &[Vec<u32>],
        masked: &[Vec<bool>],
        rngs: &mut [ChaCha8Rng],
        device: &Device,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<u32>>> {
        let b = ids.len();
        let n = ids[0].len();
        let codebook = net.codebook();
        anyhow::ensure!(rngs.len() == b, "one random stream per image");
        // The masked share as the official code computes it (float32 over the whole batch).
        let total: usize = masked
            .iter()
            .map(|m| m.iter().filter(|&&h| h).count())
            .sum();
        let mask_rate = (total as f32 / (b * n) as f32) as f64;
        let mut cur: Vec<Vec<u32>> = ids.to_vec();
        let mut unknown: Vec<Vec<bool>> = masked.to_vec();
        let mut last: Option<Vec<Vec<u32>>> = None;
        let t = self.num_iter;
        for step in 0..t {
            let ratio = (step + 1) as f64 / t as f64;
            let mr = (std::f64::consts::FRAC_PI_2 * ratio).cos();
            if mr >= mask_rate {
                on_step(step + 1, t);
                continue;
            }
            let tokens = Tokens {
                ids: Tensor::from_vec(cur.concat(), (b, n), device)?,
                masked: unknown.clone(),
                keep: keep_all(b, n),
            };
            let latent = net.encode(&tokens, Mode::Infer)?;
            let logits = net.decode(&latent, &tokens, Mode::Infer)?;
            let logits = logits
                .narrow(1, 1, n)?
                .narrow(2, 0, codebook)?
                .contiguous()?
                .to_vec3::<f32>()?;
            let mut next = Vec::with_capacity(b);
            let mut sampled_all = Vec::with_capacity(b);
            for (i, rng) in rngs.iter_mut().enumerate() {
                let mut sampled = cur[i].clone();
                let mut conf = vec![(KNOWN_PROB.ln()) as f64; n];
                let temp = self.choice_temperature * (1.0 - ratio);
                for j in 0..n {
                    if !unknown[i][j] {
                        continue;
                    }
                    let probs = softmax(&logits[i][j]);
                    let tok = if self.greedy {
                        argmax(&logits[i][j])
                    } else {
                        sample(&probs, rng)
                    };
                    sampled[j] = tok as u32;
                    conf[j] = (probs[tok] as f64).ln();
                }
                // The official code draws Gumbel noise for every token, known ones included.
                if !self.greedy {
                    for c in conf.iter_mut() {
                        let g = gumbel(rng);
                        // f32 arithmetic as torch: log(p) (f32) + temperature · gumbel.
                        *c = (*c as f32 + (temp * g) as f32) as f64;
                    }
                } else {
                    for c in conf.iter_mut() {
                        *c = *c as f32 as f64;
                    }
                }
                let unknown_n = unknown[i].iter().filter(|&&u| u).count();
                let want = (n as f64 * mr).floor();
                let mask_len = want.min(unknown_n as f64 - 1.0).max(1.0) as usize;
                let mut sorted = conf.clone();
                sorted.sort_by(|a, b| a.partial_cmp(b).expect("finite confidence"));
                let cutoff = sorted[mask_len - 1];
                let mut ids_next = sampled.clone();
                let mut unk_next = vec![false; n];
                for j in 0..n {
                    if conf[j] <= cutoff {
                        ids_next[j] = net.mask_token_label();
                        unk_next[j] = true;
                    }
                }
                unknown[i] = unk_next;
                next.push(ids_next);
                sampled_all.push(sampled);
            }
            cur = next;
            last = Some(sampled_all);
            on_step(step + 1, t);
        }
        // With nothing masked no iteration runs: the tokens are the input's.
        Ok(last.unwrap_or_else(|| ids.to_vec()))
    }
}
