//! Differentiable building blocks shared by the model families.
//!
//! candle's fused LayerNorm and softmax kernels record no backward pass: a model trained through
//! them silently leaves its upstream weights without gradients (candle #2168, #3011). Every layer
//! here therefore takes a [`Mode`]: `Train` composes the op from primitive tensor ops that
//! backpropagate, `Infer` uses the fast fused kernels. Frozen teachers and evaluation use `Infer`.

pub mod attention;
pub mod block;
pub mod conv;
pub mod fused;
pub mod gemm;
pub mod group_norm;
pub mod im2col;
pub mod init;
pub mod loss;
pub mod simd;
pub mod timestep;
pub mod winograd;

use anyhow::Result;
use candle_core::{DType, Module, Tensor, D};
use candle_nn::VarBuilder;

/// Whether a forward pass must be differentiable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Gradients must reach every weight: primitive, differentiable ops only.
    Train,
    /// No gradients needed: fused kernels where candle has them.
    Infer,
}

/// `y = x Wᵀ + b` over the last dimension; leading dimensions are flattened into one matmul.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    /// A weight that tracks no gradient (a frozen model's) is stored transposed: the same
    /// `[out, in]` tensor as a view of a contiguous `[in, out]` copy, so that the `x Wᵀ` of
    /// [`Linear::forward`] hands gemm a contiguous right-hand side, which it multiplies faster
    /// than the transposed view of the checkpoint's layout (docs/speed.md). The products are
    /// the same.
    pub fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, bias: bool) -> Result<Self> {
        let mut l = Self::load_as_stored(vb, in_dim, out_dim, bias)?;
        l.weight = frozen_layout(l.weight)?;
        Ok(l)
    }

    /// In the checkpoint's layout whatever the weight: for projections that are only multiplied
    /// fused with others (attention's q, k and v, see [`SelfAttention`]), where a transposed
    /// copy would be memory spent for nothing.
    pub fn load_as_stored(
        vb: VarBuilder,
        in_dim: usize,
        out_dim: usize,
        bias: bool,
    ) -> Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = if bias {
            Some(vb.get(out_dim, "bias")?)
        } else {
            None
        };
        Ok(Self { weight, bias })
    }

    /// Over the last dimension of `x`; a 2-D `x` (rows) is multiplied as it is, higher ranks
    /// are flattened to rows and back. Each reshape is an edge of the autograd graph, whose
    /// backward pass candle pays with a zero tensor and an add, so blocks keep their tokens as
    /// rows (see [`SelfAttention::forward_rows`]).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if x.rank() == 2 {
            return self.forward_rows(x);
        }
        let dims = x.dims().to_vec();
        let in_dim = *dims.last().expect("rank ≥ 1");
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let y = self.forward_rows(&x.reshape((rows, in_dim))?)?;
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }

    fn forward_rows(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        match &self.bias {
            Some(b) => add_bias(&y, b),
            None => Ok(y),
        }
    }
}

/// `w` (`[out, in]`) as a view of its contiguous transpose when it tracks no gradient; as it is
/// otherwise (a trained variable is updated in place, and must stay the tensor the optimiser
/// holds).
pub fn frozen_layout(w: Tensor) -> Result<Tensor> {
    // A broadcast scalar (the shape recorder's answer, `weights::shapes`) has no layout to fix.
    if w.track_op() || w.rank() != 2 || w.stride().iter().all(|&s| s == 0) {
        return Ok(w);
    }
    if w.device().is_cpu() && w.dtype() == DType::F32 {
        let (rows, cols) = w.dims2()?;
        let t = fused::with_f32(&w, |src| transpose_tiled(src, rows, cols))?;
        return Ok(Tensor::from_vec(t, (cols, rows), w.device())?.t()?);
    }
    Ok(w.t()?.contiguous()?.t()?)
}

/// `[rows, cols]` row-major values as `[cols, rows]` row-major, copied in 32 × 32 tiles: candle's
/// strided copy reads one value per cache line (MAE-base's weights: ≈ 0.3 s of every load).
fn transpose_tiled(src: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    transpose_tiled_into(src, rows, cols, &mut out);
    out
}

/// [`transpose_tiled`] into `out` (`rows · cols` values), on the calling thread.
pub(crate) fn transpose_tiled_into(src: &[f32], rows: usize, cols: usize, out: &mut [f32]) {
    const T: usize = 32;
    let out = &mut out[..rows * cols];
    for r0 in (0..rows).step_by(T) {
        let r1 = (r0 + T).min(rows);
        let block = &src[r0 * cols..r1 * cols];
        for (c, dst) in out.chunks_exact_mut(rows).enumerate() {
            // Column `c` of the tile's rows: 32 reads from lines the tile keeps in L1, one
            // contiguous write.
            for (d, s) in dst[r0..r1].iter_mut().zip(block[c..].iter().step_by(cols)) {
                *d = *s;
            }
        }
    }
}

/// LayerNorm over the last dimension.
#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn load(vb: VarBuilder, dim: usize, eps: f64) -> Result<Self> {
        Ok(Self {
            weight: vb.get(dim, "weight")?,
            bias: vb.get(dim, "bias")?,
            eps,
        })
    }

    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        match mode {
            Mode::Infer => {
                let x = x.contiguous()?;
                Ok(candle_nn::ops::layer_norm(
                    &x,
                    &self.weight,
                    &self.bias,
                    self.eps as f32,
                )?)
            }
            Mode::Train if x.device().is_cpu() && x.dtype() == DType::F32 => {
                Ok(x.contiguous()?.apply_op3(
                    &self.weight.contiguous()?,
                    &self.bias.contiguous()?,
                    fused::LayerNormOp {
                        eps: self.eps as f32,
                    },
                )?)
            }
            Mode::Train => {
                let n = x.dim(D::Minus1)? as f64;
                let mean = (x.sum_keepdim(D::Minus1)? / n)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = (xc.sqr()?.sum_keepdim(D::Minus1)? / n)?;
                let xn = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                Ok(xn.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
            }
        }
    }
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor, mode: Mode) -> Result<Tensor> {
    Ok(match mode {
        Mode::Infer => candle_nn::ops::softmax_last_dim(&x.contiguous()?)?,
        Mode::Train if x.device().is_cpu() && x.dtype() == DType::F32 => {
            x.contiguous()?.apply_op1(fused::SoftmaxOp)?
        }
        Mode::Train => candle_nn::ops::softmax(x, D::Minus1)?,
    })
}

/// Activation functions by their transformers `hidden_act` name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `gelu`: exact, erf-based.
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh`: tanh approximation.
    GeluTanh,
    /// `quick_gelu`: x · σ(1.702 x) (OpenAI CLIP).
    QuickGelu,
    Relu,
}

impl Activation {
    pub fn from_hf(name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Self::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Self::GeluTanh,
            "quick_gelu" => Self::QuickGelu,
            "relu" => Self::Relu,
            other => anyhow::bail!(
                "unsupported hidden_act `{other}` (supported: gelu, gelu_new, gelu_pytorch_tanh, quick_gelu, relu)"
            ),
        })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Gelu if x.device().is_cpu() && x.dtype() == DType::F32 => {
                x.contiguous()?.apply_op1(fused::GeluErfOp)?
            }
            Self::Gelu => x.gelu_erf()?,
            Self::GeluTanh => x.gelu()?,
            Self::QuickGelu => {
                // σ(z) = 1 / (1 + e^{-z}), composed from differentiable primitives.
                let s = ((x * -1.702)?.exp()? + 1.0)?.recip()?;
                (x * s)?
            }
            Self::Relu => x.relu()?,
        })
    }
}

/// Multi-head self-attention over `[B, T, H]` with separate q/k/v/out projections.
#[derive(Clone, Debug)]
pub struct SelfAttention {
    pub q: Linear,
    pub k: Linear,
    pub v: Linear,
    pub out: Linear,
    pub heads: usize,
    /// The fused projection of frozen weights, built on first use.
    frozen_qkv: std::sync::OnceLock<Linear>,
}

impl SelfAttention {
    pub fn new(q: Linear, k: Linear, v: Linear, out: Linear, heads: usize) -> Self {
        Self {
            q,
            k,
            v,
            out,
            heads,
            frozen_qkv: Default::default(),
        }
    }

    /// q, k and v as one projection, the 1/√d scale folded into the query rows.
    fn fused_qkv(&self, scale: f64) -> Result<Linear> {
        let w = Tensor::cat(
            &[&(&self.q.weight * scale)?, &self.k.weight, &self.v.weight],
            0,
        )?;
        let bias = match (&self.q.bias, &self.k.bias, &self.v.bias) {
            (Some(bq), Some(bk), Some(bv)) => Some(Tensor::cat(&[&(bq * scale)?, bk, bv], 0)?),
            _ => None,
        };
        Ok(Linear { weight: w, bias })
    }

    /// q, k and v in one matmul, split into heads with a single copy. Trained weights are fused
    /// on every call (they change, and gradients flow through the fusion); frozen ones once, in
    /// the layout of [`frozen_layout`].
    pub fn forward(&self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let y = self.forward_rows(&x.reshape((b * t, h))?, b, t, mode)?;
        Ok(y.reshape((b, t, h))?)
    }

    /// The same over `b` sequences of `t` tokens given as rows, `[b·t, H]` → `[b·t, H]`: what
    /// a block calls, so that its linear layers need no reshapes.
    pub fn forward_rows(&self, x: &Tensor, b: usize, t: usize, mode: Mode) -> Result<Tensor> {
        let h = x.dim(1)?;
        let hd = h / self.heads;
        let scale = 1.0 / (hd as f64).sqrt();
        let frozen = [&self.q, &self.k, &self.v]
            .iter()
            .all(|l| !l.weight.track_op() && l.bias.as_ref().is_none_or(|b| !b.track_op()));
        let qkv = if frozen {
            if self.frozen_qkv.get().is_none() {
                let mut l = self.fused_qkv(scale)?;
                l.weight = frozen_layout(l.weight)?;
                let _ = self.frozen_qkv.set(l);
            }
            self.frozen_qkv.get().expect("set above").forward(x)?
        } else {
            self.fused_qkv(scale)?.forward(x)?
        };
        let qkv = qkv
            .reshape(vec![b, t, 3, self.heads, hd])?
            .permute(vec![2, 0, 3, 1, 4])?
            .contiguous()?;
        let (q, k, v) = (qkv.get(0)?, qkv.get(1)?, qkv.get(2)?);
        let scores = q.matmul(&k.t()?)?;
        let probs = softmax_last(&scores, mode)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b * t, h))?;
        self.out.forward(&ctx)
    }
}

/// `x + b` over the last dimension, with a fast backward pass on CPU.
pub fn add_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    if x.device().is_cpu() && x.dtype() == DType::F32 {
        Ok(x.contiguous()?
            .apply_op2(&b.contiguous()?, fused::BiasAddOp)?)
    } else {
        Ok(x.broadcast_add(b)?)
    }
}

/// Mean squared error, averaged over all elements (one op on CPU: [`loss::mse`]).
pub fn mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    loss::mse(a, b)
}

/// Per-sample mean squared difference over all non-batch elements, `[B]`.
pub fn per_sample_mse(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a - b)?.sqr()?.flatten_from(1)?.mean(1)?)
}

/// Apply a candle `Module` and convert the error type.
pub fn apply<M: Module>(m: &M, x: &Tensor) -> Result<Tensor> {
    Ok(m.forward(x)?)
}

/// f32 copy of a tensor as a flat Vec.
pub fn to_vec_f32(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    #[test]
    fn train_and_infer_layer_norm_agree_and_train_backpropagates() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 8), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(1f32, 0.1, 8, &dev).unwrap()).unwrap();
        let b = Var::from_tensor(&Tensor::randn(0f32, 0.1, 8, &dev).unwrap()).unwrap();
        let ln = LayerNorm {
            weight: w.as_tensor().clone(),
            bias: b.as_tensor().clone(),
            eps: 1e-6,
        };
        let a = ln.forward(&x, Mode::Train).unwrap();
        let f = ln.forward(&x, Mode::Infer).unwrap();
        let diff = crate::util::max_abs_diff(&a, &f).unwrap();
        assert!(diff < 1e-5, "{diff}");
        let g = a.sqr().unwrap().sum_all().unwrap().backward().unwrap();
        assert!(g.get(w.as_tensor()).is_some());
        assert!(g.get(b.as_tensor()).is_some());
    }

    /// Frozen weights are multiplied from their contiguous transpose, trained ones from the
    /// checkpoint layout: the same products, bit for bit, on the shapes of the tiny and the
    /// base models (and the fused q/k/v of attention, built once when frozen).
    #[test]
    fn frozen_layout_gives_the_same_products() {
        let dev = Device::Cpu;
        for (m, k, n) in [
            (130, 64, 192),
            (133, 768, 3072),
            (197, 3072, 768),
            (5, 16, 48),
        ] {
            let x = Tensor::randn(0f32, 1.0, (2, m, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.1, (n, k), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.1, n, &dev).unwrap();
            let trained = Linear {
                weight: Var::from_tensor(&w).unwrap().as_tensor().clone(),
                bias: Some(b.clone()),
            };
            let frozen = Linear {
                weight: frozen_layout(w.clone()).unwrap(),
                bias: Some(b),
            };
            assert!(!frozen.weight.is_contiguous() && frozen.weight.dims() == [n, k]);
            assert_eq!(
                frozen.weight.to_vec2::<f32>().unwrap(),
                w.to_vec2::<f32>().unwrap()
            );
            let (a, f) = (trained.forward(&x).unwrap(), frozen.forward(&x).unwrap());
            assert_eq!(
                crate::util::max_abs_diff(&a, &f).unwrap(),
                0.0,
                "{m}x{k}x{n}"
            );
        }
        let h = 64;
        let lin = |var: bool| {
            let w = Tensor::randn(0f32, 0.1, (h, h), &dev).unwrap();
            let b = Tensor::randn(0f32, 0.1, h, &dev).unwrap();
            move |frozen: bool| Linear {
                weight: if frozen {
                    frozen_layout(w.clone()).unwrap()
                } else if var {
                    Var::from_tensor(&w).unwrap().as_tensor().clone()
                } else {
                    w.clone()
                },
                bias: Some(b.clone()),
            }
        };
        let (q, k, v, o) = (lin(true), lin(true), lin(true), lin(false));
        let x = Tensor::randn(0f32, 1.0, (3, 17, h), &dev).unwrap();
        let trained = SelfAttention::new(q(false), k(false), v(false), o(false), 4);
        let frozen = SelfAttention::new(q(true), k(true), v(true), o(true), 4);
        let a = trained.forward(&x, Mode::Infer).unwrap();
        for _ in 0..2 {
            let f = frozen.forward(&x, Mode::Infer).unwrap();
            assert_eq!(crate::util::max_abs_diff(&a, &f).unwrap(), 0.0);
        }
        assert!(frozen.frozen_qkv.get().is_some() && trained.frozen_qkv.get().is_none());
    }

    #[test]
    fn quick_gelu_matches_definition() {
        let x = Tensor::new(&[-2f32, 0.0, 1.5], &Device::Cpu).unwrap();
        let y = Activation::QuickGelu
            .forward(&x)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (xi, yi) in [-2f32, 0.0, 1.5].iter().zip(y) {
            let want = xi / (1.0 + (-1.702 * xi).exp());
            assert!((want - yi).abs() < 1e-6);
        }
    }
}
