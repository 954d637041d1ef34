//! CLIP image embeddings as a metric extractor (the paper's third column is the mean cosine
//! similarity between the embedding of each generated image and that of its own ground truth),
//! and the network behind it. Features are the projected, L2-normalised image embeddings (so a dot
//! product is the cosine); inputs are 8-bit images preprocessed as `CLIPImageProcessor` does.
//!
//! The network: CLIP's vision tower with its projection, as transformers' `CLIPVisionModelWithProjection`:
//! `vision_model.embeddings.*`, `vision_model.encoder.layers.N.*`, `vision_model.{pre_layrnorm,
//! post_layernorm}`, `visual_projection`. Reads standalone vision configs and full `CLIPModel`
//! checkpoints (openai/clip-vit-*, laion/CLIP-ViT-H-14-laion2B-s32B-b79K), whose text tower is
//! skipped. Inference only (a metric extractor).
//!
//! candle-transformers' CLIP supports QuickGELU only, with a fixed LayerNorm epsilon; the
//! paper's OpenCLIP ViT-H-14 uses exact GELU, hence this file.

use crate::nn::{Activation, LayerNorm, Linear, Mode, SelfAttention};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// transformers' `CLIPVisionConfig` (the fields that matter), plus the model's `projection_dim`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClipVisionConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub projection_dim: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_channels: usize,
    pub image_size: usize,
    pub patch_size: usize,
    pub hidden_act: String,
    pub layer_norm_eps: f64,
}

impl Default for ClipVisionConfig {
    fn default() -> Self {
        Self {
            hidden_size: 768,
            intermediate_size: 3072,
            projection_dim: 512,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            num_channels: 3,
            image_size: 224,
            patch_size: 32,
            hidden_act: "quick_gelu".into(),
            layer_norm_eps: 1e-5,
        }
    }
}

impl ClipVisionConfig {
    /// From a `config.json`: a vision config, or a `CLIPConfig` with `vision_config` inside (the
    /// projection dimension then comes from the top level).
    pub fn from_json(text: &str) -> Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(text).context("parsing CLIP config.json")?;
        let mut cfg: Self = match v.get("vision_config") {
            Some(vc) => {
                let mut c: Self = serde_json::from_value(vc.clone()).context("vision_config")?;
                if let Some(p) = v.get("projection_dim").and_then(|p| p.as_u64()) {
                    c.projection_dim = p as usize;
                }
                c
            }
            None => serde_json::from_value(v).context("CLIP vision config")?,
        };
        anyhow::ensure!(
            cfg.image_size % cfg.patch_size == 0,
            "image_size must be a multiple of patch_size"
        );
        anyhow::ensure!(
            cfg.hidden_size % cfg.num_attention_heads == 0,
            "hidden_size must divide into heads"
        );
        Activation::from_hf(&cfg.hidden_act)?;
        cfg.num_channels = cfg.num_channels.max(3);
        Ok(cfg)
    }

    pub fn num_positions(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }
}

struct Layer {
    attn: SelfAttention,
    ln1: LayerNorm,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    act: Activation,
}

/// `CLIPVisionModelWithProjection`.
pub struct ClipVision {
    pub cfg: ClipVisionConfig,
    class_embedding: Tensor,
    patch_weight: Tensor,
    position_embedding: Tensor,
    pre_ln: LayerNorm,
    layers: Vec<Layer>,
    post_ln: LayerNorm,
    projection: Tensor,
}

/// Everything a forward pass produces.
pub struct ClipOutput {
    /// After `pre_layrnorm`, then after each layer.
    pub hidden_states: Vec<Tensor>,
    pub pooled: Tensor,
    /// Projected, not normalised.
    pub image_embeds: Tensor,
}

impl ClipVision {
    pub fn new(
        cfg: ClipVisionConfig,
        weights: &HashMap<String, Tensor>,
        device: &Device,
    ) -> Result<Self> {
        let needed = expected_shapes(&cfg);
        let mut map = HashMap::new();
        for (name, shape) in &needed {
            let t = weights.get(name).with_context(|| {
                format!("CLIP weights: missing tensor `{name}` (expected shape {shape:?})")
            })?;
            anyhow::ensure!(
                t.dims() == shape.as_slice(),
                "CLIP weights: tensor `{name}` has shape {:?}, the config needs {shape:?}",
                t.dims()
            );
            map.insert(name.clone(), t.to_dtype(DType::F32)?.to_device(device)?);
        }
        let vb = VarBuilder::from_tensors(map, DType::F32, device);
        let (h, inter, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.layer_norm_eps);
        let v = vb.pp("vision_model");
        let emb = v.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = v.pp("encoder").pp("layers").pp(i);
                let a = l.pp("self_attn");
                Ok(Layer {
                    attn: SelfAttention::new(
                        Linear::load_as_stored(a.pp("q_proj"), h, h, true)?,
                        Linear::load_as_stored(a.pp("k_proj"), h, h, true)?,
                        Linear::load_as_stored(a.pp("v_proj"), h, h, true)?,
                        Linear::load(a.pp("out_proj"), h, h, true)?,
                        cfg.num_attention_heads,
                    ),
                    ln1: LayerNorm::load(l.pp("layer_norm1"), h, eps)?,
                    ln2: LayerNorm::load(l.pp("layer_norm2"), h, eps)?,
                    fc1: Linear::load(l.pp("mlp").pp("fc1"), h, inter, true)?,
                    fc2: Linear::load(l.pp("mlp").pp("fc2"), inter, h, true)?,
                    act: Activation::from_hf(&cfg.hidden_act)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            class_embedding: emb.get(h, "class_embedding")?,
            patch_weight: emb.pp("patch_embedding").get(
                (h, cfg.num_channels, cfg.patch_size, cfg.patch_size),
                "weight",
            )?,
            position_embedding: emb
                .pp("position_embedding")
                .get((cfg.num_positions(), h), "weight")?,
            pre_ln: LayerNorm::load(v.pp("pre_layrnorm"), h, eps)?,
            layers,
            post_ln: LayerNorm::load(v.pp("post_layernorm"), h, eps)?,
            projection: vb
                .pp("visual_projection")
                .get((cfg.projection_dim, h), "weight")?,
            cfg,
        })
    }

    /// `pixel_values`: `[B, 3, S, S]`, already normalised by the processor.
    pub fn forward(&self, pixel_values: &Tensor) -> Result<ClipOutput> {
        let mode = Mode::Infer;
        let (b, c, _, _) = pixel_values.dims4()?;
        let (p, h) = (self.cfg.patch_size, self.cfg.hidden_size);
        let g = self.cfg.image_size / p;
        let cols = pixel_values
            .reshape(vec![b, c, g, p, g, p])?
            .permute(vec![0, 2, 4, 1, 3, 5])?
            .reshape((b * g * g, c * p * p))?;
        let patches = cols
            .matmul(&self.patch_weight.reshape((h, c * p * p))?.t()?)?
            .reshape((b, g * g, h))?;
        let cls = self
            .class_embedding
            .reshape((1, 1, h))?
            .broadcast_as((b, 1, h))?;
        let x = Tensor::cat(&[&cls, &patches], 1)?
            .broadcast_add(&self.position_embedding.unsqueeze(0)?)?;
        let mut x = self.pre_ln.forward(&x, mode)?;
        let mut hidden_states = vec![x.clone()];
        for l in &self.layers {
            let a = (l.attn.forward(&l.ln1.forward(&x, mode)?, mode)? + &x)?;
            let m = l
                .fc2
                .forward(&l.act.forward(&l.fc1.forward(&l.ln2.forward(&a, mode)?)?)?)?;
            x = (m + a)?;
            hidden_states.push(x.clone());
        }
        let pooled = self
            .post_ln
            .forward(&x.narrow(1, 0, 1)?.squeeze(1)?, mode)?;
        let image_embeds = pooled.matmul(&self.projection.t()?)?;
        Ok(ClipOutput {
            hidden_states,
            pooled,
            image_embeds,
        })
    }

    /// L2-normalised projected embeddings `[B, projection_dim]`.
    pub fn embed(&self, pixel_values: &Tensor) -> Result<Tensor> {
        let e = self.forward(pixel_values)?.image_embeds;
        Ok(e.broadcast_div(&e.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?)?)
    }
}

/// Every tensor the vision tower needs, with its shape.
pub fn expected_shapes(cfg: &ClipVisionConfig) -> Vec<(String, Vec<usize>)> {
    let (h, i, c, p) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.num_channels,
        cfg.patch_size,
    );
    let mut v: Vec<(String, Vec<usize>)> = vec![
        ("vision_model.embeddings.class_embedding".into(), vec![h]),
        (
            "vision_model.embeddings.patch_embedding.weight".into(),
            vec![h, c, p, p],
        ),
        (
            "vision_model.embeddings.position_embedding.weight".into(),
            vec![cfg.num_positions(), h],
        ),
        ("vision_model.pre_layrnorm.weight".into(), vec![h]),
        ("vision_model.pre_layrnorm.bias".into(), vec![h]),
        ("vision_model.post_layernorm.weight".into(), vec![h]),
        ("vision_model.post_layernorm.bias".into(), vec![h]),
        (
            "visual_projection.weight".into(),
            vec![cfg.projection_dim, h],
        ),
    ];
    for l in 0..cfg.num_hidden_layers {
        let pre = format!("vision_model.encoder.layers.{l}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            v.push((format!("{pre}.self_attn.{proj}.weight"), vec![h, h]));
            v.push((format!("{pre}.self_attn.{proj}.bias"), vec![h]));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            v.push((format!("{pre}.{ln}.weight"), vec![h]));
            v.push((format!("{pre}.{ln}.bias"), vec![h]));
        }
        v.push((format!("{pre}.mlp.fc1.weight"), vec![i, h]));
        v.push((format!("{pre}.mlp.fc1.bias"), vec![i]));
        v.push((format!("{pre}.mlp.fc2.weight"), vec![h, i]));
        v.push((format!("{pre}.mlp.fc2.bias"), vec![h]));
    }
    v
}

/// OpenAI's CLIP normalisation (used by every checkpoint the project knows).
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// `CLIPImageProcessor` (PIL backend, as OpenAI's preprocessing): shorter side to `size` with PIL's
/// 8-bit bicubic, centre crop `size` × `size`, /255, normalise. Returns `[3, size, size]`.
pub fn preprocess(img: &image::RgbImage, size: usize, mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (nw, nh) = if w <= h {
        (size, (size as f64 * h as f64 / w as f64) as usize)
    } else {
        ((size as f64 * w as f64 / h as f64) as usize, size)
    };
    let resized = crate::resample::pil_resize_rgb8_bicubic(img, nw, nh);
    let (top, left) = ((nh - size) / 2, (nw - size) / 2);
    let mut out = vec![0f32; 3 * size * size];
    for y in 0..size {
        for x in 0..size {
            let p = resized.get_pixel((left + x) as u32, (top + y) as u32);
            for c in 0..3 {
                out[c * size * size + y * size + x] = (p[c] as f32 / 255.0 - mean[c]) / std[c];
            }
        }
    }
    out
}

/// The paper's choice (OpenCLIP ViT-H-14 trained on LAION-2B, transformers format on the hub).
pub const PAPER_CLIP: &str = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K";

pub struct ClipExtractor {
    model: ClipVision,
    origin: String,
    weights_sha256: String,
    mean: [f32; 3],
    std: [f32; 3],
    device: Device,
}

impl ClipExtractor {
    /// From a hub id or a local checkpoint folder.
    pub fn load(spec: &str, device: &Device) -> Result<Self> {
        let hub = crate::hub::Hub::from_env()?;
        let ck = crate::weights::checkpoint::resolve(spec, Some(&hub))?;
        let text = std::fs::read_to_string(&ck.config)
            .with_context(|| format!("reading {}", ck.config.display()))?;
        let cfg = ClipVisionConfig::from_json(&text)
            .with_context(|| format!("{} ({})", ck.config.display(), ck.origin))?;
        let (mean, std) =
            match crate::weights::checkpoint::normalisation(ck.preprocessor.as_deref())? {
                Some((m, s)) => (m.map(|v| v as f32), s.map(|v| v as f32)),
                None => (CLIP_MEAN, CLIP_STD),
            };
        let tensors: HashMap<String, Tensor> =
            crate::weights::checkpoint::read_tensors(&ck.weights, &Device::Cpu)?
                .into_iter()
                .collect();
        let model = ClipVision::new(cfg, &tensors, device)
            .with_context(|| format!("checkpoint {}", ck.origin))?;
        Ok(Self {
            model,
            origin: ck.origin,
            weights_sha256: crate::util::sha256_file(&ck.weights)?,
            mean,
            std,
            device: device.clone(),
        })
    }

    /// Normalised embeddings of 8-bit images, `[n, projection_dim]` row-major.
    pub fn embed_rgb(&self, imgs: &[image::RgbImage]) -> Result<Vec<f32>> {
        let size = self.model.cfg.image_size;
        let prepared: Vec<Vec<f32>> = imgs
            .par_iter()
            .map(|im| preprocess(im, size, self.mean, self.std))
            .collect();
        let n = prepared.len();
        let x = Tensor::from_vec(prepared.concat(), (n, 3, size, size), &self.device)?;
        crate::nn::to_vec_f32(&self.model.embed(&x)?)
    }
}

impl super::Extractor for ClipExtractor {
    fn protocol(&self) -> String {
        format!(
            "CLIP {} sha256:{} projected L2-normalised image embeddings ({}-d), CLIPImageProcessor (PIL bicubic shorter side {}, centre crop), 8-bit inputs",
            self.origin,
            &self.weights_sha256[..12],
            self.model.cfg.projection_dim,
            self.model.cfg.image_size
        )
    }
    fn dim(&self) -> usize {
        self.model.cfg.projection_dim
    }
    fn forward(&self, images: &Tensor) -> Result<super::ExtractorOutput> {
        let n = images.dim(0)?;
        let imgs = super::to_rgb8(images)?;
        Ok(super::ExtractorOutput {
            features: Tensor::from_vec(self.embed_rgb(&imgs)?, (n, self.dim()), &Device::Cpu)?,
            logits: None,
        })
    }
}
