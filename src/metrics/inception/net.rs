//! InceptionV3 as one staged description: the blocks, their branches and their order are written
//! once here, generic over a [`Backend`] that runs them (candle tensors on any device, or the
//! channels-last CPU kernels of `cpu.rs`). Loading folds every BatchNorm into its convolution and
//! fuses the 1 × 1 convolutions that read the same input; each backend then converts the folded
//! weights into its own form.

use anyhow::{Context, Result};
use candle_core::{DType, Tensor};
use std::collections::HashMap;

const BN_EPS: f64 = 1e-3;

/// A convolution with its BatchNorm folded in (followed by ReLU when run): OIHW weights on the
/// host.
#[derive(Clone, Debug)]
pub struct Folded {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    /// `[co, ci, kh, kw]`.
    pub dims: [usize; 4],
    pub stride: usize,
    /// (rows, columns) of zero padding.
    pub pad: (usize, usize),
}

impl Folded {
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
        let (co, ci, kh, kw) = kernel
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
            w: wf.flatten_all()?.to_vec1()?,
            b: bf.to_vec1()?,
            dims: [co, ci, kh, kw],
            stride,
            pad,
        })
    }

    /// 1 × 1 convolutions of the same input as one, with the output split sizes.
    fn fuse(parts: Vec<Folded>) -> Result<(Folded, Vec<usize>)> {
        let ci = parts[0].dims[1];
        let mut w = vec![];
        let mut b = vec![];
        let mut splits = vec![];
        for p in &parts {
            anyhow::ensure!(
                p.dims[1] == ci && p.dims[2] == 1 && p.dims[3] == 1 && p.stride == 1,
                "expected 1×1 convolutions of the same input"
            );
            w.extend_from_slice(&p.w);
            b.extend_from_slice(&p.b);
            splits.push(p.dims[0]);
        }
        let co = splits.iter().sum();
        Ok((
            Folded {
                w,
                b,
                dims: [co, ci, 1, 1],
                stride: 1,
                pad: (0, 0),
            },
            splits,
        ))
    }
}

/// What a backend does with activations; every convolution is followed by ReLU.
pub trait Backend {
    type Act;
    type Conv;
    fn conv(&self, c: &Self::Conv, x: &Self::Act) -> Result<Self::Act>;
    /// A fused 1 × 1 convolution, split into its parts' outputs.
    fn fused(&self, c: &Self::Conv, splits: &[usize], x: &Self::Act) -> Result<Vec<Self::Act>>;
    /// Concatenate along channels.
    fn cat(&self, parts: &[&Self::Act]) -> Result<Self::Act>;
    /// 3 × 3, stride 1, padding 1 pool: max, or average dividing by 9 (`count_pad`) or by the
    /// number of real pixels in the window.
    fn pool_same(&self, x: &Self::Act, max: bool, count_pad: bool) -> Result<Self::Act>;
    /// 3 × 3, stride 2 max pool without padding.
    fn max_pool_s2(&self, x: &Self::Act) -> Result<Self::Act>;
}

/// A fused 1 × 1 convolution and its output split sizes.
pub type Fused<C> = (C, Vec<usize>);

/// The mixed blocks (torchvision's InceptionA … E; the FID variant differs only in its pools).
pub enum Block<C> {
    A {
        f: Fused<C>,
        b5_2: C,
        b3_2: C,
        b3_3: C,
        pool: C,
    },
    B {
        b3: C,
        d1: C,
        d2: C,
        d3: C,
    },
    C {
        f: Fused<C>,
        b7: Vec<C>,
        d7: Vec<C>,
        pool: C,
    },
    D {
        f: Fused<C>,
        b3_2: C,
        b7: Vec<C>,
    },
    E {
        f: Fused<C>,
        b3_2a: C,
        b3_2b: C,
        d2: C,
        d3a: C,
        d3b: C,
        pool: C,
        max_pool: bool,
    },
}

fn chain<B: Backend>(be: &B, convs: &[B::Conv], x: &B::Act) -> Result<B::Act> {
    let mut h = be.conv(&convs[0], x)?;
    for c in &convs[1..] {
        h = be.conv(c, &h)?;
    }
    Ok(h)
}

impl<C> Block<C> {
    fn forward<B: Backend<Conv = C>>(&self, be: &B, x: &B::Act, count_pad: bool) -> Result<B::Act> {
        match self {
            Block::A {
                f,
                b5_2,
                b3_2,
                b3_3,
                pool,
            } => {
                let v = be.fused(&f.0, &f.1, x)?;
                let p = be.conv(pool, &be.pool_same(x, false, count_pad)?)?;
                let b5 = be.conv(b5_2, &v[1])?;
                let b3 = be.conv(b3_3, &be.conv(b3_2, &v[2])?)?;
                be.cat(&[&v[0], &b5, &b3, &p])
            }
            Block::B { b3, d1, d2, d3 } => {
                let p = be.max_pool_s2(x)?;
                let a = be.conv(b3, x)?;
                let d = be.conv(d3, &be.conv(d2, &be.conv(d1, x)?)?)?;
                be.cat(&[&a, &d, &p])
            }
            Block::C { f, b7, d7, pool } => {
                let v = be.fused(&f.0, &f.1, x)?;
                let a = chain(be, b7, &v[1])?;
                let d = chain(be, d7, &v[2])?;
                let p = be.conv(pool, &be.pool_same(x, false, count_pad)?)?;
                be.cat(&[&v[0], &a, &d, &p])
            }
            Block::D { f, b3_2, b7 } => {
                let v = be.fused(&f.0, &f.1, x)?;
                let a = be.conv(b3_2, &v[0])?;
                let d = chain(be, b7, &v[1])?;
                let p = be.max_pool_s2(x)?;
                be.cat(&[&a, &d, &p])
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
                let v = be.fused(&f.0, &f.1, x)?;
                let dd = be.conv(d2, &v[2])?;
                let p = be.conv(pool, &be.pool_same(x, *max_pool, count_pad)?)?;
                be.cat(&[
                    &v[0],
                    &be.conv(b3_2a, &v[1])?,
                    &be.conv(b3_2b, &v[1])?,
                    &be.conv(d3a, &dd)?,
                    &be.conv(d3b, &dd)?,
                    &p,
                ])
            }
        }
    }

    /// The same block with every convolution converted by `f`.
    fn map<D>(&self, f: &impl Fn(&C) -> Result<D>) -> Result<Block<D>> {
        let fu = |x: &Fused<C>| -> Result<Fused<D>> { Ok((f(&x.0)?, x.1.clone())) };
        let all = |v: &[C]| -> Result<Vec<D>> { v.iter().map(f).collect() };
        Ok(match self {
            Block::A {
                f: x,
                b5_2,
                b3_2,
                b3_3,
                pool,
            } => Block::A {
                f: fu(x)?,
                b5_2: f(b5_2)?,
                b3_2: f(b3_2)?,
                b3_3: f(b3_3)?,
                pool: f(pool)?,
            },
            Block::B { b3, d1, d2, d3 } => Block::B {
                b3: f(b3)?,
                d1: f(d1)?,
                d2: f(d2)?,
                d3: f(d3)?,
            },
            Block::C { f: x, b7, d7, pool } => Block::C {
                f: fu(x)?,
                b7: all(b7)?,
                d7: all(d7)?,
                pool: f(pool)?,
            },
            Block::D { f: x, b3_2, b7 } => Block::D {
                f: fu(x)?,
                b3_2: f(b3_2)?,
                b7: all(b7)?,
            },
            Block::E {
                f: x,
                b3_2a,
                b3_2b,
                d2,
                d3a,
                d3b,
                pool,
                max_pool,
            } => Block::E {
                f: fu(x)?,
                b3_2a: f(b3_2a)?,
                b3_2b: f(b3_2b)?,
                d2: f(d2)?,
                d3a: f(d3a)?,
                d3b: f(d3b)?,
                pool: f(pool)?,
                max_pool: *max_pool,
            },
        })
    }
}

type W = HashMap<String, Tensor>;

fn fused(w: &W, block: &str, parts: &[&str]) -> Result<Fused<Folded>> {
    Folded::fuse(
        parts
            .iter()
            .map(|p| Folded::load(w, &format!("{block}.{p}"), 1, (0, 0)))
            .collect::<Result<_>>()?,
    )
}

impl Block<Folded> {
    fn a(w: &W, n: &str) -> Result<Self> {
        let c = |p: &str, pad| Folded::load(w, &format!("{n}.{p}"), 1, pad);
        Ok(Block::A {
            f: fused(w, n, &["branch1x1", "branch5x5_1", "branch3x3dbl_1"])?,
            b5_2: c("branch5x5_2", (2, 2))?,
            b3_2: c("branch3x3dbl_2", (1, 1))?,
            b3_3: c("branch3x3dbl_3", (1, 1))?,
            pool: c("branch_pool", (0, 0))?,
        })
    }
    fn b(w: &W, n: &str) -> Result<Self> {
        let c = |p: &str, s, pad| Folded::load(w, &format!("{n}.{p}"), s, pad);
        Ok(Block::B {
            b3: c("branch3x3", 2, (0, 0))?,
            d1: c("branch3x3dbl_1", 1, (0, 0))?,
            d2: c("branch3x3dbl_2", 1, (1, 1))?,
            d3: c("branch3x3dbl_3", 2, (0, 0))?,
        })
    }
    fn c(w: &W, n: &str) -> Result<Self> {
        let c = |p: &str, pad| Folded::load(w, &format!("{n}.{p}"), 1, pad);
        Ok(Block::C {
            f: fused(w, n, &["branch1x1", "branch7x7_1", "branch7x7dbl_1"])?,
            b7: vec![c("branch7x7_2", (0, 3))?, c("branch7x7_3", (3, 0))?],
            d7: vec![
                c("branch7x7dbl_2", (3, 0))?,
                c("branch7x7dbl_3", (0, 3))?,
                c("branch7x7dbl_4", (3, 0))?,
                c("branch7x7dbl_5", (0, 3))?,
            ],
            pool: c("branch_pool", (0, 0))?,
        })
    }
    fn d(w: &W, n: &str) -> Result<Self> {
        let c = |p: &str, s, pad| Folded::load(w, &format!("{n}.{p}"), s, pad);
        Ok(Block::D {
            f: fused(w, n, &["branch3x3_1", "branch7x7x3_1"])?,
            b3_2: c("branch3x3_2", 2, (0, 0))?,
            b7: vec![
                c("branch7x7x3_2", 1, (0, 3))?,
                c("branch7x7x3_3", 1, (3, 0))?,
                c("branch7x7x3_4", 2, (0, 0))?,
            ],
        })
    }
    fn e(w: &W, n: &str, max_pool: bool) -> Result<Self> {
        let c = |p: &str, pad| Folded::load(w, &format!("{n}.{p}"), 1, pad);
        Ok(Block::E {
            f: fused(w, n, &["branch1x1", "branch3x3_1", "branch3x3dbl_1"])?,
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

/// The whole network up to the global pool, in stages: stem to 64 channels, stem to 192, the
/// first eight mixed blocks (768), the last three (2048).
pub struct Net<C> {
    stem0: Vec<C>,
    stem1: Vec<C>,
    mixed: Vec<Block<C>>,
    /// Average pools count padding (torchvision) or not (pytorch-fid's FID blocks).
    count_pad: bool,
}

impl Net<Folded> {
    /// From a state dict with torchvision names; `fid`: the FID variant's Mixed_7c max pool and
    /// padding-excluding average pools.
    pub fn load(w: &W, fid: bool) -> Result<Self> {
        let c = |n: &str, s, p| Folded::load(w, n, s, p);
        Ok(Self {
            stem0: vec![
                c("Conv2d_1a_3x3", 2, (0, 0))?,
                c("Conv2d_2a_3x3", 1, (0, 0))?,
                c("Conv2d_2b_3x3", 1, (1, 1))?,
            ],
            stem1: vec![
                c("Conv2d_3b_1x1", 1, (0, 0))?,
                c("Conv2d_4a_3x3", 1, (0, 0))?,
            ],
            mixed: vec![
                Block::a(w, "Mixed_5b")?,
                Block::a(w, "Mixed_5c")?,
                Block::a(w, "Mixed_5d")?,
                Block::b(w, "Mixed_6a")?,
                Block::c(w, "Mixed_6b")?,
                Block::c(w, "Mixed_6c")?,
                Block::c(w, "Mixed_6d")?,
                Block::c(w, "Mixed_6e")?,
                Block::d(w, "Mixed_7a")?,
                Block::e(w, "Mixed_7b", false)?,
                Block::e(w, "Mixed_7c", fid)?,
            ],
            count_pad: !fid,
        })
    }
}

impl<C> Net<C> {
    /// The same network with every convolution converted for a backend.
    pub fn map<D>(&self, f: impl Fn(&C) -> Result<D>) -> Result<Net<D>> {
        Ok(Net {
            stem0: self.stem0.iter().map(&f).collect::<Result<_>>()?,
            stem1: self.stem1.iter().map(&f).collect::<Result<_>>()?,
            mixed: self
                .mixed
                .iter()
                .map(|b| b.map(&f))
                .collect::<Result<_>>()?,
            count_pad: self.count_pad,
        })
    }

    /// Run up to the stage whose output has `dims` channels (64, 192, 768 or 2048), before the
    /// global pool.
    pub fn run<B: Backend<Conv = C>>(&self, be: &B, x: &B::Act, dims: usize) -> Result<B::Act> {
        anyhow::ensure!(
            super::DIMS.contains(&dims),
            "Inception features come in 64, 192, 768 or 2048 dimensions, not {dims}"
        );
        let mut h = be.max_pool_s2(&chain(be, &self.stem0, x)?)?;
        if dims == 64 {
            return Ok(h);
        }
        h = be.max_pool_s2(&chain(be, &self.stem1, &h)?)?;
        if dims == 192 {
            return Ok(h);
        }
        let upto = if dims == 768 { 8 } else { self.mixed.len() };
        for b in &self.mixed[..upto] {
            h = b.forward(be, &h, self.count_pad)?;
        }
        Ok(h)
    }
}
