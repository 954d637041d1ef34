//! CLIP image embeddings as a metric extractor: the paper's third column is the mean cosine
//! similarity between the embedding of each generated image and that of its own ground truth.
//! Features are the projected, L2-normalised image embeddings (so a dot product is the cosine);
//! inputs are 8-bit images preprocessed as `CLIPImageProcessor` does.

use crate::models::clip::{self, ClipVision, ClipVisionConfig};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::collections::HashMap;

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
        let ck = crate::models::checkpoint::resolve(spec, Some(&hub))?;
        let text = std::fs::read_to_string(&ck.config)
            .with_context(|| format!("reading {}", ck.config.display()))?;
        let cfg = ClipVisionConfig::from_json(&text)
            .with_context(|| format!("{} ({})", ck.config.display(), ck.origin))?;
        let (mean, std) =
            match crate::models::checkpoint::normalisation(ck.preprocessor.as_deref())? {
                Some((m, s)) => (m.map(|v| v as f32), s.map(|v| v as f32)),
                None => (clip::CLIP_MEAN, clip::CLIP_STD),
            };
        let tensors: HashMap<String, Tensor> =
            crate::models::checkpoint::read_tensors(&ck.weights, &Device::Cpu)?
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
            .map(|im| clip::preprocess(im, size, self.mean, self.std))
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
    fn features(&self, images: &Tensor) -> Result<Tensor> {
        let n = images.dim(0)?;
        let imgs = super::to_rgb8(images)?;
        Ok(Tensor::from_vec(
            self.embed_rgb(&imgs)?,
            (n, self.dim()),
            &Device::Cpu,
        )?)
    }
    fn logits(&self, _images: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }
}
