//! InceptionV3 as pytorch-fid 0.3.0 builds it for FID (`Variant::Fid`: blocks FIDInceptionA/C/E_1/E_2,
//! average pools that do not count padding, a max pool in Mixed_7c, fc 2048 → 1008), and
//! torchvision's ImageNet InceptionV3 (`Variant::ImageNet`, fc 2048 → 1000) for the paper's
//! Inception Score. Weight names are torchvision's (`Conv2d_1a_3x3.conv.weight`,
//! `Mixed_7c.branch_pool.bn.running_var`, `fc.weight` …), so `pt_inception-2015-12-05-6726825d.pth`
//! and torchvision's `inception_v3_google-0cc3c7bd.pth` load without renaming.
//!
//! Inference only. The network is one staged description (`net.rs`: BatchNorm folded, 1 × 1
//! convolutions of the same input fused) run by one of two backends: `cpu.rs` (channels-last
//! im2col + gemm, the fast path on the CPU) or `candle.rs` (tensors on any device, e.g. CUDA).

mod act;
mod candle;
mod cpu;
pub mod formula;
mod net;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use net::Net;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// pytorch-fid's FID InceptionV3 (TF-Inception port), 1008 classes.
    Fid,
    /// torchvision's ImageNet InceptionV3, 1000 classes.
    ImageNet,
}

/// The network on its backend.
enum Engine {
    Cpu(Net<cpu::CpuConv>),
    Candle(Net<candle::TensorConv>),
}

/// Feature dimensions pytorch-fid offers (`--dims`), by block.
pub const DIMS: [usize; 4] = [64, 192, 768, 2048];

pub struct InceptionV3 {
    pub variant: Variant,
    engine: Engine,
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
    /// Build from a state dict with torchvision names; the CPU backend on the CPU, the candle
    /// backend elsewhere.
    pub fn new(w: &HashMap<String, Tensor>, variant: Variant, device: &Device) -> Result<Self> {
        Self::with_backend(w, variant, device, !device.is_cpu())
    }

    /// As [`InceptionV3::new`], choosing the backend: `candle` runs candle tensors even on the
    /// CPU (the backend other devices use; tests compare the two).
    pub fn with_backend(
        w: &HashMap<String, Tensor>,
        variant: Variant,
        device: &Device,
        candle: bool,
    ) -> Result<Self> {
        let w: HashMap<String, Tensor> = w
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked") && !k.starts_with("AuxLogits"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let folded = Net::load(&w, variant == Variant::Fid)?;
        let fc_w = w
            .get("fc.weight")
            .context("Inception weights: missing tensor `fc.weight`")?
            .to_dtype(DType::F32)?
            .to_device(device)?;
        let fc_b = w
            .get("fc.bias")
            .context("Inception weights: missing tensor `fc.bias`")?
            .to_dtype(DType::F32)?
            .to_device(device)?;
        let classes = if variant == Variant::Fid { 1008 } else { 1000 };
        anyhow::ensure!(
            fc_w.dims() == [classes, 2048],
            "Inception weights: `fc.weight` has shape {:?}, expected [{classes}, 2048] for the {variant:?} variant",
            fc_w.dims()
        );
        let engine = if !candle {
            anyhow::ensure!(
                device.is_cpu(),
                "the channels-last backend runs on the CPU only"
            );
            Engine::Cpu(folded.map(|f| Ok(cpu::CpuConv::from_folded(f)))?)
        } else {
            Engine::Candle(folded.map(|f| candle::TensorConv::new(f, device))?)
        };
        Ok(Self {
            variant,
            engine,
            fc_w,
            fc_b,
        })
    }

    /// Forward `[B, 3, 299, 299]` already-normalised input up to the block of `dims`
    /// (64, 192, 768 or 2048); logits only for 2048.
    pub fn forward(&self, x: &Tensor, dims: usize) -> Result<InceptionOut> {
        let f = match &self.engine {
            Engine::Cpu(net) => {
                let (b, c, h, w) = x.dims4()?;
                let a = cpu::from_nchw(&crate::nn::to_vec_f32(x)?, b, c, h, w);
                let a = net.run(&cpu::CpuBackend, &a, dims)?;
                Tensor::from_vec(cpu::global_avg(&a), (a.b, a.c), x.device())?
            }
            Engine::Candle(net) => net
                .run(&candle::CandleBackend, x, dims)?
                .mean(D::Minus1)?
                .mean(D::Minus1)?,
        };
        if dims != 2048 {
            return Ok(InceptionOut {
                features: f,
                logits: None,
                logits_unbiased: None,
            });
        }
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
        let tensors = crate::weights::checkpoint::read_tensors(path, device)?;
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

    /// On a CPU the batch runs as one shard per thread of the calling pool, each shard on a core
    /// of its own ([`crate::parallel::Shards`]): every image's features are its own, and whole
    /// images per core beat splitting every layer over the cores (the thin first layers and the
    /// 8 × 8 ones above all).
    fn run_prepared(&self, prepared: Vec<Vec<f32>>) -> Result<HostOut> {
        let shards = crate::parallel::Shards::for_device(&self.device)?;
        let mut parts = shards.map(prepared.len(), |_, r| self.run_shard(&prepared[r]))?;
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        let join = |get: fn(&HostOut) -> Option<&Vec<f32>>| -> Option<Vec<f32>> {
            parts
                .iter()
                .map(|p| get(p).map(|v| v.as_slice()))
                .collect::<Option<Vec<&[f32]>>>()
                .map(|v| v.concat())
        };
        Ok(HostOut {
            features: parts
                .iter()
                .flat_map(|p| p.features.iter().copied())
                .collect(),
            logits_unbiased: join(|p| p.logits_unbiased.as_ref()),
            logits: join(|p| p.logits.as_ref()),
        })
    }

    fn run_shard(&self, prepared: &[Vec<f32>]) -> Result<HostOut> {
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
    fn forward(&self, images: &Tensor) -> Result<super::ExtractorOutput> {
        let n = images.dim(0)?;
        let out = self.run_tensor(images)?;
        // torch-fidelity's Inception Score uses the logits without the bias; the ImageNet
        // (paper) variant uses the full logits. Only the 2048-d runs reach the classifier.
        let l = match self.net.variant {
            Variant::Fid => out.logits_unbiased,
            Variant::ImageNet => out.logits,
        };
        let logits = if self.dims == 2048 {
            l.map(|l| {
                let c = l.len() / n;
                Tensor::from_vec(l, (n, c), &Device::Cpu)
            })
            .transpose()?
        } else {
            None
        };
        Ok(super::ExtractorOutput {
            features: Tensor::from_vec(out.features, (n, self.dims), &Device::Cpu)?,
            logits,
        })
    }
    fn is_rule(&self) -> super::IsRule {
        match self.net.variant {
            Variant::Fid => super::IsRule::TorchFidelity,
            Variant::ImageNet => super::IsRule::Paper,
        }
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
