//! InceptionV3 as pytorch-fid 0.3.0 builds it for FID (`Variant::Fid`: blocks FIDInceptionA/C/E_1/E_2,
//! average pools that do not count padding, a max pool in Mixed_7c, fc 2048 → 1008), and
//! torchvision's ImageNet InceptionV3 (`Variant::ImageNet`, fc 2048 → 1000) for the paper's
//! Inception Score. Weight names are torchvision's (`Conv2d_1a_3x3.conv.weight`,
//! `Mixed_7c.branch_pool.bn.running_var`, `fc.weight` …), so `pt_inception-2015-12-05-6726825d.pth`
//! and torchvision's `inception_v3_google-0cc3c7bd.pth` load without renaming.
//!
//! Inference only. Every BatchNorm (eps 1e-3) is folded into its convolution when loading; 1 × 1
//! convolutions that read the same input are fused into one matmul.

use super::inception_cpu::{self as cpu, Act, CpuConv};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// pytorch-fid's FID InceptionV3 (TF-Inception port), 1008 classes.
    Fid,
    /// torchvision's ImageNet InceptionV3, 1000 classes.
    ImageNet,
}

const BN_EPS: f64 = 1e-3;

/// A convolution with its BatchNorm folded in, followed by ReLU.
struct Conv {
    w: Tensor,
    b: Tensor,
    stride: usize,
    pad: (usize, usize),
}

impl Conv {
    fn load(
        w: &HashMap<String, Tensor>,
        name: &str,
        stride: usize,
        pad: (usize, usize),
    ) -> Result<Self> {
        let get = |k: &str| -> Result<Tensor> {
            w.get(&format!("{name}.{k}"))
                .cloned()
                .with_context(|| format!("Inception weights: missing tensor `{name}.{k}`"))
        };
        let kernel = get("conv.weight")?.to_dtype(DType::F32)?;
        let (co, _, _, _) = kernel
            .dims4()
            .with_context(|| format!("`{name}.conv.weight` must be 4-D"))?;
        let gamma = get("bn.weight")?;
        let beta = get("bn.bias")?;
        let mean = get("bn.running_mean")?;
        let var = get("bn.running_var")?;
        for (k, t) in [
            ("bn.weight", &gamma),
            ("bn.bias", &beta),
            ("bn.running_mean", &mean),
            ("bn.running_var", &var),
        ] {
            anyhow::ensure!(
                t.dims() == [co],
                "Inception weights: `{name}.{k}` has shape {:?}, expected [{co}]",
                t.dims()
            );
        }
        // Fold in f64: scale = γ / √(σ² + ε), w' = w · scale, b' = β − μ · scale.
        let scale =
            (gamma.to_dtype(DType::F64)? / (var.to_dtype(DType::F64)? + BN_EPS)?.sqrt()?)?;
        let wf = kernel
            .to_dtype(DType::F64)?
            .broadcast_mul(&scale.reshape((co, 1, 1, 1))?)?
            .to_dtype(DType::F32)?;
        let bf = (beta.to_dtype(DType::F64)? - (mean.to_dtype(DType::F64)? * &scale)?)?
            .to_dtype(DType::F32)?;
        Ok(Self {
            w: wf,
            b: bf,
            stride,
            pad,
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

impl Conv {
    fn cpu(&self) -> Result<CpuConv> {
        let (co, ci, kh, kw) = self.w.dims4()?;
        Ok(CpuConv::new(
            &crate::nn::to_vec_f32(&self.w)?,
            crate::nn::to_vec_f32(&self.b)?,
            [co, ci, kh, kw],
            self.stride,
            self.pad,
        ))
    }
}

/// 1 × 1 convolution of `[B, C, H, W]` with `[Co, C]` as one batched matmul.
fn conv1x1(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let (b, c, h, wd) = x.dims4()?;
    let co = w.dim(0)?;
    let y = w.broadcast_left(b)?.matmul(&x.reshape((b, c, h * wd))?)?;
    Ok(y.reshape((b, co, h, wd))?)
}

/// Several 1 × 1 convolutions of the same input, computed as one.
struct Fused1x1 {
    w: Tensor,
    b: Tensor,
    splits: Vec<usize>,
}

impl Fused1x1 {
    fn load(w: &HashMap<String, Tensor>, names: &[String]) -> Result<Self> {
        let convs = names
            .iter()
            .map(|n| Conv::load(w, n, 1, (0, 0)))
            .collect::<Result<Vec<_>>>()?;
        let mut ws = vec![];
        let mut splits = vec![];
        for c in &convs {
            let (co, ci, kh, kw) = c.w.dims4()?;
            anyhow::ensure!(kh == 1 && kw == 1, "expected a 1×1 convolution");
            ws.push(c.w.reshape((co, ci))?);
            splits.push(co);
        }
        Ok(Self {
            w: Tensor::cat(&ws, 0)?,
            b: Tensor::cat(&convs.iter().map(|c| c.b.clone()).collect::<Vec<_>>(), 0)?,
            splits,
        })
    }

    fn cpu(&self) -> Result<(CpuConv, Vec<usize>)> {
        let (co, ci) = self.w.dims2()?;
        Ok((
            CpuConv::new(
                &crate::nn::to_vec_f32(&self.w)?,
                crate::nn::to_vec_f32(&self.b)?,
                [co, ci, 1, 1],
                1,
                (0, 0),
            ),
            self.splits.clone(),
        ))
    }

    fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>> {
        let y = conv1x1(x, &self.w)?;
        let co = self.w.dim(0)?;
        let y = y.broadcast_add(&self.b.reshape((1, co, 1, 1))?)?.relu()?;
        let mut out = vec![];
        let mut start = 0;
        for &n in &self.splits {
            out.push(y.narrow(1, start, n)?);
            start += n;
        }
        Ok(out)
    }
}

/// 3 × 3, stride 1, padding 1 average pool; `count_pad`: divide by 9 everywhere (torchvision) or
/// by the number of real pixels in the window (pytorch-fid's FID blocks).
fn avg_pool_3x3_same(x: &Tensor, count_pad: bool) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let padded = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
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

/// 3 × 3, stride 1, padding 1 max pool of a non-negative input (zero padding is then exact).
fn max_pool_3x3_same(x: &Tensor) -> Result<Tensor> {
    Ok(x.pad_with_zeros(2, 1, 1)?
        .pad_with_zeros(3, 1, 1)?
        .max_pool2d_with_stride(3, 1)?)
}

enum Block {
    A {
        f: Fused1x1,
        b5_2: Conv,
        b3_2: Conv,
        b3_3: Conv,
        pool: Conv,
    },
    B {
        b3: Conv,
        d1: Conv,
        d2: Conv,
        d3: Conv,
    },
    C {
        f: Fused1x1,
        b7: [Conv; 2],
        d7: [Conv; 4],
        pool: Conv,
    },
    D {
        f: Fused1x1,
        b3_2: Conv,
        b7: [Conv; 3],
    },
    E {
        f: Fused1x1,
        b3_2a: Conv,
        b3_2b: Conv,
        d2: Conv,
        d3a: Conv,
        d3b: Conv,
        pool: Conv,
        max_pool: bool,
    },
}

fn names(block: &str, parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| format!("{block}.{p}")).collect()
}

impl Block {
    fn forward(&self, x: &Tensor, count_pad: bool) -> Result<Tensor> {
        Ok(match self {
            Block::A {
                f,
                b5_2,
                b3_2,
                b3_3,
                pool,
            } => {
                let v = f.forward(x)?;
                let p = pool.forward(&avg_pool_3x3_same(x, count_pad)?)?;
                Tensor::cat(
                    &[
                        &v[0],
                        &b5_2.forward(&v[1])?,
                        &b3_3.forward(&b3_2.forward(&v[2])?)?,
                        &p,
                    ],
                    1,
                )?
            }
            Block::B { b3, d1, d2, d3 } => {
                let p = x.max_pool2d_with_stride(3, 2)?;
                Tensor::cat(
                    &[
                        &b3.forward(x)?,
                        &d3.forward(&d2.forward(&d1.forward(x)?)?)?,
                        &p,
                    ],
                    1,
                )?
            }
            Block::C { f, b7, d7, pool } => {
                let v = f.forward(x)?;
                let a = b7[1].forward(&b7[0].forward(&v[1])?)?;
                let mut d = v[2].clone();
                for c in d7 {
                    d = c.forward(&d)?;
                }
                let p = pool.forward(&avg_pool_3x3_same(x, count_pad)?)?;
                Tensor::cat(&[&v[0], &a, &d, &p], 1)?
            }
            Block::D { f, b3_2, b7 } => {
                let v = f.forward(x)?;
                let mut d = v[1].clone();
                for c in b7 {
                    d = c.forward(&d)?;
                }
                let p = x.max_pool2d_with_stride(3, 2)?;
                Tensor::cat(&[&b3_2.forward(&v[0])?, &d, &p], 1)?
            }
            Block::E {
                f,
                b3_2a,
                b3_2b,
                d2,
                d3a,
                d3b,
                pool,
                max_pool,
            } => {
                let v = f.forward(x)?;
                let b3 = Tensor::cat(&[&b3_2a.forward(&v[1])?, &b3_2b.forward(&v[1])?], 1)?;
                let dd = d2.forward(&v[2])?;
                let d3 = Tensor::cat(&[&d3a.forward(&dd)?, &d3b.forward(&dd)?], 1)?;
                let pooled = if *max_pool {
                    max_pool_3x3_same(x)?
                } else {
                    avg_pool_3x3_same(x, count_pad)?
                };
                Tensor::cat(&[&v[0], &b3, &d3, &pool.forward(&pooled)?], 1)?
            }
        })
    }

    fn a(w: &HashMap<String, Tensor>, n: &str) -> Result<Self> {
        Ok(Block::A {
            f: Fused1x1::load(
                w,
                &names(n, &["branch1x1", "branch5x5_1", "branch3x3dbl_1"]),
            )?,
            b5_2: Conv::load(w, &format!("{n}.branch5x5_2"), 1, (2, 2))?,
            b3_2: Conv::load(w, &format!("{n}.branch3x3dbl_2"), 1, (1, 1))?,
            b3_3: Conv::load(w, &format!("{n}.branch3x3dbl_3"), 1, (1, 1))?,
            pool: Conv::load(w, &format!("{n}.branch_pool"), 1, (0, 0))?,
        })
    }
    fn b(w: &HashMap<String, Tensor>, n: &str) -> Result<Self> {
        Ok(Block::B {
            b3: Conv::load(w, &format!("{n}.branch3x3"), 2, (0, 0))?,
            d1: Conv::load(w, &format!("{n}.branch3x3dbl_1"), 1, (0, 0))?,
            d2: Conv::load(w, &format!("{n}.branch3x3dbl_2"), 1, (1, 1))?,
            d3: Conv::load(w, &format!("{n}.branch3x3dbl_3"), 2, (0, 0))?,
        })
    }
    fn c(w: &HashMap<String, Tensor>, n: &str) -> Result<Self> {
        let c = |p: &str, pad| Conv::load(w, &format!("{n}.{p}"), 1, pad);
        Ok(Block::C {
            f: Fused1x1::load(
                w,
                &names(n, &["branch1x1", "branch7x7_1", "branch7x7dbl_1"]),
            )?,
            b7: [c("branch7x7_2", (0, 3))?, c("branch7x7_3", (3, 0))?],
            d7: [
                c("branch7x7dbl_2", (3, 0))?,
                c("branch7x7dbl_3", (0, 3))?,
                c("branch7x7dbl_4", (3, 0))?,
                c("branch7x7dbl_5", (0, 3))?,
            ],
            pool: c("branch_pool", (0, 0))?,
        })
    }
    fn d(w: &HashMap<String, Tensor>, n: &str) -> Result<Self> {
        let c = |p: &str, s, pad| Conv::load(w, &format!("{n}.{p}"), s, pad);
        Ok(Block::D {
            f: Fused1x1::load(w, &names(n, &["branch3x3_1", "branch7x7x3_1"]))?,
            b3_2: c("branch3x3_2", 2, (0, 0))?,
            b7: [
                c("branch7x7x3_2", 1, (0, 3))?,
                c("branch7x7x3_3", 1, (3, 0))?,
                c("branch7x7x3_4", 2, (0, 0))?,
            ],
        })
    }
    fn e(w: &HashMap<String, Tensor>, n: &str, max_pool: bool) -> Result<Self> {
        let c = |p: &str, pad| Conv::load(w, &format!("{n}.{p}"), 1, pad);
        Ok(Block::E {
            f: Fused1x1::load(
                w,
                &names(n, &["branch1x1", "branch3x3_1", "branch3x3dbl_1"]),
            )?,
            b3_2a: c("branch3x3_2a", (0, 1))?,
            b3_2b: c("branch3x3_2b", (1, 0))?,
            d2: c("branch3x3dbl_2", (1, 1))?,
            d3a: c("branch3x3dbl_3a", (0, 1))?,
            d3b: c("branch3x3dbl_3b", (1, 0))?,
            pool: c("branch_pool", (0, 0))?,
            max_pool,
        })
    }
}

/// The same blocks on the CPU path (NHWC).
enum CpuBlock {
    A {
        f: (CpuConv, Vec<usize>),
        b5_2: CpuConv,
        b3_2: CpuConv,
        b3_3: CpuConv,
        pool: CpuConv,
    },
    B {
        b3: CpuConv,
        d1: CpuConv,
        d2: CpuConv,
        d3: CpuConv,
    },
    C {
        f: (CpuConv, Vec<usize>),
        b7: [CpuConv; 2],
        d7: [CpuConv; 4],
        pool: CpuConv,
    },
    D {
        f: (CpuConv, Vec<usize>),
        b3_2: CpuConv,
        b7: [CpuConv; 3],
    },
    E {
        f: (CpuConv, Vec<usize>),
        b3_2a: CpuConv,
        b3_2b: CpuConv,
        d2: CpuConv,
        d3a: CpuConv,
        d3b: CpuConv,
        pool: CpuConv,
        max_pool: bool,
    },
}

impl CpuBlock {
    fn from(b: &Block) -> Result<Self> {
        Ok(match b {
            Block::A {
                f,
                b5_2,
                b3_2,
                b3_3,
                pool,
            } => CpuBlock::A {
                f: f.cpu()?,
                b5_2: b5_2.cpu()?,
                b3_2: b3_2.cpu()?,
                b3_3: b3_3.cpu()?,
                pool: pool.cpu()?,
            },
            Block::B { b3, d1, d2, d3 } => CpuBlock::B {
                b3: b3.cpu()?,
                d1: d1.cpu()?,
                d2: d2.cpu()?,
                d3: d3.cpu()?,
            },
            Block::C { f, b7, d7, pool } => CpuBlock::C {
                f: f.cpu()?,
                b7: [b7[0].cpu()?, b7[1].cpu()?],
                d7: [d7[0].cpu()?, d7[1].cpu()?, d7[2].cpu()?, d7[3].cpu()?],
                pool: pool.cpu()?,
            },
            Block::D { f, b3_2, b7 } => CpuBlock::D {
                f: f.cpu()?,
                b3_2: b3_2.cpu()?,
                b7: [b7[0].cpu()?, b7[1].cpu()?, b7[2].cpu()?],
            },
            Block::E {
                f,
                b3_2a,
                b3_2b,
                d2,
                d3a,
                d3b,
                pool,
                max_pool,
            } => CpuBlock::E {
                f: f.cpu()?,
                b3_2a: b3_2a.cpu()?,
                b3_2b: b3_2b.cpu()?,
                d2: d2.cpu()?,
                d3a: d3a.cpu()?,
                d3b: d3b.cpu()?,
                pool: pool.cpu()?,
                max_pool: *max_pool,
            },
        })
    }

    fn forward(&self, x: &Act, count_pad: bool) -> Act {
        let fused = |f: &(CpuConv, Vec<usize>)| cpu::split_channels(&f.0.forward(x), &f.1);
        match self {
            CpuBlock::A {
                f,
                b5_2,
                b3_2,
                b3_3,
                pool,
            } => {
                let v = fused(f);
                let p = pool.forward(&cpu::pool_3x3_same(x, false, count_pad));
                cpu::concat_channels(&[
                    &v[0],
                    &b5_2.forward(&v[1]),
                    &b3_3.forward(&b3_2.forward(&v[2])),
                    &p,
                ])
            }
            CpuBlock::B { b3, d1, d2, d3 } => {
                let p = cpu::max_pool_3x3(x, 2);
                cpu::concat_channels(&[
                    &b3.forward(x),
                    &d3.forward(&d2.forward(&d1.forward(x))),
                    &p,
                ])
            }
            CpuBlock::C { f, b7, d7, pool } => {
                let v = fused(f);
                let a = b7[1].forward(&b7[0].forward(&v[1]));
                let mut d = d7[0].forward(&v[2]);
                for c in &d7[1..] {
                    d = c.forward(&d);
                }
                let p = pool.forward(&cpu::pool_3x3_same(x, false, count_pad));
                cpu::concat_channels(&[&v[0], &a, &d, &p])
            }
            CpuBlock::D { f, b3_2, b7 } => {
                let v = fused(f);
                let mut d = b7[0].forward(&v[1]);
                for c in &b7[1..] {
                    d = c.forward(&d);
                }
                let p = cpu::max_pool_3x3(x, 2);
                cpu::concat_channels(&[&b3_2.forward(&v[0]), &d, &p])
            }
            CpuBlock::E {
                f,
                b3_2a,
                b3_2b,
                d2,
                d3a,
                d3b,
                pool,
                max_pool,
            } => {
                let v = fused(f);
                let dd = d2.forward(&v[2]);
                let pooled = cpu::pool_3x3_same(x, *max_pool, count_pad);
                cpu::concat_channels(&[
                    &v[0],
                    &b3_2a.forward(&v[1]),
                    &b3_2b.forward(&v[1]),
                    &d3a.forward(&dd),
                    &d3b.forward(&dd),
                    &pool.forward(&pooled),
                ])
            }
        }
    }
}

/// The network on the CPU path.
struct CpuNet {
    stem0: Vec<CpuConv>,
    stem1: Vec<CpuConv>,
    mixed: Vec<CpuBlock>,
}

/// Feature dimensions pytorch-fid offers (`--dims`), by block.
pub const DIMS: [usize; 4] = [64, 192, 768, 2048];

pub struct InceptionV3 {
    pub variant: Variant,
    cpu: Option<CpuNet>,
    stem0: [Conv; 3],
    stem1: [Conv; 2],
    mixed: Vec<Block>,
    fc_w: Tensor,
    fc_b: Tensor,
}

/// The outputs of a forward pass up to the block that `dims` needs.
pub struct InceptionOut {
    /// Pooled features of the requested dimension `[B, dims]`.
    pub features: Tensor,
    /// `[B, classes]` logits without the fc bias (torch-fidelity's `logits_unbiased`), when the
    /// forward pass went to the end.
    pub logits_unbiased: Option<Tensor>,
    /// `[B, classes]` logits with the bias.
    pub logits: Option<Tensor>,
}

impl InceptionV3 {
    /// Build from a state dict with torchvision names.
    pub fn new(w: &HashMap<String, Tensor>, variant: Variant, device: &Device) -> Result<Self> {
        let w: HashMap<String, Tensor> = w
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked") && !k.starts_with("AuxLogits"))
            .map(|(k, v)| Ok((k.clone(), v.to_device(device)?)))
            .collect::<Result<_>>()?;
        let c = |n: &str, s, p| Conv::load(&w, n, s, p);
        let mixed = vec![
            Block::a(&w, "Mixed_5b")?,
            Block::a(&w, "Mixed_5c")?,
            Block::a(&w, "Mixed_5d")?,
            Block::b(&w, "Mixed_6a")?,
            Block::c(&w, "Mixed_6b")?,
            Block::c(&w, "Mixed_6c")?,
            Block::c(&w, "Mixed_6d")?,
            Block::c(&w, "Mixed_6e")?,
            Block::d(&w, "Mixed_7a")?,
            Block::e(&w, "Mixed_7b", false)?,
            Block::e(&w, "Mixed_7c", variant == Variant::Fid)?,
        ];
        let fc_w = w
            .get("fc.weight")
            .context("Inception weights: missing tensor `fc.weight`")?
            .to_dtype(DType::F32)?;
        let fc_b = w
            .get("fc.bias")
            .context("Inception weights: missing tensor `fc.bias`")?
            .to_dtype(DType::F32)?;
        let classes = if variant == Variant::Fid { 1008 } else { 1000 };
        anyhow::ensure!(
            fc_w.dims() == [classes, 2048],
            "Inception weights: `fc.weight` has shape {:?}, expected [{classes}, 2048] for the {variant:?} variant",
            fc_w.dims()
        );
        let stem0 = [
            c("Conv2d_1a_3x3", 2, (0, 0))?,
            c("Conv2d_2a_3x3", 1, (0, 0))?,
            c("Conv2d_2b_3x3", 1, (1, 1))?,
        ];
        let stem1 = [
            c("Conv2d_3b_1x1", 1, (0, 0))?,
            c("Conv2d_4a_3x3", 1, (0, 0))?,
        ];
        // On the CPU the network runs channels-last (see inception_cpu.rs).
        let cpu = if device.is_cpu() {
            Some(CpuNet {
                stem0: stem0.iter().map(|c| c.cpu()).collect::<Result<_>>()?,
                stem1: stem1.iter().map(|c| c.cpu()).collect::<Result<_>>()?,
                mixed: mixed.iter().map(CpuBlock::from).collect::<Result<_>>()?,
            })
        } else {
            None
        };
        Ok(Self {
            variant,
            cpu,
            stem0,
            stem1,
            mixed,
            fc_w,
            fc_b,
        })
    }

    /// Forward `[B, 3, 299, 299]` already-normalised input up to the block of `dims`
    /// (64, 192, 768 or 2048); logits only for 2048.
    pub fn forward(&self, x: &Tensor, dims: usize) -> Result<InceptionOut> {
        if let Some(net) = &self.cpu {
            return self.forward_cpu(net, x, dims);
        }
        let count_pad = self.variant == Variant::ImageNet;
        let pool = |t: &Tensor| -> Result<Tensor> { Ok(t.mean(D::Minus1)?.mean(D::Minus1)?) };
        let mut h = x.clone();
        for c in &self.stem0 {
            h = c.forward(&h)?;
        }
        h = h.max_pool2d_with_stride(3, 2)?;
        if dims == 64 {
            return Ok(InceptionOut {
                features: pool(&h)?,
                logits: None,
                logits_unbiased: None,
            });
        }
        for c in &self.stem1 {
            h = c.forward(&h)?;
        }
        h = h.max_pool2d_with_stride(3, 2)?;
        if dims == 192 {
            return Ok(InceptionOut {
                features: pool(&h)?,
                logits: None,
                logits_unbiased: None,
            });
        }
        for b in &self.mixed[..8] {
            h = b.forward(&h, count_pad)?;
        }
        if dims == 768 {
            return Ok(InceptionOut {
                features: pool(&h)?,
                logits: None,
                logits_unbiased: None,
            });
        }
        anyhow::ensure!(
            dims == 2048,
            "Inception features come in 64, 192, 768 or 2048 dimensions, not {dims}"
        );
        for b in &self.mixed[8..] {
            h = b.forward(&h, count_pad)?;
        }
        let f = pool(&h)?;
        let lu = f.matmul(&self.fc_w.t()?)?;
        let l = lu.broadcast_add(&self.fc_b)?;
        Ok(InceptionOut {
            features: f,
            logits: Some(l),
            logits_unbiased: Some(lu),
        })
    }
}

/// InceptionV3 as a metric extractor: weights file, variant, resize protocol and feature
/// dimension, all named in [`super::Extractor::protocol`].
pub struct InceptionExtractor {
    net: InceptionV3,
    pub mode: super::preprocess::ResizeMode,
    pub dims: usize,
    pub weights_sha256: String,
    device: Device,
}

/// Batched outputs on the host.
pub struct HostOut {
    /// `[n, dims]` row-major.
    pub features: Vec<f32>,
    /// `[n, classes]` logits without the fc bias (2048-d runs only).
    pub logits_unbiased: Option<Vec<f32>>,
    /// `[n, classes]` logits with the bias.
    pub logits: Option<Vec<f32>>,
}

impl InceptionExtractor {
    pub fn load(
        path: &std::path::Path,
        variant: Variant,
        mode: super::preprocess::ResizeMode,
        dims: usize,
        device: &Device,
    ) -> Result<Self> {
        anyhow::ensure!(
            DIMS.contains(&dims),
            "--dims must be one of 64, 192, 768, 2048, not {dims}"
        );
        let tensors = crate::models::checkpoint::read_tensors(path, device)?;
        let map: HashMap<String, Tensor> = tensors.into_iter().collect();
        let net = InceptionV3::new(&map, variant, device)
            .with_context(|| format!("weights {}", path.display()))?;
        Ok(Self {
            net,
            mode,
            dims,
            weights_sha256: crate::util::sha256_file(path)?,
            device: device.clone(),
        })
    }

    pub fn from_state_dict(
        map: &HashMap<String, Tensor>,
        variant: Variant,
        mode: super::preprocess::ResizeMode,
        dims: usize,
        sha: &str,
        device: &Device,
    ) -> Result<Self> {
        Ok(Self {
            net: InceptionV3::new(map, variant, device)?,
            mode,
            dims,
            weights_sha256: sha.to_string(),
            device: device.clone(),
        })
    }

    /// Run on 8-bit RGB images (the inputs the reference tools read from files).
    pub fn run_rgb(&self, imgs: &[image::RgbImage]) -> Result<HostOut> {
        use rayon::prelude::*;
        let prepared: Vec<Vec<f32>> = imgs
            .par_iter()
            .map(|im| self.mode.prepare(im, 299))
            .collect();
        self.run_prepared(prepared)
    }

    fn run_prepared(&self, prepared: Vec<Vec<f32>>) -> Result<HostOut> {
        let n = prepared.len();
        let x = Tensor::from_vec(prepared.concat(), (n, 3, 299, 299), &self.device)?;
        let out = self.net.forward(&x, self.dims)?;
        let host = |t: Option<Tensor>| -> Result<Option<Vec<f32>>> {
            t.map(|t| crate::nn::to_vec_f32(&t)).transpose()
        };
        Ok(HostOut {
            features: crate::nn::to_vec_f32(&out.features)?,
            logits_unbiased: host(out.logits_unbiased)?,
            logits: host(out.logits)?,
        })
    }

    /// Run on `[N, 3, H, W]` images in [0, 1]: quantised to 8 bits first, as they would be when
    /// saved as PNG and read by the reference tools.
    pub fn run_tensor(&self, images: &Tensor) -> Result<HostOut> {
        self.run_rgb(&super::to_rgb8(images)?)
    }

    pub fn variant(&self) -> Variant {
        self.net.variant
    }
}

impl super::Extractor for InceptionExtractor {
    fn protocol(&self) -> String {
        let weights = match self.net.variant {
            Variant::Fid => "pytorch-fid FID InceptionV3",
            Variant::ImageNet => "torchvision ImageNet InceptionV3",
        };
        format!(
            "{weights} sha256:{} {}-d features, resize {} to 299, 8-bit inputs",
            &self.weights_sha256[..12.min(self.weights_sha256.len())],
            self.dims,
            self.mode
        )
    }
    fn dim(&self) -> usize {
        self.dims
    }
    fn features(&self, images: &Tensor) -> Result<Tensor> {
        let n = images.dim(0)?;
        let out = self.run_tensor(images)?;
        Ok(Tensor::from_vec(
            out.features,
            (n, self.dims),
            &Device::Cpu,
        )?)
    }
    fn logits(&self, images: &Tensor) -> Result<Option<Tensor>> {
        if self.dims != 2048 {
            return Ok(None);
        }
        let n = images.dim(0)?;
        let out = self.run_tensor(images)?;
        // torch-fidelity's Inception Score uses the logits without the bias; the ImageNet
        // (paper) variant uses the full logits.
        let l = match self.net.variant {
            Variant::Fid => out.logits_unbiased,
            Variant::ImageNet => out.logits,
        };
        Ok(l.map(|l| {
            let c = l.len() / n;
            Tensor::from_vec(l, (n, c), &Device::Cpu)
        })
        .transpose()?)
    }
}

impl InceptionV3 {
    fn forward_cpu(&self, net: &CpuNet, x: &Tensor, dims: usize) -> Result<InceptionOut> {
        let count_pad = self.variant == Variant::ImageNet;
        let (b, c, h, w) = x.dims4()?;
        let nchw = crate::nn::to_vec_f32(x)?;
        let mut data = vec![0f32; nchw.len()];
        for i in 0..b {
            for ch in 0..c {
                for p in 0..h * w {
                    data[(i * h * w + p) * c + ch] = nchw[(i * c + ch) * h * w + p];
                }
            }
        }
        let mut a = Act { data, b, h, w, c };
        let dev = x.device();
        let pooled = |a: &Act| -> Result<Tensor> {
            Ok(Tensor::from_vec(cpu::global_avg(a), (a.b, a.c), dev)?)
        };
        for conv in &net.stem0 {
            a = conv.forward(&a);
        }
        a = cpu::max_pool_3x3(&a, 2);
        if dims == 64 {
            return Ok(InceptionOut {
                features: pooled(&a)?,
                logits: None,
                logits_unbiased: None,
            });
        }
        for conv in &net.stem1 {
            a = conv.forward(&a);
        }
        a = cpu::max_pool_3x3(&a, 2);
        if dims == 192 {
            return Ok(InceptionOut {
                features: pooled(&a)?,
                logits: None,
                logits_unbiased: None,
            });
        }
        for blk in &net.mixed[..8] {
            a = blk.forward(&a, count_pad);
        }
        if dims == 768 {
            return Ok(InceptionOut {
                features: pooled(&a)?,
                logits: None,
                logits_unbiased: None,
            });
        }
        anyhow::ensure!(
            dims == 2048,
            "Inception features come in 64, 192, 768 or 2048 dimensions, not {dims}"
        );
        for blk in &net.mixed[8..] {
            a = blk.forward(&a, count_pad);
        }
        let f = pooled(&a)?;
        let lu = f.matmul(&self.fc_w.t()?)?;
        let l = lu.broadcast_add(&self.fc_b)?;
        Ok(InceptionOut {
            features: f,
            logits: Some(l),
            logits_unbiased: Some(lu),
        })
    }
}

/// Every tensor name and shape of the state dict (torchvision naming), for a variant.
pub fn state_dict_shapes(variant: Variant) -> Vec<(String, Vec<usize>)> {
    let mut v = vec![];
    let mut conv = |name: &str, ci: usize, co: usize, kh: usize, kw: usize| {
        v.push((format!("{name}.conv.weight"), vec![co, ci, kh, kw]));
        for p in ["bn.weight", "bn.bias", "bn.running_mean", "bn.running_var"] {
            v.push((format!("{name}.{p}"), vec![co]));
        }
    };
    conv("Conv2d_1a_3x3", 3, 32, 3, 3);
    conv("Conv2d_2a_3x3", 32, 32, 3, 3);
    conv("Conv2d_2b_3x3", 32, 64, 3, 3);
    conv("Conv2d_3b_1x1", 64, 80, 1, 1);
    conv("Conv2d_4a_3x3", 80, 192, 3, 3);
    for (n, ci, pf) in [
        ("Mixed_5b", 192, 32),
        ("Mixed_5c", 256, 64),
        ("Mixed_5d", 288, 64),
    ] {
        conv(&format!("{n}.branch1x1"), ci, 64, 1, 1);
        conv(&format!("{n}.branch5x5_1"), ci, 48, 1, 1);
        conv(&format!("{n}.branch5x5_2"), 48, 64, 5, 5);
        conv(&format!("{n}.branch3x3dbl_1"), ci, 64, 1, 1);
        conv(&format!("{n}.branch3x3dbl_2"), 64, 96, 3, 3);
        conv(&format!("{n}.branch3x3dbl_3"), 96, 96, 3, 3);
        conv(&format!("{n}.branch_pool"), ci, pf, 1, 1);
    }
    conv("Mixed_6a.branch3x3", 288, 384, 3, 3);
    conv("Mixed_6a.branch3x3dbl_1", 288, 64, 1, 1);
    conv("Mixed_6a.branch3x3dbl_2", 64, 96, 3, 3);
    conv("Mixed_6a.branch3x3dbl_3", 96, 96, 3, 3);
    for (n, c7) in [
        ("Mixed_6b", 128),
        ("Mixed_6c", 160),
        ("Mixed_6d", 160),
        ("Mixed_6e", 192),
    ] {
        conv(&format!("{n}.branch1x1"), 768, 192, 1, 1);
        conv(&format!("{n}.branch7x7_1"), 768, c7, 1, 1);
        conv(&format!("{n}.branch7x7_2"), c7, c7, 1, 7);
        conv(&format!("{n}.branch7x7_3"), c7, 192, 7, 1);
        conv(&format!("{n}.branch7x7dbl_1"), 768, c7, 1, 1);
        conv(&format!("{n}.branch7x7dbl_2"), c7, c7, 7, 1);
        conv(&format!("{n}.branch7x7dbl_3"), c7, c7, 1, 7);
        conv(&format!("{n}.branch7x7dbl_4"), c7, c7, 7, 1);
        conv(&format!("{n}.branch7x7dbl_5"), c7, 192, 1, 7);
        conv(&format!("{n}.branch_pool"), 768, 192, 1, 1);
    }
    conv("Mixed_7a.branch3x3_1", 768, 192, 1, 1);
    conv("Mixed_7a.branch3x3_2", 192, 320, 3, 3);
    conv("Mixed_7a.branch7x7x3_1", 768, 192, 1, 1);
    conv("Mixed_7a.branch7x7x3_2", 192, 192, 1, 7);
    conv("Mixed_7a.branch7x7x3_3", 192, 192, 7, 1);
    conv("Mixed_7a.branch7x7x3_4", 192, 192, 3, 3);
    for (n, ci) in [("Mixed_7b", 1280), ("Mixed_7c", 2048)] {
        conv(&format!("{n}.branch1x1"), ci, 320, 1, 1);
        conv(&format!("{n}.branch3x3_1"), ci, 384, 1, 1);
        conv(&format!("{n}.branch3x3_2a"), 384, 384, 1, 3);
        conv(&format!("{n}.branch3x3_2b"), 384, 384, 3, 1);
        conv(&format!("{n}.branch3x3dbl_1"), ci, 448, 1, 1);
        conv(&format!("{n}.branch3x3dbl_2"), 448, 384, 3, 3);
        conv(&format!("{n}.branch3x3dbl_3a"), 384, 384, 1, 3);
        conv(&format!("{n}.branch3x3dbl_3b"), 384, 384, 3, 1);
        conv(&format!("{n}.branch_pool"), ci, 192, 1, 1);
    }
    let classes = if variant == Variant::Fid { 1008 } else { 1000 };
    v.push(("fc.weight".into(), vec![classes, 2048]));
    v.push(("fc.bias".into(), vec![classes]));
    v
}
