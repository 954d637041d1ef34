//! `i2i-unlearn inpaint`: a folder of images through a checkpoint.

use super::{device, CompositeArg, DeviceArg};
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InpaintArgs {
    /// Hub id (e.g. facebook/vit-mae-large) or a checkpoint folder.
    #[arg(long)]
    pub model: String,
    /// The model family of the checkpoint.
    #[arg(long, value_enum, default_value_t = crate::models::FamilyName::Mae)]
    pub family: crate::models::FamilyName,
    /// How the output is put back into the known pixels: paste, or blur (mask grown by
    /// 14 px and Gaussian-blurred, radius 7, at 256 px).
    #[arg(long, value_enum, default_value_t = CompositeArg::Paste)]
    pub composite: CompositeArg,
    /// Sampling steps for families that sample in steps (default: the family's).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Which patches to hide.
    #[arg(long, default_value = "center:8")]
    pub mask: crate::masks::MaskSpec,
    /// Folder of input images (searched recursively).
    #[arg(long)]
    pub images: PathBuf,
    /// Output folder for the PNGs.
    #[arg(long)]
    pub out: PathBuf,
    /// Also save inputs, raw predictions, outputs and masks as one safetensors file.
    #[arg(long, value_name = "FILE.safetensors")]
    pub save_tensors: Option<PathBuf>,
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Seed of random masks (random_box, random).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: InpaintArgs, progress: &Progress) -> Result<()> {
    let InpaintArgs {
        model,
        family,
        composite,
        steps,
        mask,
        images,
        out,
        save_tensors,
        batch_size,
        seed,
        device: d,
    } = args;

    let n = crate::inpaint::run(
        &crate::inpaint::InpaintArgs {
            model: &model,
            family,
            generate: crate::models::GenerateOptions {
                steps,
                composite: composite.into(),
            },
            mask,
            images: &images,
            out: &out,
            save_tensors: save_tensors.as_deref(),
            batch_size,
            seed,
            device: device(d)?,
        },
        progress,
    )?;
    progress.note(&format!("inpainted {n} images → {}", out.display()));
    Ok(())
}
