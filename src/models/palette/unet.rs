//! Palette's denoising network: the guided-diffusion UNet as the fork's
//! `models/guided_diffusion_modules/unet.py` builds it (scale-shift norm, residual blocks that
//! resample, legacy-order attention), with its module names (`cond_embed.0`,
//! `input_blocks.N.M.in_layers.2`, …).
//!
//! The encoder the paper's loss compares is every input block's output and the middle block's
//! (13 maps for the Places2 network), returned by [`UNet::features`].

use super::PaletteConfig;
use crate::nn::conv::{avg_pool2x, silu, upsample2x, Conv2d, GroupNorm};
use crate::nn::{Linear, Mode};
use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// GroupNorm32: 32 groups, torch's eps.
const GROUPS: usize = 32;
const GN_EPS: f64 = 1e-5;

fn norm(vb: VarBuilder, ch: usize) -> Result<GroupNorm> {
    GroupNorm::load(vb, GROUPS, ch, GN_EPS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resample {
    None,
    Up,
    Down,
}

/// `ResBlock` with `use_scale_shift_norm=True`: the time embedding gives a scale and a shift
/// applied after the second GroupNorm.
#[derive(Debug)]
pub struct ResBlock {
    in_norm: GroupNorm,
    in_conv: Conv2d,
    emb: Linear,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    skip: Option<Conv2d>,
    resample: Resample,
}

impl ResBlock {
    fn new(
        vb: VarBuilder,
        ch: usize,
        out: usize,
        emb_dim: usize,
        resample: Resample,
    ) -> Result<Self> {
        Ok(Self {
            in_norm: norm(vb.pp("in_layers.0"), ch)?,
            in_conv: Conv2d::load(vb.pp("in_layers.2"), ch, out, 3, 1, 1, true)?,
            emb: Linear::load(vb.pp("emb_layers.1"), emb_dim, 2 * out, true)?,
            out_norm: norm(vb.pp("out_layers.0"), out)?,
            out_conv: Conv2d::load(vb.pp("out_layers.3"), out, out, 3, 1, 1, true)?,
            skip: if out == ch {
                None
            } else {
                Some(Conv2d::load(
                    vb.pp("skip_connection"),
                    ch,
                    out,
                    1,
                    1,
                    0,
                    true,
                )?)
            },
            resample,
        })
    }

    fn forward(&self, x: &Tensor, emb: &Tensor) -> Result<Tensor> {
        let h = self.in_norm.forward_silu(x)?;
        let (h, x) = match self.resample {
            Resample::None => (h, x.clone()),
            Resample::Up => (upsample2x(&h)?, upsample2x(x)?),
            Resample::Down => (avg_pool2x(&h)?, avg_pool2x(x)?),
        };
        let h = self.in_conv.forward(&h)?;
        // The scale-shift norm: `[B, 2C]`, each channel's scale, then its shift.
        let e = self.emb.forward(&silu(emb)?)?;
        let h = self.out_norm.forward_modulated_silu(&h, &e)?;
        // Dropout is 0 in every configuration this family accepts (see the config check).
        let h = self.out_conv.forward(&h)?;
        let skip = match &self.skip {
            Some(c) => c.forward(&x)?,
            None => x,
        };
        Ok((skip + h)?)
    }
}

/// Spatial self-attention (`AttentionBlock` with `QKVAttentionLegacy`): a 1×1 `qkv`
/// convolution, heads split as `[B·H, 3·c, T]`, both q and k scaled by c^(−1/4), a 1×1
/// `proj_out`, and the residual.
#[derive(Debug)]
pub struct AttentionBlock {
    norm: GroupNorm,
    qkv_w: Tensor,
    qkv_b: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
    heads: usize,
}

impl AttentionBlock {
    fn new(vb: VarBuilder, ch: usize, heads: usize) -> Result<Self> {
        Ok(Self {
            norm: norm(vb.pp("norm"), ch)?,
            qkv_w: vb.get((3 * ch, ch, 1), "qkv.weight")?,
            qkv_b: vb.get(3 * ch, "qkv.bias")?,
            proj_w: vb.get((ch, ch, 1), "proj_out.weight")?,
            proj_b: vb.get(ch, "proj_out.bias")?,
            heads,
        })
    }

    /// `conv1d(x, w, k=1) + b` over `[B, Cin, T]`.
    fn pointwise(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
        let (bsz, _, _) = x.dims3()?;
        let (o, i, _) = w.dims3()?;
        let w = w.reshape((o, i))?.unsqueeze(0)?.broadcast_as((bsz, o, i))?;
        Ok(w.matmul(x)?.broadcast_add(&b.reshape((1, o, 1))?)?)
    }

    fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let t = h * w;
        let qkv = Self::pointwise(
            &self.norm.forward(x)?.reshape((b, c, t))?,
            &self.qkv_w,
            &self.qkv_b,
        )?;
        let ch = c / self.heads;
        let qkv = qkv.reshape((b * self.heads, 3 * ch, t))?;
        let scale = 1.0 / (ch as f64).sqrt().sqrt();
        let q = (qkv.narrow(1, 0, ch)? * scale)?;
        let k = (qkv.narrow(1, ch, ch)? * scale)?;
        let v = qkv.narrow(1, 2 * ch, ch)?;
        // a[b, c, t] = Σ_s softmax_s(Σ_c q[b, c, t] k[b, c, s]) v[b, c, s], one op on CPU.
        let a =
            crate::nn::attention::attention_channels_first(&q, &k, &v, mode)?.reshape((b, c, t))?;
        let out = Self::pointwise(&a, &self.proj_w, &self.proj_b)?;
        Ok((x + out.reshape((b, c, h, w))?)?)
    }
}

/// One layer of an `EmbedSequential`.
#[derive(Debug)]
enum Layer {
    Conv(Conv2d),
    Res(ResBlock),
    Attn(AttentionBlock),
}

impl Layer {
    fn forward(&self, x: &Tensor, emb: &Tensor, mode: Mode) -> Result<Tensor> {
        match self {
            Layer::Conv(c) => c.forward(x),
            Layer::Res(r) => r.forward(x, emb),
            Layer::Attn(a) => a.forward(x, mode),
        }
    }
}

type Seq = Vec<Layer>;

fn run(seq: &Seq, x: &Tensor, emb: &Tensor, mode: Mode) -> Result<Tensor> {
    let mut h = x.clone();
    for l in seq {
        h = l.forward(&h, emb, mode)?;
    }
    Ok(h)
}

/// The UNet (`denoise_fn` of Palette's `Network`).
#[derive(Debug)]
pub struct UNet {
    cond_embed: (Linear, Linear),
    input_blocks: Vec<Seq>,
    middle_block: Seq,
    output_blocks: Vec<Seq>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    inner: usize,
}

impl UNet {
    pub fn new(vb: VarBuilder, cfg: &PaletteConfig) -> Result<Self> {
        let u = &cfg.unet;
        let inner = u.inner_channel;
        let emb_dim = cfg.emb_dim();
        let attn = |vb: VarBuilder, ch: usize| AttentionBlock::new(vb, ch, cfg.heads(ch));
        let mut ch = u.channel_mults[0] * inner;
        let input_ch = ch;
        let ib = vb.pp("input_blocks");
        let mut input_blocks = vec![vec![Layer::Conv(Conv2d::load(
            ib.pp("0.0"),
            u.in_channel,
            ch,
            3,
            1,
            1,
            true,
        )?)]];
        let mut chans = vec![ch];
        let mut ds = 1;
        let levels = u.channel_mults.len();
        for (level, &mult) in u.channel_mults.iter().enumerate() {
            for _ in 0..u.res_blocks {
                let vbb = ib.pp(input_blocks.len().to_string());
                let out = mult * inner;
                let mut layers = vec![Layer::Res(ResBlock::new(
                    vbb.pp("0"),
                    ch,
                    out,
                    emb_dim,
                    Resample::None,
                )?)];
                ch = out;
                if u.attn_res.contains(&ds) {
                    layers.push(Layer::Attn(attn(vbb.pp("1"), ch)?));
                }
                input_blocks.push(layers);
                chans.push(ch);
            }
            if level + 1 != levels {
                let vbb = ib.pp(input_blocks.len().to_string());
                input_blocks.push(vec![Layer::Res(ResBlock::new(
                    vbb.pp("0"),
                    ch,
                    ch,
                    emb_dim,
                    Resample::Down,
                )?)]);
                chans.push(ch);
                ds *= 2;
            }
        }
        let mb = vb.pp("middle_block");
        let middle_block = vec![
            Layer::Res(ResBlock::new(mb.pp("0"), ch, ch, emb_dim, Resample::None)?),
            Layer::Attn(attn(mb.pp("1"), ch)?),
            Layer::Res(ResBlock::new(mb.pp("2"), ch, ch, emb_dim, Resample::None)?),
        ];
        let ob = vb.pp("output_blocks");
        let mut output_blocks = Vec::new();
        for (level, &mult) in u.channel_mults.iter().enumerate().rev() {
            for i in 0..=u.res_blocks {
                let vbb = ob.pp(output_blocks.len().to_string());
                let ich = chans.pop().expect("one skip per input block");
                let out = inner * mult;
                let mut layers = vec![Layer::Res(ResBlock::new(
                    vbb.pp("0"),
                    ch + ich,
                    out,
                    emb_dim,
                    Resample::None,
                )?)];
                ch = out;
                if u.attn_res.contains(&ds) {
                    layers.push(Layer::Attn(attn(vbb.pp(layers.len().to_string()), ch)?));
                }
                if level > 0 && i == u.res_blocks {
                    layers.push(Layer::Res(ResBlock::new(
                        vbb.pp(layers.len().to_string()),
                        ch,
                        ch,
                        emb_dim,
                        Resample::Up,
                    )?));
                    ds /= 2;
                }
                output_blocks.push(layers);
            }
        }
        Ok(Self {
            cond_embed: (
                Linear::load(vb.pp("cond_embed.0"), inner, emb_dim, true)?,
                Linear::load(vb.pp("cond_embed.2"), emb_dim, emb_dim, true)?,
            ),
            input_blocks,
            middle_block,
            output_blocks,
            out_norm: norm(vb.pp("out.0"), ch)?,
            out_conv: Conv2d::load(vb.pp("out.2"), input_ch, u.out_channel, 3, 1, 1, true)?,
            inner,
        })
    }

    /// The time embedding of noise levels `gammas` `[B]`.
    fn embed(&self, gammas: &Tensor) -> Result<Tensor> {
        let e = crate::nn::timestep::sinusoidal(gammas, self.inner, 10000.0)?;
        self.cond_embed
            .1
            .forward(&silu(&self.cond_embed.0.forward(&e)?)?)
    }

    /// The encoder's maps: every input block's output, then the middle block's (Palette's
    /// `return_feat=True`). `x` is `[B, 6, S, S]` (condition image, noisy image).
    pub fn features(&self, x: &Tensor, gammas: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        self.features_with(x, &self.embed(gammas)?, mode)
    }

    fn features_with(&self, x: &Tensor, emb: &Tensor, mode: Mode) -> Result<Vec<Tensor>> {
        let mut hs = Vec::with_capacity(self.input_blocks.len() + 1);
        let mut h = x.clone();
        for seq in &self.input_blocks {
            h = run(seq, &h, emb, mode)?;
            hs.push(h.clone());
        }
        hs.push(run(&self.middle_block, &h, emb, mode)?);
        Ok(hs)
    }

    /// The decoder from the encoder's maps (as [`UNet::features`] gives them): the middle
    /// block's output, then the input blocks' outputs as skips, last first. The noise prediction
    /// `[B, 3, S, S]`.
    pub fn decode(&self, maps: Vec<Tensor>, gammas: &Tensor, mode: Mode) -> Result<Tensor> {
        self.decode_with(maps, &self.embed(gammas)?, mode)
    }

    /// Each skip is dropped once used, as the official decoder's `hs.pop()`.
    fn decode_with(&self, mut maps: Vec<Tensor>, emb: &Tensor, mode: Mode) -> Result<Tensor> {
        anyhow::ensure!(
            maps.len() == self.input_blocks.len() + 1,
            "the decoder needs {} maps, got {}",
            self.input_blocks.len() + 1,
            maps.len()
        );
        let mut h = maps.pop().expect("checked length");
        for seq in &self.output_blocks {
            let skip = maps.pop().expect("one skip per output block");
            h = run(seq, &Tensor::cat(&[&h, &skip], 1)?, emb, mode)?;
        }
        self.out_conv.forward(&self.out_norm.forward_silu(&h)?)
    }

    /// The noise prediction `[B, 3, S, S]`.
    pub fn forward(&self, x: &Tensor, gammas: &Tensor, mode: Mode) -> Result<Tensor> {
        let emb = self.embed(gammas)?;
        let maps = self.features_with(x, &emb, mode)?;
        self.decode_with(maps, &emb, mode)
    }
}
