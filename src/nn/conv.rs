//! Convolutional building blocks (the VQ tokenizer's; Palette's UNet will share them): 2-D
//! convolution with optional bias, GroupNorm (`group_norm.rs`), SiLU,
//! nearest 2× upsampling and 2× average pooling. Every op here has a backward pass in candle on
//! CPU (checked by `tests` below).

use anyhow::Result;
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// `torch.nn.Conv2d` with square kernel, symmetric zero padding and optional bias.
#[derive(Clone, Debug)]
pub struct Conv2d {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        vb: VarBuilder,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = vb.get((cout, cin, kernel, kernel), "weight")?;
        let bias = if bias {
            Some(vb.get(cout, "bias")?)
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            stride,
            padding,
        })
    }

    /// One op with its bias for f32 on CPU (Winograd or im2col + GEMM, fast backward), candle's
    /// convolution elsewhere.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.device().is_cpu() && x.dtype() == candle_core::DType::F32 {
            let b = self.bias.as_ref();
            return Ok(super::im2col::conv2d(
                x,
                &self.weight,
                b,
                self.stride,
                self.padding,
            )?);
        }
        let y = x.conv2d(&self.weight, self.padding, self.stride, 1, 1)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(&b.reshape((1, b.dim(0)?, 1, 1))?)?,
            None => y,
        })
    }
}

pub use super::group_norm::GroupNorm;

/// `x · σ(x)` (swish).
pub fn silu(x: &Tensor) -> Result<Tensor> {
    Ok(x.silu()?)
}

/// Nearest-neighbour 2× upsampling (`interpolate(scale_factor=2, mode="nearest")`).
pub fn upsample2x(x: &Tensor) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    Ok(x.upsample_nearest2d(2 * h, 2 * w)?)
}

/// 2×2 average pooling with stride 2 (`avg_pool2d(kernel_size=2, stride=2)`).
pub fn avg_pool2x(x: &Tensor) -> Result<Tensor> {
    Ok(x.avg_pool2d(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Every op of this file passes gradients to its input and to its parameters.
    #[test]
    fn conv_groupnorm_silu_resampling_backpropagate() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &dev).unwrap()).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.2, (4, 4, 3, 3), &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.2, 4, &dev).unwrap()).unwrap();
        let gw = Var::from_tensor(&Tensor::randn(1f32, 0.1, 4, &dev).unwrap()).unwrap();
        let gb = Var::from_tensor(&Tensor::randn(0f32, 0.1, 4, &dev).unwrap()).unwrap();
        let conv = Conv2d {
            weight: w.as_tensor().clone(),
            bias: Some(b.as_tensor().clone()),
            stride: 1,
            padding: 1,
        };
        let gn = GroupNorm {
            weight: gw.as_tensor().clone(),
            bias: gb.as_tensor().clone(),
            groups: 2,
            eps: 1e-6,
        };
        let y = avg_pool2x(
            &upsample2x(
                &silu(&gn.forward(&conv.forward(x.as_tensor()).unwrap()).unwrap()).unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        for v in [&x, &w, &b, &gw, &gb] {
            let g = grads.get(v.as_tensor()).expect("gradient");
            let n = g
                .abs()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(n > 0.0 && n.is_finite());
        }
    }
}
