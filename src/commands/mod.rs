//! One file per command: its arguments (clap) and its body. `cli.rs` lists the commands and
//! dispatches to these files.

pub mod check;
pub mod embed;
pub mod fetch;
pub mod inpaint;
pub mod metrics;
pub mod report;
pub mod run;
pub mod selfcheck;
pub mod verify;

use crate::error::user;
use anyhow::Result;
use clap::ValueEnum;
use std::path::PathBuf;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU (threads: RAYON_NUM_THREADS, default all physical cores).
    Cpu,
    /// The first CUDA GPU; needs a binary built with `--features cuda`.
    Cuda,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompositeArg {
    /// Known pixels kept, the prediction inside the hole.
    Paste,
    /// The official VQ-GAN evaluation's blurred compositing.
    Blur,
}

impl From<CompositeArg> for crate::masks::Composite {
    fn from(c: CompositeArg) -> Self {
        match c {
            CompositeArg::Paste => crate::masks::Composite::Paste,
            CompositeArg::Blur => crate::masks::Composite::Blur,
        }
    }
}

/// [`cache_dir`], refused (exit 2) when it names something that is not a folder.
pub fn checked_cache_dir(explicit: Option<PathBuf>) -> Result<PathBuf> {
    let from_flag = explicit.is_some();
    let p = cache_dir(explicit);
    if p.exists() && !p.is_dir() {
        return Err(user(format!(
            "{} {} is not a folder: give a folder for the cache of pre-trainings and extractors (it is created when missing)",
            if from_flag { "--cache-dir" } else { "the cache" },
            p.display()
        )));
    }
    Ok(p)
}

/// The cache folder: explicit, `$I2I_UNLEARN_CACHE`, `$XDG_CACHE_HOME/i2i-unlearn`, `~/.cache/i2i-unlearn`.
pub fn cache_dir(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    // An empty variable is unset (`I2I_UNLEARN_CACHE= run …` must not cache in the working
    // folder).
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("I2I_UNLEARN_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = var("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("i2i-unlearn");
    }
    var("HOME")
        .map(|h| PathBuf::from(h).join(".cache").join("i2i-unlearn"))
        .unwrap_or_else(|| PathBuf::from(".i2i-unlearn-cache"))
}

pub fn device(d: DeviceArg) -> Result<candle_core::Device> {
    match d {
        DeviceArg::Cpu => Ok(candle_core::Device::Cpu),
        DeviceArg::Cuda => {
            if cfg!(feature = "cuda") {
                candle_core::Device::new_cuda(0)
                    .map_err(|e| user(format!("--device cuda: no usable CUDA device ({e})")))
            } else {
                Err(user("--device cuda: this binary was built without CUDA; rebuild with `cargo build --release --features cuda`"))
            }
        }
    }
}
