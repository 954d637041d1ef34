//! The MAGE transformer (`MaskedGenerativeEncoderViT` of the MAGE fork), with its checkpoint
//! names: `token_emb.*` (BERT-style word + learned position embedding, LayerNorm), `blocks.N.*`,
//! `norm.*` (the encoder); `decoder_embed`, `decoder_pos_embed_learned`, `decoder_blocks.N.*`,
//! `decoder_norm`, `mlm_layer.*` (the decoder and MLM head).
//!
//! The sequence is the fake-class token followed by the N token ids (masked ones replaced by the
//! mask token). In training, `ceil(N · mask_ratio_min)` masked tokens are dropped from the
//! encoder input; the decoder puts the kept tokens back in place and fills every other position
//! (dropped or masked) with the decoded class token (`pad_with_cls_token`). The MLM head's output
//! projection is the *detached* word-embedding matrix, so training the encoder's embedding also
//! moves the head.
//!
//! Not ported: the embedding dropout (0.1 in the official training mode) — our forward passes
//! are deterministic; `patch_embed`, `cls_token`, `mask_token`, `pos_embed`, `decoder_pos_embed`
//! and `decoder_pred` are loaded (the checkpoint has them) but the official forward never uses
//! them.

use super::MageConfig;
use crate::nn::block::{Mlp, PreNormBlock};
use crate::nn::{Activation, LayerNorm, Linear, Mode, SelfAttention};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

fn block(
    vb: VarBuilder,
    dim: usize,
    heads: usize,
    hidden: usize,
    eps: f64,
) -> Result<PreNormBlock> {
    Ok(PreNormBlock {
        norm1: LayerNorm::load(vb.pp("norm1"), dim, eps)?,
        attn: SelfAttention::from_fused(
            Linear::load(vb.pp("attn").pp("qkv"), dim, 3 * dim, true)?,
            Linear::load(vb.pp("attn").pp("proj"), dim, dim, true)?,
            heads,
        )?,
        norm2: LayerNorm::load(vb.pp("norm2"), dim, eps)?,
        mlp: Mlp {
            fc1: Linear::load(vb.pp("mlp").pp("fc1"), dim, hidden, true)?,
            fc2: Linear::load(vb.pp("mlp").pp("fc2"), hidden, dim, true)?,
            act: Activation::Gelu,
        },
    })
}

/// The transformer's modules.
pub struct Transformer {
    word_embeddings: Tensor,
    position_embeddings: Tensor,
    emb_norm: LayerNorm,
    blocks: Vec<PreNormBlock>,
    norm: LayerNorm,
    decoder_embed: Linear,
    decoder_pos_embed_learned: Tensor,
    decoder_blocks: Vec<PreNormBlock>,
    decoder_norm: LayerNorm,
    mlm_fc: Linear,
    mlm_ln: LayerNorm,
    mlm_bias: Tensor,
    fake_class_label: u32,
    mask_token_label: u32,
    codebook: usize,
}

/// A batch of token sequences as the encoder takes them.
pub struct Tokens {
    /// `[B, N]` u32 token ids (the tokenizer's), before masking.
    pub ids: Tensor,
    /// Per image, per token: whether it is masked.
    pub masked: Vec<Vec<bool>>,
    /// Per image, the sequence positions (0 = class token, 1 + i = token i) the encoder sees,
    /// ascending; every position when nothing is dropped.
    pub keep: Vec<Vec<u32>>,
}

impl Transformer {
    pub fn new(vb: VarBuilder, cfg: &MageConfig) -> Result<Self> {
        let t = &cfg.mage;
        let (d, dd, v, n) = (
            t.embed_dim,
            t.decoder_embed_dim,
            cfg.vocab_size(),
            cfg.num_tokens(),
        );
        let eps = t.layer_norm_eps;
        let emb = vb.pp("token_emb");
        Ok(Self {
            word_embeddings: emb.pp("word_embeddings").get((v, d), "weight")?,
            position_embeddings: emb
                .pp("position_embeddings")
                .get((t.max_position_embeddings, d), "weight")?,
            emb_norm: LayerNorm::load(emb.pp("LayerNorm"), d, eps)?,
            blocks: (0..t.depth)
                .map(|i| block(vb.pp("blocks").pp(i), d, t.num_heads, cfg.mlp_hidden(), eps))
                .collect::<Result<_>>()?,
            norm: LayerNorm::load(vb.pp("norm"), d, eps)?,
            decoder_embed: Linear::load(vb.pp("decoder_embed"), d, dd, true)?,
            decoder_pos_embed_learned: vb.get((1, n + 1, dd), "decoder_pos_embed_learned")?,
            decoder_blocks: (0..t.decoder_depth)
                .map(|i| {
                    block(
                        vb.pp("decoder_blocks").pp(i),
                        dd,
                        t.decoder_num_heads,
                        cfg.decoder_mlp_hidden(),
                        eps,
                    )
                })
                .collect::<Result<_>>()?,
            decoder_norm: LayerNorm::load(vb.pp("decoder_norm"), dd, eps)?,
            mlm_fc: Linear::load(vb.pp("mlm_layer").pp("fc"), dd, d, true)?,
            // torch's default eps: the official MlmLayer builds a plain nn.LayerNorm.
            mlm_ln: LayerNorm::load(vb.pp("mlm_layer").pp("ln"), d, 1e-5)?,
            mlm_bias: vb.pp("mlm_layer").get((1, 1, v), "bias")?,
            fake_class_label: cfg.fake_class_label() as u32,
            mask_token_label: cfg.mask_token_label() as u32,
            codebook: cfg.codebook_size(),
        })
    }

    /// The sequence ids: the fake class label, then the tokens with masked ones replaced.
    fn sequence_ids(&self, tokens: &Tokens) -> Result<Tensor> {
        let (b, n) = tokens.ids.dims2()?;
        let ids = tokens.ids.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let mut out = Vec::with_capacity(b * (n + 1));
        for (row, m) in ids.iter().zip(&tokens.masked) {
            out.push(self.fake_class_label);
            out.extend(
                row.iter()
                    .zip(m)
                    .map(|(&t, &h)| if h { self.mask_token_label } else { t }),
            );
        }
        Ok(Tensor::from_vec(out, (b, n + 1), tokens.ids.device())?)
    }

    /// The encoder: embedding of the kept positions, blocks, final norm — `[B, T, D]`.
    pub fn encode(&self, tokens: &Tokens, mode: Mode) -> Result<Tensor> {
        let seq = self.sequence_ids(tokens)?;
        let (b, s) = seq.dims2()?;
        let d = self.word_embeddings.dim(1)?;
        let dev = seq.device();
        let t = tokens.keep[0].len();
        anyhow::ensure!(
            tokens.keep.iter().all(|k| k.len() == t),
            "every image of a batch must keep the same number of tokens"
        );
        // Gather only the kept positions' ids and position rows.
        let keep: Vec<u32> = tokens.keep.iter().flatten().copied().collect();
        let keep_t = Tensor::from_vec(keep, (b, t), dev)?;
        let kept_ids = seq.gather(&keep_t, 1)?;
        let words = self
            .word_embeddings
            .index_select(&kept_ids.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let pos = self
            .position_embeddings
            .narrow(0, 0, s)?
            .index_select(&keep_t.flatten_all()?, 0)?
            .reshape((b, t, d))?;
        let mut x = self.emb_norm.forward(&(words + pos)?, mode)?;
        for blk in &self.blocks {
            x = blk.forward(&x, mode)?;
        }
        self.norm.forward(&x, mode)
    }

    /// The decoder and MLM head: logits `[B, N + 1, vocab]` from the encoder output.
    pub fn decode(&self, latent: &Tensor, tokens: &Tokens, mode: Mode) -> Result<Tensor> {
        let x = self.decoder_embed.forward(latent)?;
        let (b, _, dd) = x.dims3()?;
        let n = tokens.masked[0].len();
        // Source row of every position: its rank among the kept positions if it is kept and not
        // masked, else 0 (the decoded class token, `pad_with_cls_token`).
        let mut src = Vec::with_capacity(b * (n + 1));
        for (keep, masked) in tokens.keep.iter().zip(&tokens.masked) {
            let mut rank = vec![0u32; n + 1];
            for (r, &p) in keep.iter().enumerate() {
                rank[p as usize] = r as u32;
            }
            let mut kept = vec![false; n + 1];
            for &p in keep {
                kept[p as usize] = true;
            }
            src.push(0);
            for (i, &m) in masked.iter().enumerate() {
                anyhow::ensure!(m || kept[i + 1], "token {i} is dropped but not masked");
                src.push(if m { 0 } else { rank[i + 1] });
            }
        }
        let idx = Tensor::from_vec(src, (b, n + 1, 1), x.device())?
            .broadcast_as((b, n + 1, dd))?
            .contiguous()?;
        let padded = x.contiguous()?.gather(&idx, 1)?;
        let mut h = padded.broadcast_add(&self.decoder_pos_embed_learned)?;
        for blk in &self.decoder_blocks {
            h = blk.forward(&h, mode)?;
        }
        let h = self.decoder_norm.forward(&h, mode)?;
        let m = self
            .mlm_ln
            .forward(&Activation::Gelu.forward(&self.mlm_fc.forward(&h)?)?, mode)?;
        let (_, s, d) = m.dims3()?;
        let logits = m
            .reshape((b * s, d))?
            .matmul(&self.word_embeddings.detach().t()?)?
            .reshape((b, s, ()))?;
        Ok(logits.broadcast_add(&self.mlm_bias)?)
    }

    /// Size of the codebook (the first logits).
    pub fn codebook(&self) -> usize {
        self.codebook
    }
    pub fn mask_token_label(&self) -> u32 {
        self.mask_token_label
    }
}

/// Every position kept (inference: nothing dropped).
pub fn keep_all(b: usize, n: usize) -> Vec<Vec<u32>> {
    vec![(0..=n as u32).collect(); b]
}

/// Label-smoothed cross-entropy of `logits` (`[B, N, V]`, only the first `codebook` entries
/// count) toward `targets` (`[B, N]` u32), averaged over the positions where `weight` (`[B, N]`
/// f32) is 1 — `LabelSmoothingCrossEntropy` + `forward_loss` of the official code.
pub fn masked_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weight: &Tensor,
    codebook: usize,
    smoothing: f64,
) -> Result<Tensor> {
    let lp = candle_nn::ops::log_softmax(&logits.narrow(2, 0, codebook)?.contiguous()?, 2)?;
    let nll = lp
        .gather(
            &targets.to_dtype(DType::U32)?.unsqueeze(2)?.contiguous()?,
            2,
        )?
        .squeeze(2)?
        .neg()?;
    let smooth = lp.mean(2)?.neg()?;
    let per = ((nll * (1.0 - smoothing))? + (smooth * smoothing)?)?;
    let denom = weight.sum_all()?.to_scalar::<f32>()?;
    anyhow::ensure!(denom > 0.0, "no masked token to compute the loss on");
    Ok(((per * weight)?.sum_all()? / denom as f64)?)
}

/// `[B, N]` f32 of the masked flags.
pub fn mask_tensor(masked: &[Vec<bool>], device: &Device) -> Result<Tensor> {
    let b = masked.len();
    let n = masked[0].len();
    let v: Vec<f32> = masked
        .iter()
        .flat_map(|m| m.iter().map(|&h| if h { 1.0 } else { 0.0 }))
        .collect();
    Ok(Tensor::from_vec(v, (b, n), device)?)
}
