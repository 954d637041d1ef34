//! The Places365 ResNet-50 scene classifier (CSAIL's `resnet50_places365.pth.tar`) as a metric
//! extractor: the network the paper's official Palette evaluation (`eval365.py`) computes its
//! Inception Score with on Places-365, in place of ImageNet's InceptionV3.
//!
//! The network is torchvision's `resnet50(num_classes=365)` with torchvision's module names
//! (`conv1`, `bn1`, `layerN.M.{conv1..3, bn1..3, downsample.{0,1}}`, `fc`), inference only
//! (batch norms use their running statistics), read from the official
//! container `{"state_dict": {"module.conv1.weight": …}}` (the `module.` prefix of
//! `nn.DataParallel` stripped, as the official code does). Preprocessing is the official one:
//! `Resize((256, 256))` on the 8-bit image (PIL bilinear), `CenterCrop(224)`, `ToTensor`,
//! `Normalize` with the ImageNet mean and std. One forward returns the 2048-d pooled features and
//! the 365 logits (with the bias); the score is the softmax of the logits over contiguous splits of
//! ⌊N/s⌋ ([`super::IsRule::Paper`]). The official code shuffles the file list with an unseeded
//! `random.shuffle` before splitting; that is not copied (our split order is the image order).

use anyhow::{Context, Result};
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// The official download (CSAIL's places365 repository); CSAIL publishes no hash for it, so it
/// is pinned on first download (see [`crate::weights::resolve_first_pinned`]).
pub const WEIGHTS_URL: &str =
    "http://places2.csail.mit.edu/models_places365/resnet50_places365.pth.tar";
/// Its file name in the weights cache.
pub const WEIGHTS_NAME: &str = "resnet50_places365.pth.tar";

/// Scene classes of Places-365.
pub const CLASSES: usize = 365;
/// Side of the network's input (after `Resize((256, 256))` and `CenterCrop(224)`).
pub const INPUT: usize = 224;
const RESIZE: usize = 256;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// ResNet-50 for Places-365: the pooled trunk and the classifier.
pub struct Places365Extractor {
    trunk: Trunk,
    fc: candle_nn::Linear,
    weights_sha256: String,
    device: Device,
}

/// One forward's named outputs.
pub struct Places365Out {
    /// `[N, 2048]` global-average-pooled features.
    pub features: Tensor,
    /// `[N, 365]` logits (with the bias).
    pub logits: Tensor,
}

impl Places365Extractor {
    /// From the official checkpoint file (or any file with torchvision's names, with or without
    /// the `module.` prefix).
    pub fn load(path: &std::path::Path, device: &Device) -> Result<Self> {
        let tensors = crate::weights::checkpoint::read_container(path, device)?;
        let sha = crate::util::sha256_file(path)?;
        Self::from_state_dict(tensors.into_iter().collect(), &sha, device)
            .with_context(|| format!("weights {}", path.display()))
    }

    /// From a state dict with torchvision's names (`module.` prefixes are stripped).
    pub fn from_state_dict(
        map: HashMap<String, Tensor>,
        sha: &str,
        device: &Device,
    ) -> Result<Self> {
        let map: HashMap<String, Tensor> = map
            .into_iter()
            .map(|(k, v)| (k.strip_prefix("module.").unwrap_or(&k).to_string(), v))
            .collect();
        let fc_w = map
            .get("fc.weight")
            .context("no `fc.weight`: not a ResNet classifier checkpoint")?;
        anyhow::ensure!(
            fc_w.dims() == [CLASSES, 2048],
            "`fc.weight` is {:?}, not [365, 2048]: not the Places365 ResNet-50",
            fc_w.dims()
        );
        let vb = VarBuilder::from_tensors(map, DType::F32, device);
        let trunk = Trunk::new(vb.clone()).context("the ResNet-50 trunk")?;
        let fc = candle_nn::linear(2048, CLASSES, vb.pp("fc"))?;
        Ok(Self {
            trunk,
            fc,
            weights_sha256: sha.to_string(),
            device: device.clone(),
        })
    }

    /// The official preprocessing of one 8-bit image: `[3, 224, 224]`.
    pub fn prepare(img: &image::RgbImage) -> Vec<f32> {
        let r = crate::resample::pil_resize_rgb8(
            img,
            RESIZE,
            RESIZE,
            crate::resample::PilFilter::Bilinear,
        );
        // torchvision's CenterCrop: top = round((256 - 224) / 2) = 16.
        let off = (RESIZE - INPUT) / 2;
        let mut out = Vec::with_capacity(3 * INPUT * INPUT);
        for (c, (m, s)) in MEAN.iter().zip(STD).enumerate() {
            for y in 0..INPUT {
                for x in 0..INPUT {
                    let p = r.get_pixel((x + off) as u32, (y + off) as u32)[c];
                    out.push((p as f32 / 255.0 - m) / s);
                }
            }
        }
        out
    }

    /// The network on prepared `[N, 3, 224, 224]` inputs.
    pub fn forward_prepared(&self, x: &Tensor) -> Result<Places365Out> {
        let features = self.trunk.forward(x)?;
        let logits = self.fc.forward(&features)?;
        Ok(Places365Out { features, logits })
    }

    /// The network on 8-bit images, one shard of the batch per thread.
    pub fn run_rgb(&self, imgs: &[image::RgbImage]) -> Result<Places365Out> {
        use rayon::prelude::*;
        let prepared: Vec<Vec<f32>> = imgs.par_iter().map(Self::prepare).collect();
        let shards = crate::parallel::Shards::for_device(&self.device)?;
        let parts = shards.map(prepared.len(), |_, r| {
            let x = Tensor::from_vec(
                prepared[r.clone()].concat(),
                (r.len(), 3, INPUT, INPUT),
                &self.device,
            )?;
            let o = self.forward_prepared(&x)?;
            Ok((
                o.features.to_device(&Device::Cpu)?,
                o.logits.to_device(&Device::Cpu)?,
            ))
        })?;
        let (f, l): (Vec<Tensor>, Vec<Tensor>) = parts.into_iter().unzip();
        Ok(Places365Out {
            features: Tensor::cat(&f, 0)?,
            logits: Tensor::cat(&l, 0)?,
        })
    }
}

impl super::Extractor for Places365Extractor {
    fn protocol(&self) -> String {
        format!(
            "Places365 ResNet-50 sha256:{} 2048-d pooled features, {CLASSES} classes; PIL bilinear resize to 256×256, centre crop 224, ImageNet normalisation, 8-bit inputs (the paper's eval365.py)",
            &self.weights_sha256[..12.min(self.weights_sha256.len())]
        )
    }
    fn dim(&self) -> usize {
        2048
    }
    fn forward(&self, images: &Tensor) -> Result<super::ExtractorOutput> {
        let o = self.run_rgb(&super::to_rgb8(images)?)?;
        Ok(super::ExtractorOutput {
            features: o.features,
            logits: Some(o.logits),
        })
    }
    fn is_rule(&self) -> super::IsRule {
        super::IsRule::Paper
    }
}

/// torchvision's `Bottleneck`: 1×1 → 3×3 (with the stride) → 1×1 ×4, each with a batch norm,
/// the shortcut a strided 1×1 + batch norm where the shape changes.
struct Bottleneck {
    convs: [(candle_nn::Conv2d, candle_nn::BatchNorm); 3],
    downsample: Option<(candle_nn::Conv2d, candle_nn::BatchNorm)>,
}

fn conv_bn(
    c_in: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    vb: &VarBuilder,
    conv: &str,
    bn: &str,
) -> candle_core::Result<(candle_nn::Conv2d, candle_nn::BatchNorm)> {
    let cfg = candle_nn::Conv2dConfig {
        stride,
        padding: k / 2,
        ..Default::default()
    };
    Ok((
        candle_nn::conv2d_no_bias(c_in, c_out, k, cfg, vb.pp(conv))?,
        candle_nn::batch_norm(c_out, 1e-5, vb.pp(bn))?,
    ))
}

fn apply(
    x: &Tensor,
    cb: &(candle_nn::Conv2d, candle_nn::BatchNorm),
) -> candle_core::Result<Tensor> {
    x.apply(&cb.0)?.apply_t(&cb.1, false)
}

impl Bottleneck {
    fn new(c_in: usize, width: usize, stride: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let out = width * 4;
        let downsample = if stride != 1 || c_in != out {
            Some(conv_bn(
                c_in,
                out,
                1,
                stride,
                &vb.pp("downsample"),
                "0",
                "1",
            )?)
        } else {
            None
        };
        Ok(Self {
            convs: [
                conv_bn(c_in, width, 1, 1, &vb, "conv1", "bn1")?,
                conv_bn(width, width, 3, stride, &vb, "conv2", "bn2")?,
                conv_bn(width, out, 1, 1, &vb, "conv3", "bn3")?,
            ],
            downsample,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let h = apply(x, &self.convs[0])?.relu()?;
        let h = apply(&h, &self.convs[1])?.relu()?;
        let h = apply(&h, &self.convs[2])?;
        let skip = match &self.downsample {
            Some(d) => apply(x, d)?,
            None => x.clone(),
        };
        (h + skip)?.relu()
    }
}

/// The stem (7×7 stride-2 convolution, batch norm, ReLU, 3×3 stride-2 max pool) and the four
/// stages of 3, 4, 6 and 3 bottlenecks, ending in the global average pool: `[N, 2048]`.
struct Trunk {
    stem: (candle_nn::Conv2d, candle_nn::BatchNorm),
    blocks: Vec<Bottleneck>,
}

impl Trunk {
    fn new(vb: VarBuilder) -> candle_core::Result<Self> {
        let cfg = candle_nn::Conv2dConfig {
            stride: 2,
            padding: 3,
            ..Default::default()
        };
        let stem = (
            candle_nn::conv2d_no_bias(3, 64, 7, cfg, vb.pp("conv1"))?,
            candle_nn::batch_norm(64, 1e-5, vb.pp("bn1"))?,
        );
        let mut blocks = vec![];
        let mut c_in = 64;
        for (i, (n, width)) in [(3, 64), (4, 128), (6, 256), (3, 512)]
            .into_iter()
            .enumerate()
        {
            for j in 0..n {
                let stride = if j == 0 && i > 0 { 2 } else { 1 };
                let vbl = vb.pp(format!("layer{}", i + 1)).pp(j);
                blocks.push(Bottleneck::new(c_in, width, stride, vbl)?);
                c_in = width * 4;
            }
        }
        Ok(Self { stem, blocks })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // Max pool with padding 1: after the ReLU every value is ≥ 0, so padding by repeating the
        // edge gives the same maxima as torch's −∞ padding.
        let mut h = apply(x, &self.stem)?
            .relu()?
            .pad_with_same(3, 1, 1)?
            .pad_with_same(2, 1, 1)?
            .max_pool2d_with_stride(3, 2)?;
        for b in &self.blocks {
            h = b.forward(&h)?;
        }
        h.mean(3)?.mean(2)
    }
}

/// Every tensor name and shape of torchvision's `resnet50(num_classes=365)` state dict (without
/// the batch norms' `num_batches_tracked`).
pub fn state_dict_shapes() -> Vec<(String, Vec<usize>)> {
    let mut v = vec![("conv1.weight".to_string(), vec![64, 3, 7, 7])];
    let bn = |v: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
        for s in ["weight", "bias", "running_mean", "running_var"] {
            v.push((format!("{p}.{s}"), vec![c]));
        }
    };
    bn(&mut v, "bn1", 64);
    let mut c_in = 64;
    for (i, (n, w)) in [(3, 64), (4, 128), (6, 256), (3, 512)]
        .into_iter()
        .enumerate()
    {
        for j in 0..n {
            let p = format!("layer{}.{j}", i + 1);
            for (k, (ci, co, ks)) in [(c_in, w, 1), (w, w, 3), (w, w * 4, 1)]
                .into_iter()
                .enumerate()
            {
                v.push((format!("{p}.conv{}.weight", k + 1), vec![co, ci, ks, ks]));
                bn(&mut v, &format!("{p}.bn{}", k + 1), co);
            }
            if j == 0 {
                v.push((format!("{p}.downsample.0.weight"), vec![w * 4, c_in, 1, 1]));
                bn(&mut v, &format!("{p}.downsample.1"), w * 4);
            }
            c_in = w * 4;
        }
    }
    v.push(("fc.weight".into(), vec![CLASSES, 2048]));
    v.push(("fc.bias".into(), vec![CLASSES]));
    v
}

/// Formula weights (tools/reference/places365_reference.py computes the same): each tensor from
/// its name's FNV-1a hash and the element index through splitmix64, in f64, cast to f32. Not a
/// trained network: parity fixtures need no 97 MB download.
pub fn formula_state_dict() -> Result<HashMap<String, Tensor>> {
    use super::inception::formula::formula_v;
    state_dict_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let h = crate::util::fnv1a64(name.as_bytes());
            let last = name.rsplit('.').next().unwrap_or("");
            let vals: Vec<f32> = (0..n)
                .map(|i| {
                    let v = formula_v(h, i);
                    let x = if name.starts_with("fc.") {
                        0.1 * v
                    } else if shape.len() == 4 {
                        let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                        1.5 * (6.0 / fan_in).sqrt() * v - 2.0 / fan_in
                    } else if last == "weight" {
                        1.0 + 0.1 * v
                    } else if last == "running_var" {
                        1.0 + 0.5 * (v + 1.0)
                    } else {
                        0.05 * v
                    };
                    x as f32
                })
                .collect();
            Ok((
                name,
                Tensor::from_vec(vals, shape.as_slice(), &Device::Cpu)?,
            ))
        })
        .collect()
}
