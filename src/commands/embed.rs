//! `i2i-unlearn embed`: CLIP image embeddings of a folder of images.

use super::{device, DeviceArg};
use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    #[arg(long, default_value = crate::metrics::clip::PAPER_CLIP)]
    pub model: String,
    #[arg(long)]
    pub images: PathBuf,
    #[arg(long, value_name = "EMB.npy")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

pub fn run(args: EmbedArgs, progress: &Progress) -> Result<()> {
    let EmbedArgs {
        model,
        images,
        out,
        batch_size,
        device: d,
    } = args;

    if !images.is_dir() {
        return Err(user(format!("--images {}: not a folder", images.display())));
    }
    let listing = crate::data::folder::list_images_noted(&images)?;
    if let Some(n) = listing.note() {
        progress.note(&n);
    }
    let files = listing.files;
    if files.is_empty() {
        return Err(user(format!(
            "no PNG or JPEG images under {}",
            images.display()
        )));
    }
    let ex = crate::metrics::clip::ClipExtractor::load(&model, &device(d)?)?;
    progress.note(&format!(
        "{}: {} images",
        crate::metrics::Extractor::protocol(&ex),
        files.len()
    ));
    let bar = progress.bar(files.len() as u64, "embed");
    let (mut rows, mut names, mut failed) = (vec![], vec![], vec![]);
    for chunk in files.chunks(batch_size.max(1)) {
        let dec = crate::data::folder::decode_files(chunk);
        failed.extend(dec.failed);
        let imgs: Vec<image::RgbImage> = dec.images.iter().map(|(_, i)| i.clone()).collect();
        if !imgs.is_empty() {
            rows.extend(ex.embed_rgb(&imgs)?);
        }
        names.extend(
            dec.images
                .iter()
                .map(|(p, _)| p.strip_prefix(&images).unwrap_or(p).display().to_string()),
        );
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if !failed.is_empty() {
        eprintln!(
            "{}",
            crate::data::folder::Decoded {
                images: vec![],
                failed
            }
            .warning()
            .expect("non-empty")
        );
    }
    let dim = crate::metrics::Extractor::dim(&ex);
    let t = candle_core::Tensor::from_vec(rows, (names.len(), dim), &candle_core::Device::Cpu)?;
    t.write_npy(&out)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
    std::fs::write(
        format!("{}.files.txt", out.display()),
        names.join("\n") + "\n",
    )?;
    progress.note(&format!(
        "wrote {} ({} × {dim})",
        out.display(),
        names.len()
    ));
    Ok(())
}
