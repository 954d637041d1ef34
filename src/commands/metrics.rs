//! `i2i-unlearn fid`, `is` and `kid`: the metrics on folders of images, as the Python tools
//! compute them.

use super::{device, DeviceArg};
use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FidArgs {
    /// A folder of images or an .npz statistics file.
    pub path_a: PathBuf,
    /// The second folder or .npz (optional with --save-stats).
    pub path_b: Option<PathBuf>,
    #[command(flatten)]
    pub ex: ExtractorFlags,
    /// Feature dimension: 64, 192, 768 or 2048 (pool3).
    #[arg(long, default_value_t = 2048)]
    pub dims: usize,
    /// Save the statistics of PATH_A (mu, sigma) in pytorch-fid's .npz format.
    #[arg(long, value_name = "OUT.npz")]
    pub save_stats: Option<PathBuf>,
}

pub fn fid(args: FidArgs, progress: &Progress) -> Result<()> {
    let FidArgs {
        path_a,
        path_b,
        ex,
        dims,
        save_stats,
    } = args;

    use crate::metrics::preprocess::ResizeMode;
    if path_b.is_none() && save_stats.is_none() {
        return Err(user(
            "give two paths to compare, or one path with --save-stats OUT.npz",
        ));
    }
    let a = ex.args(ResizeMode::PytorchFid, dims)?;
    let paths: Vec<PathBuf> = std::iter::once(path_a).chain(path_b).collect();
    crate::metrics::commands::fid(&paths, save_stats.as_deref(), &a, progress)?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct IsArgs {
    /// A folder of images.
    pub path: PathBuf,
    #[command(flatten)]
    pub ex: ExtractorFlags,
    #[arg(long, default_value_t = 10)]
    pub splits: usize,
    /// The paper's variant (see above): `--paper` or `--paper=imagenet` for its ImageNet code,
    /// `--paper=places365` for its Places-365 code.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "imagenet")]
    pub paper: Option<crate::metrics::commands::PaperIs>,
}

pub fn is(args: IsArgs, progress: &Progress) -> Result<()> {
    let IsArgs {
        path,
        ex,
        splits,
        paper,
    } = args;

    use crate::metrics::preprocess::ResizeMode;
    let default = if paper.is_some() {
        ResizeMode::PaperIs
    } else {
        ResizeMode::TorchFidelity
    };
    let a = ex.args(default, 2048)?;
    if splits == 0 {
        return Err(user(
            "--splits 0: the Inception Score needs at least 1 split",
        ));
    }
    crate::metrics::commands::inception_score(&path, paper, splits, &a, progress)?;
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct KidArgs {
    pub path_a: PathBuf,
    pub path_b: PathBuf,
    #[command(flatten)]
    pub ex: ExtractorFlags,
    #[arg(long, default_value_t = 100)]
    pub subsets: usize,
    #[arg(long, default_value_t = 1000)]
    pub subset_size: usize,
}

pub fn kid(args: KidArgs, progress: &Progress) -> Result<()> {
    let KidArgs {
        path_a,
        path_b,
        ex,
        subsets,
        subset_size,
    } = args;

    use crate::metrics::preprocess::ResizeMode;
    let a = ex.args(ResizeMode::TorchFidelity, 2048)?;
    crate::metrics::commands::kid(&[path_a, path_b], subsets.max(1), subset_size, &a, progress)?;
    Ok(())
}

/// Extractor settings shared by `fid`, `is` and `kid`.
#[derive(clap::Args, Debug)]
pub struct ExtractorFlags {
    /// A local weights file instead of the default download.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Resize / normalisation protocol: pytorch-fid, clean or torch-fidelity.
    #[arg(long)]
    pub mode: Option<crate::metrics::preprocess::ResizeMode>,
    /// Images per forward pass.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

impl ExtractorFlags {
    fn args(
        &self,
        default_mode: crate::metrics::preprocess::ResizeMode,
        dims: usize,
    ) -> Result<crate::metrics::commands::ExtractorArgs> {
        if ![64, 192, 768, 2048].contains(&dims) {
            return Err(user(format!("--dims {dims}: use 64, 192, 768 or 2048")));
        }
        Ok(crate::metrics::commands::ExtractorArgs {
            weights: self.weights.clone(),
            mode: self.mode.unwrap_or(default_mode),
            dims,
            batch_size: self.batch_size.max(1),
            device: device(self.device)?,
        })
    }
}
