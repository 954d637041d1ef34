//! Data: where images come from ([`DataSource`]), how they become tensors ([`ImageSet`]) and how
//! an experiment's class split turns them into forget / retain / proxy / evaluation sets
//! ([`split`]).
//!
//! A source knows its classes and hands out decoded RGB images per (class, split), deterministically
//! for a seed. New sources (image folders, hub parquet or tar shards) implement the same trait and
//! get one line in [`open_source`].

pub mod archive;
pub mod augment;
mod classes;
pub mod embedded;
pub mod folder;
pub mod held_out;
#[cfg(feature = "parquet")]
pub mod hub_parquet;
pub mod hub_shards;
pub mod hub_tar;
pub mod image_folder;
pub mod places365;
pub mod presets;
pub mod spec;
pub mod split;

pub use spec::{resolve_class, ClassRef, DatasetSpec};

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Which part of a dataset: images for training (unlearning, pre-training) or for evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    Train = 0,
    Val = 1,
}

/// One decoded image, interleaved RGB bytes, with a stable id and its class index in the source.
#[derive(Clone, Debug)]
pub struct RawImage {
    pub id: u64,
    pub class: usize,
    pub width: usize,
    pub height: usize,
    pub rgb: Vec<u8>,
}

/// What a source handed out for one class and split.
#[derive(Clone, Debug, Default)]
pub struct Draw {
    pub images: Vec<RawImage>,
    /// How many images of the class the split has.
    pub available: usize,
    /// Files that could not be decoded: (name, reason). They are skipped, never silently.
    pub failed: Vec<(String, String)>,
}

impl Draw {
    /// A draw of `class` from decode results in draw order: (id, name, the image or why it could
    /// not be read). Readable images are kept; the others are listed in `failed` by name.
    pub fn from_decoded(
        class: usize,
        available: usize,
        decoded: Vec<(u64, String, Result<image::RgbImage>)>,
    ) -> Self {
        let mut d = Draw {
            available,
            ..Default::default()
        };
        for (id, name, r) in decoded {
            match r {
                Ok(img) => d.images.push(RawImage {
                    id,
                    class,
                    width: img.width() as usize,
                    height: img.height() as usize,
                    rgb: img.into_raw(),
                }),
                Err(e) => d.failed.push((name, format!("{e:#}"))),
            }
        }
        d
    }
}

/// A source of labelled images.
pub trait DataSource: Send + Sync {
    /// One line for logs and manifests.
    fn describe(&self) -> String;
    /// Class identifiers, in label order.
    fn classes(&self) -> Vec<String>;
    /// Up to `n` images of class `class` from `split`, the same ones for the same `seed`.
    fn draw(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Draw>;
    /// Announce the draws a run will make, so a remote source can fetch what they need at once
    /// (`(class, split, n)`; the same `seed` as the draws).
    fn prepare(&self, _needs: &[(usize, Split, usize)], _seed: u64) -> Result<()> {
        Ok(())
    }
    /// Put on this machine everything the draws `needs` could read (for `i2i-unlearn fetch`),
    /// without reading or decoding images. Local sources have nothing to do.
    fn download(&self, _needs: &[(usize, Split, usize)]) -> Result<()> {
        Ok(())
    }
    /// [`DataSource::draw`] without the bookkeeping.
    fn images(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Vec<RawImage>> {
        Ok(self.draw(class, split, n, seed)?.images)
    }
}

/// Where images come from, as written in the experiment file (`source: {kind: ...}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceSpec {
    /// Procedural textures built into the binary; needs no download.
    Embedded(embedded::EmbeddedConfig),
    /// A local folder of images (class sub-folders or label files).
    ImageFolder(image_folder::FolderConfig),
    /// A hub dataset repository of parquet shards (image bytes + integer label).
    #[cfg(feature = "parquet")]
    HubParquet(hub_parquet::ParquetConfig),
    /// A hub dataset repository of tar shards (webdataset `.cls` labels, or labels in file names
    /// or folders), plain or gzipped.
    HubTar(hub_tar::TarConfig),
    /// Places-365 from MIT CSAIL's official archives (by URL, or in a local folder): downloaded
    /// once, only the classes a run needs extracted.
    Places365(places365::Places365Config),
}

impl SourceSpec {
    /// Make the source's relative local paths relative to `base` (the experiment file's folder):
    /// an image folder's root, a local class list (`./…`, `../…`).
    pub fn resolve_relative(&mut self, base: &std::path::Path) {
        // Canonical where it exists, so that the same file gives the same cell ids from any
        // working directory.
        fn join(base: &std::path::Path, p: &std::path::Path) -> std::path::PathBuf {
            let j = base.join(p);
            std::fs::canonicalize(&j).unwrap_or(j)
        }
        fn local(s: &mut String, base: &std::path::Path) {
            if s.starts_with("./") || s.starts_with("../") {
                *s = join(base, std::path::Path::new(s.as_str()))
                    .display()
                    .to_string();
            }
        }
        match self {
            SourceSpec::Embedded(_) => {}
            SourceSpec::ImageFolder(c) => {
                if c.root.is_relative() {
                    c.root = join(base, &c.root);
                }
            }
            #[cfg(feature = "parquet")]
            SourceSpec::HubParquet(c) => {
                if let Some(f) = c.classes_file.as_mut() {
                    local(f, base);
                }
            }
            SourceSpec::HubTar(c) => local(&mut c.classes_file, base),
            SourceSpec::Places365(c) => local(&mut c.base, base),
        }
    }

    /// Where a local source reads from, for messages.
    pub fn local_path(&self) -> Option<&std::path::Path> {
        match self {
            SourceSpec::ImageFolder(c) => Some(&c.root),
            SourceSpec::Places365(c) if !c.is_remote() => Some(std::path::Path::new(&c.base)),
            _ => None,
        }
    }

    /// Whether the source is on this machine (a local source whose folder exists, or embedded).
    pub fn is_present(&self) -> bool {
        match self {
            SourceSpec::Embedded(_) => true,
            SourceSpec::ImageFolder(c) => c.root.is_dir(),
            #[cfg(feature = "parquet")]
            SourceSpec::HubParquet(_) => false,
            SourceSpec::HubTar(_) => false,
            SourceSpec::Places365(c) => !c.is_remote() && std::path::Path::new(&c.base).is_dir(),
        }
    }
}

/// The registry of sources: one line per kind.
pub fn open_source(spec: &SourceSpec) -> Result<Box<dyn DataSource>> {
    Ok(match spec {
        SourceSpec::Embedded(c) => Box::new(embedded::Embedded::new(c.clone())?),
        SourceSpec::ImageFolder(c) => Box::new(image_folder::ImageFolder::open(c.clone())?),
        #[cfg(feature = "parquet")]
        SourceSpec::HubParquet(c) => Box::new(hub_parquet::open(c)?),
        SourceSpec::HubTar(c) => Box::new(hub_tar::open(c)?),
        SourceSpec::Places365(c) => Box::new(places365::Places365::open(c.clone())?),
    })
}

/// A dataset's source as its runs read it: [`DatasetSpec::effective_source`], with the
/// evaluation split held out of the training split when `val_from_train` asks for it.
pub fn open_dataset(spec: &DatasetSpec) -> Result<Box<dyn DataSource>> {
    let src = open_source(spec.effective_source())?;
    Ok(match &spec.val_from_train {
        Some(h) => Box::new(held_out::HeldOut::new(src, h.clone())),
        None => src,
    })
}

/// Images as a tensor `[N, 3, S, S]` in [0, 1], with labels and stable ids.
#[derive(Clone, Debug)]
pub struct ImageSet {
    pub pixels: Tensor,
    pub labels: Vec<usize>,
    pub ids: Vec<u64>,
}

impl ImageSet {
    /// Resize (shorter side to `size`, bilinear) and centre-crop each image, then stack.
    pub fn from_raw(raw: &[RawImage], size: usize, device: &Device) -> Result<Self> {
        let mut data = Vec::with_capacity(raw.len() * 3 * size * size);
        for r in raw {
            data.extend(to_chw(r, size)?);
        }
        Ok(Self {
            pixels: Tensor::from_vec(data, (raw.len(), 3, size, size), device)?,
            labels: raw.iter().map(|r| r.class).collect(),
            ids: raw.iter().map(|r| r.id).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Result<Self> {
        let ids_t = Tensor::from_vec(
            idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
            idx.len(),
            self.pixels.device(),
        )?;
        Ok(Self {
            pixels: self.pixels.index_select(&ids_t, 0)?,
            labels: idx.iter().map(|&i| self.labels[i]).collect(),
            ids: idx.iter().map(|&i| self.ids[i]).collect(),
        })
    }

    /// Concatenate several sets.
    pub fn concat(sets: &[&ImageSet]) -> Result<Self> {
        let px: Vec<&Tensor> = sets.iter().map(|s| &s.pixels).collect();
        Ok(Self {
            pixels: Tensor::cat(&px, 0)?,
            labels: sets.iter().flat_map(|s| s.labels.clone()).collect(),
            ids: sets.iter().flat_map(|s| s.ids.clone()).collect(),
        })
    }

    /// Images `[start, start + len)`.
    pub fn slice(&self, start: usize, len: usize) -> Result<Self> {
        Ok(Self {
            pixels: self.pixels.narrow(0, start, len)?,
            labels: self.labels[start..start + len].to_vec(),
            ids: self.ids[start..start + len].to_vec(),
        })
    }
}

/// One image as CHW floats in [0, 1] at `size` × `size`.
fn to_chw(r: &RawImage, size: usize) -> Result<Vec<f32>> {
    anyhow::ensure!(
        r.rgb.len() == r.width * r.height * 3,
        "image {} has {} bytes for {}×{} RGB",
        r.id,
        r.rgb.len(),
        r.width,
        r.height
    );
    let img: image::RgbImage = if r.width == size && r.height == size {
        image::RgbImage::from_raw(r.width as u32, r.height as u32, r.rgb.clone())
            .expect("checked length")
    } else {
        let src = image::RgbImage::from_raw(r.width as u32, r.height as u32, r.rgb.clone())
            .expect("checked length");
        let scale = size as f64 / r.width.min(r.height) as f64;
        let (w, h) = (
            ((r.width as f64 * scale).round() as u32).max(size as u32),
            ((r.height as f64 * scale).round() as u32).max(size as u32),
        );
        let resized = image::imageops::resize(&src, w, h, image::imageops::FilterType::Triangle);
        let (x0, y0) = ((w - size as u32) / 2, (h - size as u32) / 2);
        image::imageops::crop_imm(&resized, x0, y0, size as u32, size as u32).to_image()
    };
    let mut out = vec![0f32; 3 * size * size];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * size * size + i] = p[c] as f32 / 255.0;
        }
    }
    Ok(out)
}

/// Convert `[3, H, W]` floats in [0, 1] to an 8-bit RGB image (rounding, clamping).
pub fn tensor_to_rgb(t: &Tensor) -> Result<image::RgbImage> {
    let (c, h, w) = t.dims3()?;
    anyhow::ensure!(c == 3, "expected 3 channels, got {c}");
    let v = t
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    let mut img = image::RgbImage::new(w as u32, h as u32);
    for y in 0..h {
        for x in 0..w {
            let px = |ch: usize| (v[ch * h * w + y * w + x].clamp(0.0, 1.0) * 255.0).round() as u8;
            img.put_pixel(x as u32, y as u32, image::Rgb([px(0), px(1), px(2)]));
        }
    }
    Ok(img)
}
