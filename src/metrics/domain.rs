//! The domain extractor: a small CNN trained on the dataset's own evaluation classes, standing in
//! for InceptionV3 where Inception weights are not available (the embedded default runs offline).
//!
//! Architecture: three 2 × 2 stride-2 convolutions with ReLU (computed as space-to-depth + matmul,
//! which trains an order of magnitude faster on CPU than candle's 3 × 3 convolution backward pass),
//! global average pooling to a `widths[2]`-dimensional feature, a linear classifier. Features for
//! FID and similarity are the pooled activations minus their mean over the training images (so a
//! cosine similarity measures the image, not the shared positive offset of ReLU features; FID is
//! unchanged by the shift); the classifier's posteriors give the Inception Score. Input: [0, 1]
//! pixels mapped to [−1, 1], no resize (the model's resolution). Weights are trained
//! deterministically and cached by content hash; the protocol string names the weights' SHA-256.

use super::Extractor;
use crate::data::ImageSet;
use crate::train::AdamW;
use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

crate::train::with_optimiser! {
/// `metrics.domain` in the experiment file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DomainSpec {
    pub steps: usize,
    pub batch_size: usize,
    /// Channels of the three convolutions; the last is the feature dimension.
    pub widths: [usize; 3],
    pub seed: u64,
}
}

impl Default for DomainSpec {
    fn default() -> Self {
        Self {
            steps: 300,
            batch_size: 64,
            widths: [32, 64, 64],
            seed: 0,
            lr: 3e-3,
            min_lr: 3e-5,
            warmup_steps: 15,
            weight_decay: 1e-4,
            betas: [0.9, 0.999],
            grad_clip: 5.0,
        }
    }
}

impl DomainSpec {
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.steps == 0 || self.batch_size == 0 {
            return Err(("steps", "steps and batch_size must be at least 1".into()));
        }
        if self.widths.contains(&0) {
            return Err(("widths", "every width must be at least 1".into()));
        }
        self.validate_optim()
    }
}

/// The trained CNN.
pub struct DomainCnn {
    weights: BTreeMap<String, Tensor>,
    classes: usize,
    feat_dim: usize,
    image_size: usize,
    sha: String,
    /// Accuracy on held-out images, when measured.
    pub val_accuracy: Option<f64>,
}

/// `[B, H, W, C]` → `[B, H/2, W/2, 4C]`: each 2 × 2 block becomes one position.
fn space_to_depth(h: &Tensor) -> Result<Tensor> {
    let (b, hh, ww, c) = h.dims4()?;
    Ok(h.reshape(vec![b, hh / 2, 2, ww / 2, 2, c])?
        .permute(vec![0, 1, 3, 2, 4, 5])?
        .reshape((b, hh / 2, ww / 2, 4 * c))?)
}

/// Pooled (uncentred) features `[B, d]`.
fn pooled(w: &BTreeMap<String, Tensor>, x: &Tensor) -> Result<Tensor> {
    let mut h = x.affine(2.0, -1.0)?.permute((0, 2, 3, 1))?;
    for i in 0..3 {
        let lin = crate::nn::Linear {
            weight: w[&format!("conv{i}.weight")].clone(),
            bias: Some(w[&format!("conv{i}.bias")].clone()),
        };
        h = lin.forward(&space_to_depth(&h)?)?.relu()?;
    }
    let (b, hh, ww, c) = h.dims4()?;
    Ok(h.reshape((b, hh * ww, c))?.mean(1)?)
}

/// Class logits from uncentred pooled features.
fn head(w: &BTreeMap<String, Tensor>, f: &Tensor) -> Result<Tensor> {
    Ok(f.matmul(&w["fc.weight"].t()?)?
        .broadcast_add(&w["fc.bias"])?)
}

impl DomainCnn {
    /// Train on `train` (labels must be `0..classes`), deterministically.
    pub fn train(
        spec: &DomainSpec,
        train: &ImageSet,
        classes: usize,
        image_size: usize,
        progress: &crate::progress::Bar,
    ) -> Result<Self> {
        let dev = train.pixels.device().clone();
        let mut rng = crate::util::rng("domain-cnn", spec.seed);
        let mut vars: Vec<(String, Var)> = vec![];
        let mut cin = 3;
        for (i, &c) in spec.widths.iter().enumerate() {
            vars.push((
                format!("conv{i}.weight"),
                Var::from_tensor(&crate::nn::init::kaiming_normal(
                    &mut rng,
                    &[c, 4 * cin],
                    &dev,
                )?)?,
            ));
            vars.push((format!("conv{i}.bias"), Var::zeros(c, DType::F32, &dev)?));
            cin = c;
        }
        vars.push((
            "fc.weight".into(),
            Var::from_tensor(&crate::nn::init::xavier_uniform(
                &mut rng,
                &[classes, cin],
                &dev,
            )?)?,
        ));
        vars.push(("fc.bias".into(), Var::zeros(classes, DType::F32, &dev)?));
        let mut opt = AdamW::new(
            vars.iter()
                .map(|(n, v)| (n.clone(), v.clone(), v.rank() >= 2))
                .collect(),
            spec.optim(spec.steps),
        )?;
        let labels = Tensor::from_vec(
            train.labels.iter().map(|&l| l as u32).collect::<Vec<_>>(),
            train.len(),
            &dev,
        )?;
        let mut order: Vec<usize> = (0..train.len()).collect();
        let mut pos = order.len();
        for _ in 0..spec.steps {
            let mut idx = Vec::with_capacity(spec.batch_size);
            while idx.len() < spec.batch_size.min(train.len()) {
                if pos == order.len() {
                    order.shuffle(&mut rng);
                    pos = 0;
                }
                idx.push(order[pos] as u32);
                pos += 1;
            }
            let ids = Tensor::from_vec(idx.clone(), idx.len(), &dev)?;
            let x = train.pixels.index_select(&ids, 0)?;
            let y = labels.index_select(&ids, 0)?;
            let w: BTreeMap<String, Tensor> = vars
                .iter()
                .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
                .collect();
            let logits = head(&w, &pooled(&w, &x)?)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            opt.step(&loss.backward()?)?;
            progress.inc(1);
        }
        let mut weights: BTreeMap<String, Tensor> = vars
            .iter()
            .map(|(n, v)| (n.clone(), v.as_detached_tensor()))
            .collect();
        // The feature centre: mean pooled feature over the training images.
        let mut sum: Option<Tensor> = None;
        let mut start = 0;
        while start < train.len() {
            let b = 256.min(train.len() - start);
            let f = pooled(&weights, &train.pixels.narrow(0, start, b)?)?.sum(0)?;
            sum = Some(match sum {
                Some(s) => (s + f)?,
                None => f,
            });
            start += b;
        }
        let mean = (sum.expect("non-empty training set") / train.len() as f64)?;
        weights.insert("feature_mean".into(), mean);
        Self::from_weights(weights, image_size)
    }

    pub fn from_weights(weights: BTreeMap<String, Tensor>, image_size: usize) -> Result<Self> {
        for k in [
            "conv0.weight",
            "conv1.weight",
            "conv2.weight",
            "fc.weight",
            "fc.bias",
            "feature_mean",
        ] {
            anyhow::ensure!(
                weights.contains_key(k),
                "domain extractor weights lack `{k}`"
            );
        }
        let classes = weights["fc.weight"].dim(0)?;
        let feat_dim = weights["fc.weight"].dim(1)?;
        let mut h = sha2::Sha256::default();
        for (k, v) in &weights {
            use sha2::Digest;
            h.update(k.as_bytes());
            for x in crate::nn::to_vec_f32(v)? {
                h.update(x.to_le_bytes());
            }
        }
        use sha2::Digest;
        let sha = crate::util::hex(&h.finalize());
        Ok(Self {
            weights,
            classes,
            feat_dim,
            image_size,
            sha,
            val_accuracy: None,
        })
    }

    pub fn weights(&self) -> &BTreeMap<String, Tensor> {
        &self.weights
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Top-1 accuracy on a labelled set.
    pub fn accuracy(&self, set: &ImageSet, batch: usize) -> Result<f64> {
        let ex = super::extract(self, &set.pixels, batch, true)?;
        let logits = ex.logits.unwrap_or_default();
        let correct = (0..ex.n)
            .filter(|&i| {
                let row = &logits[i * self.classes..(i + 1) * self.classes];
                let arg = row
                    .iter()
                    .enumerate()
                    .fold(0, |b, (j, v)| if *v > row[b] { j } else { b });
                arg == set.labels[i]
            })
            .count();
        Ok(correct as f64 / ex.n.max(1) as f64)
    }

    pub fn to_device(&self, dev: &Device) -> Result<Self> {
        let w = self
            .weights
            .iter()
            .map(|(k, v)| Ok((k.clone(), v.to_device(dev)?)))
            .collect::<Result<_>>()?;
        let mut s = Self::from_weights(w, self.image_size)?;
        s.val_accuracy = self.val_accuracy;
        Ok(s)
    }
}

impl Extractor for DomainCnn {
    fn protocol(&self) -> String {
        format!(
            "domain extractor (3-layer 2×2-stride CNN trained on the dataset's classes, not Inception) sha256:{} {}-d centred features, {} px input, no resize",
            &self.sha[..12],
            self.feat_dim,
            self.image_size
        )
    }
    fn dim(&self) -> usize {
        self.feat_dim
    }
    fn forward(&self, images: &Tensor) -> Result<super::ExtractorOutput> {
        let f = pooled(&self.weights, images)?;
        let logits = head(&self.weights, &f)?;
        let features = match self.weights.get("feature_mean") {
            Some(m) => f.broadcast_sub(m)?,
            None => f,
        };
        Ok(super::ExtractorOutput {
            features,
            logits: Some(logits),
        })
    }
}
