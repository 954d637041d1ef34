//! The VQ-GAN tokenizer of MAGE as the MAGE fork's taming modules build it (names as in
//! `vqgan_jax_strongaug.ckpt`: `encoder.*`, `decoder.*`, `quantize.embedding.weight`).
//!
//! What the official code does, which is not what its config suggests (ported as the code does
//! it, because the real checkpoint was trained that way):
//! - no attention blocks anywhere (`attn_resolutions` is ignored);
//! - the encoder's convolutions have no bias except `conv_out`; the encoder downsamples by 2×2
//!   average pooling (`resamp_with_conv=False`), the decoder upsamples by nearest 2× + conv;
//! - a residual block that changes the channel count returns `nin_shortcut(h) + h`: its input is
//!   dropped;
//! - no quant_conv / post_quant_conv: the encoder output goes straight to the nearest-codebook
//!   lookup (`|z|² + |e|² − 2 z·e`, first minimum on ties).

use super::config::DdConfig;
use super::VqConfig;
use crate::nn::conv::{avg_pool2x, upsample2x, Conv2d, GroupNorm};
use anyhow::Result;
use candle_core::{DType, Tensor, D};
use candle_nn::VarBuilder;

const GN_GROUPS: usize = 32;
const GN_EPS: f64 = 1e-6;

/// taming's `ResnetBlock` without time embedding.
struct ResnetBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    norm2: GroupNorm,
    conv2: Conv2d,
    nin_shortcut: Option<Conv2d>,
}

impl ResnetBlock {
    fn new(vb: VarBuilder, cin: usize, cout: usize) -> Result<Self> {
        Ok(Self {
            norm1: GroupNorm::load(vb.pp("norm1"), GN_GROUPS, cin, GN_EPS)?,
            conv1: Conv2d::load(vb.pp("conv1"), cin, cout, 3, 1, 1, false)?,
            norm2: GroupNorm::load(vb.pp("norm2"), GN_GROUPS, cout, GN_EPS)?,
            conv2: Conv2d::load(vb.pp("conv2"), cout, cout, 3, 1, 1, false)?,
            nin_shortcut: if cin != cout {
                Some(Conv2d::load(
                    vb.pp("nin_shortcut"),
                    cout,
                    cout,
                    1,
                    1,
                    0,
                    false,
                )?)
            } else {
                None
            },
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.conv1.forward(&self.norm1.forward_silu(x)?)?;
        let h = self.conv2.forward(&self.norm2.forward_silu(&h)?)?;
        Ok(match &self.nin_shortcut {
            // The official block's quirk: the shortcut is taken from `h`, not from `x`.
            Some(s) => (s.forward(&h)? + h)?,
            None => (x + h)?,
        })
    }
}

/// The encoder: pixels in [0, 1] → `[B, z_channels, H/f, W/f]`.
pub struct Encoder {
    conv_in: Conv2d,
    down: Vec<Vec<ResnetBlock>>,
    mid: [ResnetBlock; 2],
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(vb: VarBuilder, dd: &DdConfig) -> Result<Self> {
        let ch = dd.ch;
        let mut block_in = ch;
        let mut down = Vec::new();
        for (i, m) in dd.ch_mult.iter().enumerate() {
            let block_out = ch * m;
            let mut blocks = Vec::new();
            for j in 0..dd.num_res_blocks {
                blocks.push(ResnetBlock::new(
                    vb.pp("down").pp(i).pp("block").pp(j),
                    block_in,
                    block_out,
                )?);
                block_in = block_out;
            }
            down.push(blocks);
        }
        Ok(Self {
            conv_in: Conv2d::load(vb.pp("conv_in"), dd.in_channels, ch, 3, 1, 1, false)?,
            down,
            mid: [
                ResnetBlock::new(vb.pp("mid").pp("block_1"), block_in, block_in)?,
                ResnetBlock::new(vb.pp("mid").pp("block_2"), block_in, block_in)?,
            ],
            norm_out: GroupNorm::load(vb.pp("norm_out"), GN_GROUPS, block_in, GN_EPS)?,
            conv_out: Conv2d::load(vb.pp("conv_out"), block_in, dd.z_channels, 1, 1, 0, true)?,
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(x)?;
        let last = self.down.len() - 1;
        for (i, blocks) in self.down.iter().enumerate() {
            for b in blocks {
                h = b.forward(&h)?;
            }
            if i != last {
                h = avg_pool2x(&h)?;
            }
        }
        for b in &self.mid {
            h = b.forward(&h)?;
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// The decoder: quantised latents → pixels (≈ [0, 1]; not clamped).
pub struct Decoder {
    conv_in: Conv2d,
    mid: [ResnetBlock; 2],
    /// `up[i]`: level i's blocks and (for i > 0) its upsampling conv; run from the last level.
    up: Vec<(Vec<ResnetBlock>, Option<Conv2d>)>,
    norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(vb: VarBuilder, dd: &DdConfig) -> Result<Self> {
        let ch = dd.ch;
        let levels = dd.ch_mult.len();
        let mut block_in = ch * dd.ch_mult[levels - 1];
        let conv_in = Conv2d::load(vb.pp("conv_in"), dd.z_channels, block_in, 3, 1, 1, true)?;
        let mid = [
            ResnetBlock::new(vb.pp("mid").pp("block_1"), block_in, block_in)?,
            ResnetBlock::new(vb.pp("mid").pp("block_2"), block_in, block_in)?,
        ];
        let mut up: Vec<(Vec<ResnetBlock>, Option<Conv2d>)> = Vec::new();
        for i in (0..levels).rev() {
            let block_out = ch * dd.ch_mult[i];
            let mut blocks = Vec::new();
            for j in 0..dd.num_res_blocks {
                blocks.push(ResnetBlock::new(
                    vb.pp("up").pp(i).pp("block").pp(j),
                    block_in,
                    block_out,
                )?);
                block_in = block_out;
            }
            let upsample = if i != 0 {
                Some(Conv2d::load(
                    vb.pp("up").pp(i).pp("upsample").pp("conv"),
                    block_in,
                    block_in,
                    3,
                    1,
                    1,
                    true,
                )?)
            } else {
                None
            };
            up.insert(0, (blocks, upsample));
        }
        Ok(Self {
            conv_in,
            mid,
            up,
            norm_out: GroupNorm::load(vb.pp("norm_out"), GN_GROUPS, block_in, GN_EPS)?,
            conv_out: Conv2d::load(vb.pp("conv_out"), block_in, dd.out_ch, 3, 1, 1, true)?,
        })
    }

    pub fn forward(&self, z: &Tensor) -> Result<Tensor> {
        let mut h = self.conv_in.forward(z)?;
        for b in &self.mid {
            h = b.forward(&h)?;
        }
        for (blocks, upsample) in self.up.iter().rev() {
            for b in blocks {
                h = b.forward(&h)?;
            }
            if let Some(conv) = upsample {
                h = conv.forward(&upsample2x(&h)?)?;
            }
        }
        self.conv_out.forward(&self.norm_out.forward_silu(&h)?)
    }
}

/// The tokenizer: encoder, codebook, decoder.
pub struct VqGan {
    pub encoder: Encoder,
    pub decoder: Decoder,
    /// `quantize.embedding.weight`, `[n_embed, embed_dim]`.
    pub codebook: Tensor,
}

/// What quantising an encoder output gives.
pub struct Quantised {
    /// `[B, N]` u32 token ids, row-major over the token grid.
    pub tokens: Tensor,
    /// `[B, C, h, w]` codebook vectors (straight-through: gradients pass to the encoder output).
    pub z_q: Tensor,
    /// The encoder output.
    pub z: Tensor,
}

impl VqGan {
    pub fn new(vb: VarBuilder, cfg: &VqConfig) -> Result<Self> {
        Ok(Self {
            encoder: Encoder::new(vb.pp("encoder"), &cfg.ddconfig)?,
            decoder: Decoder::new(vb.pp("decoder"), &cfg.ddconfig)?,
            codebook: vb
                .pp("quantize")
                .pp("embedding")
                .get((cfg.n_embed, cfg.embed_dim), "weight")?,
        })
    }

    /// Nearest codebook entries of `z` (`[B, C, h, w]`).
    pub fn quantise(&self, z: &Tensor) -> Result<Quantised> {
        let (b, c, h, w) = z.dims4()?;
        let flat = z.permute((0, 2, 3, 1))?.reshape((b * h * w, c))?;
        let e = &self.codebook;
        let d = flat
            .sqr()?
            .sum_keepdim(1)?
            .broadcast_add(&e.sqr()?.sum(1)?.unsqueeze(0)?)?
            .sub(&(flat.matmul(&e.t()?)? * 2.0)?)?;
        let tokens = d.argmin(D::Minus1)?.to_dtype(DType::U32)?;
        let zq = e.index_select(&tokens, 0)?;
        // Straight-through estimator: z + (z_q − z).detach().
        let zq = (&flat + (zq - &flat)?.detach())?;
        let z_q = zq
            .reshape((b, h, w, c))?
            .permute((0, 3, 1, 2))?
            .contiguous()?;
        Ok(Quantised {
            tokens: tokens.reshape((b, h * w))?,
            z_q,
            z: z.clone(),
        })
    }

    /// Pixels → quantised tokens.
    pub fn encode(&self, pixels: &Tensor) -> Result<Quantised> {
        self.quantise(&self.encoder.forward(pixels)?)
    }

    /// Token ids `[B, N]` → codebook vectors `[B, C, g, g]`.
    pub fn lookup(&self, tokens: &Tensor) -> Result<Tensor> {
        let (b, n) = tokens.dims2()?;
        let g = (n as f64).sqrt() as usize;
        let c = self.codebook.dim(1)?;
        Ok(self
            .codebook
            .index_select(&tokens.flatten_all()?, 0)?
            .reshape((b, g, g, c))?
            .permute((0, 3, 1, 2))?
            .contiguous()?)
    }

    /// Token ids → pixels.
    pub fn decode_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.lookup(tokens)?)
    }

    /// The taming VQ training loss (legacy form, as `VectorQuantizer2(legacy=True)` computes
    /// it): reconstruction MSE + `mean((sg(z_q) − z)²) + β · mean((z_q − sg(z))²)` with β = 0.25.
    pub fn training_loss(&self, pixels: &Tensor) -> Result<VqLoss> {
        let z = self.encoder.forward(pixels)?;
        let q = self.quantise(&z)?;
        let zq_hard = self.lookup(&q.tokens)?;
        let commit = crate::nn::mse(&zq_hard.detach(), &z)?;
        let codebook = crate::nn::mse(&zq_hard, &z.detach())?;
        let vq = (commit + (codebook * 0.25)?)?;
        let rec = crate::nn::mse(&self.decoder.forward(&q.z_q)?, pixels)?;
        Ok(VqLoss {
            total: (&rec + &vq)?,
            rec,
            vq,
            tokens: q.tokens,
            z,
        })
    }
}

/// One tokenizer training step's losses and what it quantised.
pub struct VqLoss {
    pub total: Tensor,
    pub rec: Tensor,
    pub vq: Tensor,
    /// `[B, N]` token ids.
    pub tokens: Tensor,
    /// The encoder output `[B, C, h, w]`.
    pub z: Tensor,
}
