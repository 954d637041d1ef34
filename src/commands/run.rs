//! `i2i-unlearn run`: every unfinished cell of a grid, then the report.

use super::{checked_cache_dir, device, DeviceArg};
use crate::config::grid::Shard;
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The experiment file (YAML).
    pub experiment: PathBuf,
    /// Run only the K-th of N deterministic slices of the grid, e.g. `2/8`.
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
    /// Results folder (default: the experiment's `output`, else results/<name>).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Cache folder for pre-trained originals and extractors.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not write inpainting sample sheets (samples/<dataset>_<model>/<method>_<mask>_a<α>_s<seed>.png).
    #[arg(long)]
    pub no_samples: bool,
    /// Cells to run at the same time (default: the number of threads, RAYON_NUM_THREADS).
    #[arg(long, short)]
    pub jobs: Option<usize>,
}

pub fn run(args: RunArgs, progress: &Progress) -> Result<()> {
    let RunArgs {
        experiment,
        shard,
        device: d,
        output,
        cache_dir: cd,
        no_samples,
        jobs,
    } = args;

    let exp = crate::config::load(&experiment)?;
    let opts = crate::pipeline::RunOptions {
        shard,
        device: device(d)?,
        cache_dir: checked_cache_dir(cd)?,
        output,
        progress: progress.clone(),
        samples: !no_samples,
        jobs: jobs
            .unwrap_or_else(candle_core::utils::get_num_threads)
            .max(1),
    };
    let t = std::time::Instant::now();
    let s = crate::pipeline::run(&exp, &opts)?;
    let ph = &s.phases;
    progress.note(&format!(
        "done in {:.0} s: {} cells run, {} skipped | wall: data {:.1} s, pre-train {:.1} s, extractor {:.1} s, cells {:.1} s (unlearn {:.1} s + evaluate {:.1} s summed over cells), report {:.1} s → {}",
        t.elapsed().as_secs_f64(),
        s.cells_run,
        s.cells_skipped,
        ph.data,
        ph.pretrain,
        ph.extractor,
        ph.cells_wall,
        ph.unlearn,
        ph.evaluate,
        ph.report,
        s.output.join("table.md").display()
    ));
    Ok(())
}
