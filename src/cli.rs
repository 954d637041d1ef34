//! Command-line interface (clap). Exit codes: 0 success, 1 the run failed, 2 bad input (a config
//! error, a missing file, a bad flag).

use crate::config::grid::{self, Shard};
use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const ABOUT: &str = "Machine unlearning for image-to-image generative models: run experiment grids, compute FID / IS / CLIP-style metrics, write paper-style tables and charts.";

const LONG_ABOUT: &str = "\
Machine unlearning for image-to-image generative models (Li et al., ICLR 2024).

An experiment file (YAML) describes a grid: datasets × model families × unlearning methods × \
masks × α × seeds. `run` pre-trains or loads the original model, runs every unfinished cell \
(unlearn → inpaint the held-out forget and retain images → metrics), stores each finished cell \
atomically, and writes the report. Re-running the same command skips finished cells.

Start here:
  i2i-unlearn run experiments/quickstart.yaml     # offline, CPU, a few minutes
  i2i-unlearn report results/quickstart            # rebuild tables and charts

Exit codes: 0 = success, 1 = the run failed, 2 = bad input (config, path, flag).";

#[derive(Parser, Debug)]
#[command(name = "i2i-unlearn", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Print nothing but errors (no progress bars, no notes).
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum DeviceArg {
    /// The CPU (threads: RAYON_NUM_THREADS, default all physical cores).
    Cpu,
    /// The first CUDA GPU; needs a binary built with `--features cuda`.
    Cuda,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an experiment grid (skips cells that are already stored).
    #[command(long_about = "\
Run every cell of an experiment grid that is not yet in the results folder.

Each cell: copy the original model, unlearn (unless the method is `original`), inpaint the \
held-out forget and retain images with the cell's mask, compute the metrics, and store the rows \
in <output>/cells/<cell-id>.json (atomically: a killed run loses at most the cell in progress). \
Then <output>/runs.parquet, runs.csv, table.md, table.tex and charts/ are rebuilt.

The original model is pre-trained on first use and cached by content hash under the cache folder \
(--cache-dir, $I2I_UNLEARN_CACHE, or ~/.cache/i2i-unlearn), as is the domain extractor.

Spread a grid over machines with --shard K/N (e.g. a Slurm array: --shard $((SLURM_ARRAY_TASK_ID+1))/N), \
then merge with `i2i-unlearn report DIR1 DIR2 ...`.")]
    Run {
        /// The experiment file (YAML).
        experiment: PathBuf,
        /// Run only the K-th of N deterministic slices of the grid, e.g. `2/8`.
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
        /// Where to compute.
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
        /// Results folder (default: the experiment's `output`, else results/<name>).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Cache folder for pre-trained originals and extractors.
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Do not write inpainting sample sheets (samples/<cell-id>.png).
        #[arg(long)]
        no_samples: bool,
        /// Cells to run at the same time (default: the number of threads, RAYON_NUM_THREADS).
        #[arg(long, short)]
        jobs: Option<usize>,
    },
    /// Validate an experiment file and list its cells, without running anything.
    Check {
        /// The experiment file (YAML).
        experiment: PathBuf,
        #[arg(long, value_name = "K/N")]
        shard: Option<Shard>,
    },
    /// Inpaint a folder of images with a model (hub id or local checkpoint folder).
    #[command(long_about = "\
Inpaint (or outpaint) every PNG / JPEG under --images with a checkpoint and write one PNG per image \
to --out (same relative paths). The model is a hub id (facebook/vit-mae-base, optionally @revision; \
downloaded once into the Hugging Face cache, HF_HOME / HF_ENDPOINT / HF_TOKEN / HF_HUB_OFFLINE \
honoured) or a folder with config.json and model.safetensors / pytorch_model.bin.

Images are resized to the model's resolution (bicubic, as transformers' image processor). The \
output keeps the known pixels and takes the model's prediction where the mask hides them. \
With --save-tensors, the raw predictions (not pasted) are saved too.

Masks: center:K, outpaint:R, random_box:K, random:PERCENT (e.g. center:8 on a 14×14 grid).")]
    Inpaint {
        /// Hub id (e.g. facebook/vit-mae-large) or a checkpoint folder.
        #[arg(long)]
        model: String,
        /// Which patches to hide.
        #[arg(long, default_value = "center:8")]
        mask: crate::masks::MaskSpec,
        /// Folder of input images (searched recursively).
        #[arg(long)]
        images: PathBuf,
        /// Output folder for the PNGs.
        #[arg(long)]
        out: PathBuf,
        /// Also save inputs, raw predictions, outputs and masks as one safetensors file.
        #[arg(long, value_name = "FILE.safetensors")]
        save_tensors: Option<PathBuf>,
        #[arg(long, default_value_t = 8)]
        batch_size: usize,
        /// Seed of random masks (random_box, random).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
    },
    /// Rebuild runs.parquet, runs.csv, table.md, table.tex and charts from stored cells.
    #[command(long_about = "\
Rebuild the report from the cell records of one or more results folders (for example the \
folders written by the shards of a grid). Only cells of the folders' current grid.json are used; \
a cell found in several folders counts once. Output goes to the first folder unless --out is given.")]
    Report {
        /// Results folders (each with cells/ and grid.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the report (default: the first folder).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// The cache folder: explicit, `$I2I_UNLEARN_CACHE`, `$XDG_CACHE_HOME/i2i-unlearn`, `~/.cache/i2i-unlearn`.
pub fn cache_dir(explicit: Option<PathBuf>) -> PathBuf {
    if let Some(p) = explicit {
        return p;
    }
    if let Some(p) = std::env::var_os("I2I_UNLEARN_CACHE") {
        return PathBuf::from(p);
    }
    if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(p).join("i2i-unlearn");
    }
    std::env::var_os("HOME")
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

pub fn main_with(cli: Cli) -> Result<()> {
    let progress = Progress::new(cli.quiet);
    match cli.command {
        Command::Run {
            experiment,
            shard,
            device: d,
            output,
            cache_dir: cd,
            no_samples,
            jobs,
        } => {
            let exp = crate::config::load(&experiment)?;
            let opts = crate::pipeline::RunOptions {
                shard,
                device: device(d)?,
                cache_dir: cache_dir(cd),
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
        Command::Check { experiment, shard } => {
            let exp = crate::config::load(&experiment)?;
            let all = grid::expand(&exp);
            let cells = match shard {
                Some(s) => s.select(all.clone()),
                None => all.clone(),
            };
            println!(
                "{}: valid; {} cells ({} selected)",
                experiment.display(),
                all.len(),
                cells.len()
            );
            for c in cells {
                let a = c
                    .alpha
                    .map(|a| format!("α={a}"))
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{}  {:<10} {:<10} {:<24} {:<8} {:<12} seed {}",
                    c.id, c.dataset, c.model, c.label, a, c.mask, c.seed
                );
            }
            Ok(())
        }
        Command::Inpaint {
            model,
            mask,
            images,
            out,
            save_tensors,
            batch_size,
            seed,
            device: d,
        } => {
            let n = crate::inpaint::run(
                &crate::inpaint::InpaintArgs {
                    model: &model,
                    mask,
                    images: &images,
                    out: &out,
                    save_tensors: save_tensors.as_deref(),
                    batch_size,
                    seed,
                    device: device(d)?,
                },
                &progress,
            )?;
            progress.note(&format!("inpainted {n} images → {}", out.display()));
            Ok(())
        }
        Command::Report { dirs, out } => {
            for d in &dirs {
                if !d.is_dir() {
                    return Err(user(format!("{} is not a folder (give the results folder of a run, e.g. results/quickstart)", d.display())));
                }
            }
            let out = out.unwrap_or_else(|| dirs[0].clone());
            let s = crate::report::build(&dirs, &out, &progress)?;
            if s.cells == 0 {
                return Err(user(format!(
                    "no finished cells in {} (run the experiment first)",
                    dirs.iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            println!("{}", out.join("table.md").display());
            Ok(())
        }
    }
}
