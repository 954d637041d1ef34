//! An experiment's class split made concrete: forget / retain / proxy training images for
//! unlearning, held-out forget / retain images for evaluation, and the pre-training set.

use super::{open_source, DataSource, ImageSet, Split};
use crate::config::{resolve_class, DatasetSpec};
use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

/// How many images of which class a run used (written next to the results).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Manifest {
    pub source: String,
    /// (class, role, split, images)
    pub counts: Vec<(String, String, String, usize)>,
}

pub struct Splits {
    /// The source's class identifiers, in label order.
    pub classes: Vec<String>,
    pub forget: Vec<usize>,
    pub retain: Vec<usize>,
    pub proxy: Vec<usize>,
    pub forget_train: ImageSet,
    pub retain_train: ImageSet,
    pub proxy_train: Option<ImageSet>,
    pub forget_eval: ImageSet,
    pub retain_eval: ImageSet,
    pub manifest: Manifest,
}

/// Draws per-class images from a source at one resolution, recording counts in a manifest.
struct Gather<'a> {
    src: &'a dyn DataSource,
    names: Vec<String>,
    seed: u64,
    size: usize,
    device: &'a Device,
    manifest: Manifest,
}

impl Gather<'_> {
    fn take(&mut self, classes: &[usize], split: Split, n: usize, role: &str) -> Result<ImageSet> {
        let mut raw = vec![];
        for &c in classes {
            let imgs = self.src.images(c, split, n, self.seed)?;
            self.manifest.counts.push((
                self.names[c].clone(),
                role.to_string(),
                format!("{split:?}").to_lowercase(),
                imgs.len(),
            ));
            raw.extend(imgs);
        }
        ImageSet::from_raw(&raw, self.size, self.device)
    }
}

impl Splits {
    /// Build all sets at the model's resolution `size`.
    pub fn build(spec: &DatasetSpec, size: usize, device: &Device) -> Result<Self> {
        let src = open_source(&spec.source)?;
        let classes = src.classes();
        let resolve = |refs: &[crate::config::ClassRef]| -> Result<Vec<usize>> {
            refs.iter()
                .map(|r| {
                    resolve_class(r, &classes).ok_or_else(|| anyhow::anyhow!("unknown class {r}"))
                })
                .collect()
        };
        let (forget, retain, proxy) = (
            resolve(&spec.forget_classes)?,
            resolve(&spec.retain_classes)?,
            resolve(&spec.proxy_classes)?,
        );
        let mut g = Gather {
            src: &*src,
            names: classes.clone(),
            seed: spec.sample_seed,
            size,
            device,
            manifest: Manifest {
                source: src.describe(),
                counts: vec![],
            },
        };
        let (nt, ne) = (spec.train_per_class, spec.eval_per_class);
        let forget_train = g.take(&forget, Split::Train, nt, "forget")?;
        let retain_train = g.take(&retain, Split::Train, nt, "retain")?;
        let proxy_train = if proxy.is_empty() {
            None
        } else {
            Some(g.take(&proxy, Split::Train, nt, "proxy")?)
        };
        let forget_eval = g.take(&forget, Split::Val, ne, "forget")?;
        let retain_eval = g.take(&retain, Split::Val, ne, "retain")?;
        let manifest = g.manifest;
        Ok(Self {
            classes,
            forget,
            retain,
            proxy,
            forget_train,
            retain_train,
            proxy_train,
            forget_eval,
            retain_eval,
            manifest,
        })
    }

    /// Training images of every class of the source, for pre-training the original model.
    pub fn pretrain_set(spec: &DatasetSpec, size: usize, device: &Device) -> Result<ImageSet> {
        let src = open_source(&spec.source)?;
        let n = spec.pretrain_per_class.unwrap_or(spec.train_per_class);
        let names = src.classes();
        let all: Vec<usize> = (0..names.len()).collect();
        let mut g = Gather {
            src: &*src,
            names,
            seed: spec.sample_seed,
            size,
            device,
            manifest: Manifest::default(),
        };
        g.take(&all, Split::Train, n, "pretrain")
    }

    /// The evaluation classes (forget then retain) relabelled 0..k, for the domain extractor.
    pub fn eval_classes(&self) -> Vec<usize> {
        self.forget.iter().chain(&self.retain).copied().collect()
    }

    /// `set` with labels mapped to positions in [`Splits::eval_classes`].
    pub fn relabel(&self, set: &ImageSet) -> Result<ImageSet> {
        let order = self.eval_classes();
        let labels = set
            .labels
            .iter()
            .map(|l| {
                order
                    .iter()
                    .position(|c| c == l)
                    .ok_or_else(|| anyhow::anyhow!("class {l} is not an evaluation class"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImageSet {
            pixels: set.pixels.clone(),
            labels,
            ids: set.ids.clone(),
        })
    }
}
