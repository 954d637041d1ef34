//! `i2i-unlearn fid`, `is` and `kid`: the metrics on folders of images (or `.npz` statistics), the
//! way `python -m pytorch_fid` and torch-fidelity compute them.

use super::fid::{frechet_distance, Stats, StatsAccumulator};
use super::inception::{InceptionExtractor, Variant};
use super::preprocess::ResizeMode;
use crate::data::folder;
use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use candle_core::Device;
use std::path::{Path, PathBuf};

/// What every metric command needs to build its extractor.
/// Which network `is --paper` scores with: the paper's ImageNet code (torchvision's
/// InceptionV3) or its Places-365 code (the Places365 ResNet-50).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PaperIs {
    Imagenet,
    Places365,
}

pub struct ExtractorArgs {
    pub weights: Option<PathBuf>,
    pub mode: ResizeMode,
    pub dims: usize,
    pub batch_size: usize,
    pub device: Device,
}

pub fn load_extractor(
    a: &ExtractorArgs,
    variant: Variant,
    p: &Progress,
) -> Result<InceptionExtractor> {
    let ex = super::open::inception(variant, a.weights.as_deref(), a.mode, a.dims, &a.device)?;
    p.note(&format!("extractor: {}", super::Extractor::protocol(&ex)));
    Ok(ex)
}

/// Features (and logits) of every image under `dir`, streamed in batches.
pub struct FolderOut {
    pub stats: Stats,
    pub logits: Vec<f32>,
    pub classes: usize,
    pub features: Vec<f32>,
    pub n: usize,
}

pub fn run_folder(
    ex: &InceptionExtractor,
    dir: &Path,
    batch: usize,
    keep_features: bool,
    p: &Progress,
) -> Result<FolderOut> {
    let run = |imgs: &[image::RgbImage]| -> Result<(Vec<f32>, Option<Vec<f32>>)> {
        let out = ex.run_rgb(imgs)?;
        let l = match ex.variant() {
            Variant::Fid => out.logits_unbiased,
            Variant::ImageNet => out.logits,
        };
        Ok((out.features, l))
    };
    run_folder_with(&run, ex.dims, dir, batch, keep_features, p)
}

/// [`run_folder`] with any extractor: `run` maps decoded images to (features, logits).
#[allow(clippy::type_complexity)]
pub fn run_folder_with(
    run: &dyn Fn(&[image::RgbImage]) -> Result<(Vec<f32>, Option<Vec<f32>>)>,
    dims: usize,
    dir: &Path,
    batch: usize,
    keep_features: bool,
    p: &Progress,
) -> Result<FolderOut> {
    let listing = folder::list_images_noted(dir)?;
    if let Some(n) = listing.note() {
        p.note(&n);
    }
    let files = listing.files;
    if files.is_empty() {
        return Err(user(format!(
            "no PNG or JPEG images under {}",
            dir.display()
        )));
    }
    let bar = p.bar(files.len() as u64, &format!("{}", dir.display()));
    let mut acc = StatsAccumulator::new(dims);
    let mut logits = vec![];
    let mut features = vec![];
    let mut failed = vec![];
    let mut n = 0;
    for chunk in files.chunks(batch.max(1)) {
        let dec = folder::decode_files(chunk);
        failed.extend(dec.failed);
        if !dec.images.is_empty() {
            let imgs: Vec<image::RgbImage> = dec.images.into_iter().map(|(_, i)| i).collect();
            n += imgs.len();
            let (f, l) = run(&imgs)?;
            acc.add_rows(&f)?;
            if keep_features {
                features.extend(&f);
            }
            if let Some(l) = l {
                logits.extend(l);
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if !failed.is_empty() {
        let d = folder::Decoded {
            images: vec![],
            failed,
        };
        eprintln!("{}", d.warning().expect("non-empty"));
    }
    if n < 2 {
        return Err(user(format!(
            "{}: fewer than 2 readable images",
            dir.display()
        )));
    }
    let classes = if logits.is_empty() {
        0
    } else {
        logits.len() / n
    };
    Ok(FolderOut {
        stats: acc.finish()?,
        logits,
        classes,
        features,
        n,
    })
}

fn stats_of(
    path: &Path,
    ex: &mut Option<InceptionExtractor>,
    a: &ExtractorArgs,
    p: &Progress,
) -> Result<Stats> {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
    {
        let s = Stats::load_npz(path)?;
        if s.dim() != a.dims {
            return Err(user(format!(
                "{}: statistics of {} dimensions, but --dims is {}",
                path.display(),
                s.dim(),
                a.dims
            )));
        }
        return Ok(s);
    }
    if !path.is_dir() {
        return Err(user(format!(
            "{}: not a folder of images or an .npz statistics file",
            path.display()
        )));
    }
    if ex.is_none() {
        *ex = Some(load_extractor(a, Variant::Fid, p)?);
    }
    let out = run_folder(ex.as_ref().expect("loaded"), path, a.batch_size, false, p)?;
    if out.n < a.dims {
        eprintln!(
            "warning: {}: N = {} images is below the feature dimension {}: the covariance is singular and FID is strongly biased; use more images or a smaller --dims",
            path.display(),
            out.n,
            a.dims
        );
    }
    Ok(out.stats)
}

/// `fid A [B]`: prints the protocol, then `FID: <value>` as the last line.
pub fn fid(
    paths: &[PathBuf],
    save_stats: Option<&Path>,
    a: &ExtractorArgs,
    p: &Progress,
) -> Result<Option<f64>> {
    // Check every input before computing anything.
    for path in paths {
        let npz = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz"));
        if !(path.is_dir() || (npz && path.is_file())) {
            return Err(user(format!(
                "{}: not a folder of images or an .npz statistics file",
                path.display()
            )));
        }
    }
    if let Some(w) = &a.weights {
        if !w.is_file() {
            return Err(user(format!("--weights {}: no such file", w.display())));
        }
    }
    let mut ex = None;
    let first = stats_of(&paths[0], &mut ex, a, p)?;
    if let Some(out) = save_stats {
        if paths[0]
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("npz"))
        {
            return Err(user(
                "--save-stats saves the statistics of a folder; the first path is already an .npz",
            ));
        }
        first.save_npz(out)?;
        p.note(&format!(
            "saved the statistics of {} (N = {}) to {}",
            paths[0].display(),
            first.n,
            out.display()
        ));
    }
    let Some(second) = paths.get(1) else {
        return Ok(None);
    };
    let b = stats_of(second, &mut ex, a, p)?;
    let v = frechet_distance(&first, &b)?;
    if let Some(e) = &ex {
        println!("protocol: {}; f64 statistics (covariance with N - 1); Frechet distance by symmetric eigendecomposition", super::Extractor::protocol(e));
    }
    let n = |s: &Stats| {
        if s.n == 0 {
            "? (statistics file)".to_string()
        } else {
            s.n.to_string()
        }
    };
    println!("N: {} and {}", n(&first), n(&b));
    println!("FID: {v}");
    Ok(Some(v))
}

/// `is DIR`: prints the protocol, then `IS: <mean> ± <std>` as the last line.
pub fn inception_score(
    dir: &Path,
    paper: Option<PaperIs>,
    splits: usize,
    a: &ExtractorArgs,
    p: &Progress,
) -> Result<(f64, f64)> {
    if !dir.is_dir() {
        return Err(user(format!("{}: not a folder of images", dir.display())));
    }
    let (out, protocol) = match paper {
        Some(PaperIs::Places365) => {
            let (path, _) = super::open::places365_weights(a.weights.as_deref())?;
            let ex = super::places365::Places365Extractor::load(&path, &a.device)?;
            p.note(&format!("extractor: {}", super::Extractor::protocol(&ex)));
            let run = |imgs: &[image::RgbImage]| -> Result<(Vec<f32>, Option<Vec<f32>>)> {
                let o = ex.run_rgb(imgs)?;
                Ok((
                    crate::nn::to_vec_f32(&o.features)?,
                    Some(crate::nn::to_vec_f32(&o.logits)?),
                ))
            };
            let out = run_folder_with(&run, 2048, dir, a.batch_size, false, p)?;
            (out, super::Extractor::protocol(&ex))
        }
        _ => {
            let variant = match paper {
                Some(_) => Variant::ImageNet,
                None => Variant::Fid,
            };
            let ex = load_extractor(a, variant, p)?;
            let out = run_folder(&ex, dir, a.batch_size, false, p)?;
            (out, super::Extractor::protocol(&ex))
        }
    };
    let paper = paper.is_some();
    let (mean, std) = if paper {
        super::is::inception_score_with(
            &out.logits,
            out.classes,
            splits,
            None,
            super::is::Splits::Floor,
        )?
    } else {
        let perm = super::np_random::RandomState::new(2020).permutation(out.n);
        super::is::inception_score_with(
            &out.logits,
            out.classes,
            splits,
            Some(&perm),
            super::is::Splits::TorchFidelity,
        )?
    };
    println!(
        "protocol: {protocol}; {} classes; {}",
        out.classes,
        if paper {
            "softmax of the biased logits, contiguous splits of floor(N/s), no shuffle (the paper's official code)"
        } else {
            "softmax of the unbiased logits in f64, splits i*N/s after numpy RandomState(2020).permutation (torch-fidelity)"
        }
    );
    println!("N: {}, splits: {splits}", out.n);
    println!("IS: {mean} ± {std}");
    Ok((mean, std))
}

/// `kid A B`: prints `KID: <mean> ± <std>` last.
pub fn kid(
    paths: &[PathBuf],
    subsets: usize,
    subset_size: usize,
    a: &ExtractorArgs,
    p: &Progress,
) -> Result<(f64, f64)> {
    for d in paths {
        if !d.is_dir() {
            return Err(user(format!("{}: not a folder of images", d.display())));
        }
    }
    let ex = load_extractor(a, Variant::Fid, p)?;
    let fa = run_folder(&ex, &paths[0], a.batch_size, true, p)?;
    let fb = run_folder(&ex, &paths[1], a.batch_size, true, p)?;
    let (mean, std) = super::kid::kid(
        &fa.features,
        &fb.features,
        a.dims,
        subsets,
        subset_size,
        2020,
    )?;
    println!(
        "protocol: {}; polynomial kernel (x.y/d + 1)^3, {subsets} subsets of {} drawn by numpy RandomState(2020) (torch-fidelity)",
        super::Extractor::protocol(&ex),
        subset_size.min(fa.n).min(fb.n)
    );
    println!("N: {} and {}", fa.n, fb.n);
    println!("KID: {mean} ± {std}");
    Ok((mean, std))
}
