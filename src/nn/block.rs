//! The pre-norm transformer block of ViT-style models (timm's `Block`: `x + attn(norm1(x))`, then
//! `x + mlp(norm2(x))`), shared by the families; each family loads it under its own names.

use super::{Activation, LayerNorm, Linear, Mode, SelfAttention};
use anyhow::Result;
use candle_core::Tensor;

/// Two linear layers with an activation between (timm's `Mlp`).
#[derive(Clone, Debug)]
pub struct Mlp {
    pub fc1: Linear,
    pub fc2: Linear,
    pub act: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.fc2.forward(&self.act.forward(&self.fc1.forward(x)?)?)
    }
}

/// A pre-norm block: attention and MLP, each with a residual.
#[derive(Clone, Debug)]
pub struct PreNormBlock {
    pub norm1: LayerNorm,
    pub attn: SelfAttention,
    pub norm2: LayerNorm,
    pub mlp: Mlp,
}

impl PreNormBlock {
    /// `[B, T, H]` → `[B, T, H]`, the tokens handled as `[B·T, H]` rows inside (one reshape each
    /// way instead of a pair around every linear layer).
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let x = x.reshape((b * t, d))?;
        let h = (self
            .attn
            .forward_rows(&self.norm1.forward(&x, mode)?, b, t, mode)?
            + x)?;
        let y = (self.mlp.forward(&self.norm2.forward(&h, mode)?)? + h)?;
        Ok(y.reshape((b, t, d))?)
    }
}

impl SelfAttention {
    /// From one fused `qkv` projection (`[3·H, H]`, rows q, k, v; timm's layout).
    pub fn from_fused(qkv: Linear, out: Linear, heads: usize) -> Result<Self> {
        let h = qkv.weight.dim(0)? / 3;
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear {
                weight: qkv.weight.narrow(0, i * h, h)?,
                bias: match &qkv.bias {
                    Some(b) => Some(b.narrow(0, i * h, h)?),
                    None => None,
                },
            })
        };
        Ok(Self::new(part(0)?, part(1)?, part(2)?, out, heads))
    }
}
