//! The candle backend of the staged InceptionV3 ([`super::net`]): NCHW tensors on any device;
//! 1 × 1 convolutions as batched matmuls, the others through candle's conv2d.

use super::net::{Backend, Folded};
use anyhow::Result;
use candle_core::{Device, Tensor};

/// A folded convolution as tensors on the backend's device.
pub struct TensorConv {
    w: Tensor,
    b: Tensor,
    stride: usize,
    pad: (usize, usize),
}

impl TensorConv {
    pub fn new(f: &Folded, device: &Device) -> Result<Self> {
        let [co, ci, kh, kw] = f.dims;
        Ok(Self {
            w: Tensor::from_vec(f.w.clone(), (co, ci, kh, kw), device)?,
            b: Tensor::from_vec(f.b.clone(), co, device)?,
            stride: f.stride,
            pad: f.pad,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (co, _, kh, kw) = self.w.dims4()?;
        let y = if kh == 1 && kw == 1 && self.stride == 1 {
            conv1x1(x, &self.w.reshape((co, ()))?)?
        } else {
            let (ph, pw) = self.pad;
            let (x, p) = if ph == pw {
                (x.clone(), ph)
            } else {
                (x.pad_with_zeros(2, ph, ph)?.pad_with_zeros(3, pw, pw)?, 0)
            };
            x.conv2d(&self.w, p, self.stride, 1, 1)?
        };
        Ok(y.broadcast_add(&self.b.reshape((1, co, 1, 1))?)?.relu()?)
    }
}

/// 1 × 1 convolution of `[B, C, H, W]` with `[Co, C]` as one batched matmul.
fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let co = w.dim(0)?;
    let y = w.broadcast_left(b)?.matmul(&x.reshape((b, c, h * wd))?)?;
    Ok(y.reshape((b, co, h, wd))?)
}

/// candle tensors as a backend of the staged description.
pub struct CandleBackend;

impl Backend for CandleBackend {
    type Act = Tensor;
    type Conv = TensorConv;
    fn conv(&self, c: &TensorConv, x: &Tensor) -> Result<Tensor> {
        c.forward(x)
    }
    fn fused(&self, c: &TensorConv, splits: &[usize], x: &Tensor) -> Result<Vec<Tensor>> {
        let y = c.forward(x)?;
        let mut out = vec![];
        let mut start = 0;
        for &n in splits {
            out.push(y.narrow(1, start, n)?);
            start += n;
        }
        Ok(out)
    }
    fn cat(&self, parts: &[&Tensor]) -> Result<Tensor> {
        Ok(Tensor::cat(parts, 1)?)
    }
    fn pool_same(&self, x: &Tensor, max: bool, count_pad: bool) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
        if max {
            // The input is non-negative (after ReLU), so zero padding is exact.
            return Ok(padded.max_pool2d_with_stride(3, 1)?);
        }
        let avg = padded.avg_pool2d_with_stride(3, 1)?;
        if count_pad {
            return Ok(avg);
        }
        let counts: Vec<f32> = (0..h)
            .flat_map(|i| {
                (0..w).map(move |j| {
                    let rows = 3 - usize::from(i == 0) - usize::from(i + 1 == h);
                    let cols = 3 - usize::from(j == 0) - usize::from(j + 1 == w);
                    9.0 / (rows * cols) as f32
                })
            })
            .collect();
        let scale = Tensor::from_vec(counts, (1, 1, h, w), x.device())?;
        Ok(avg.broadcast_mul(&scale)?)
    }
    fn max_pool_s2(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.max_pool2d_with_stride(3, 2)?)
    }
}
