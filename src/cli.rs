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
  i2i-unlearn fetch experiments/miniplaces.yaml    # download what a run needs, then run offline

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

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    /// Masked autoencoder (transformers' ViTMAEForPreTraining).
    Mae,
    /// MAGE over its VQ-GAN tokenizer: a folder with config.json, mage*.pth and vqgan*.ckpt.
    Mage,
    /// Palette's diffusion UNet: a folder with config.json and 16_Network.pth (or *_Network.pth).
    Palette,
}

impl From<FamilyArg> for crate::models::FamilyName {
    fn from(f: FamilyArg) -> Self {
        match f {
            FamilyArg::Mae => crate::models::FamilyName::Mae,
            FamilyArg::Mage => crate::models::FamilyName::Mage,
            FamilyArg::Palette => crate::models::FamilyName::Palette,
        }
    }
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

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run an experiment grid (skips cells that are already stored).
    #[command(long_about = "\
Run every cell of an experiment grid that is not yet in the results folder.

Each (method, α, seed) is unlearned once — with the family's random training masks unless \
unlearn.mask says otherwise — and stored under <output>/unlearned/; then each cell evaluates \
that model under one evaluation mask: inpaint the held-out forget and retain images, compute the \
metrics, and store the rows in <output>/cells/<cell-id>.json (atomically: a killed run loses at \
most the cell in progress, and never an unlearning already stored). Then <output>/runs.parquet, \
runs.csv, table.md, table.tex and charts/ are rebuilt.

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
    /// Download everything an experiment needs (data shards, checkpoints, extractor weights).
    #[command(long_about = "\
Download everything an experiment reads from the network into the caches, so that a later \
`i2i-unlearn run` works offline (HF_HUB_OFFLINE=1, e.g. on a compute node without internet).

Hub datasets: only the parquet shards that hold the images the grid draws (train images of the \
forget / retain / proxy classes, evaluation images of the forget / retain classes, and the \
pre-training images of every class when a model is pre-trained here). Checkpoints (`weights:`), \
the FID Inception weights and the CLIP checkpoint when the metrics use them. Files go to the \
Hugging Face cache (HF_HOME, as Python's huggingface_hub); interrupted downloads resume; files \
already cached are not downloaded again. Local sources need nothing and are only checked.")]
    Fetch {
        /// The experiment file (YAML).
        experiment: PathBuf,
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

Masks: center:K, outpaint:R, random_box:K, random:PERCENT (e.g. center:8 on a 14×14 grid). \
--composite blur blends the output into the input as the official VQ-GAN evaluation does.")]
    Inpaint {
        /// Hub id (e.g. facebook/vit-mae-large) or a checkpoint folder.
        #[arg(long)]
        model: String,
        /// The model family of the checkpoint.
        #[arg(long, value_enum, default_value_t = FamilyArg::Mae)]
        family: FamilyArg,
        /// How the output is put back into the known pixels: paste, or blur (mask grown by
        /// 14 px and Gaussian-blurred, radius 7, at 256 px).
        #[arg(long, value_enum, default_value_t = CompositeArg::Paste)]
        composite: CompositeArg,
        /// Sampling steps for families that sample in steps (default: the family's).
        #[arg(long)]
        steps: Option<usize>,
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
    /// Fréchet Inception Distance between two folders of images (or .npz statistics), like
    /// `python -m pytorch_fid`.
    #[command(long_about = "\
FID between PATH_A and PATH_B, each a folder of images (searched recursively, sorted; PNG / JPEG in \
any letter case) or an .npz statistics file with `mu` and `sigma` as pytorch-fid writes them. \
The last line printed is `FID: <value>`.

InceptionV3 is pytorch-fid's FID network; its weights (pt_inception-2015-12-05-6726825d.pth) are \
downloaded once from pytorch-fid's release page into the Hugging Face cache folder and checked \
against the SHA-256 prefix in their name; --weights takes a local file (.pth, legacy or zip, or \
.safetensors). --mode chooses the published protocol (the number changes with it, so it is printed):
  pytorch-fid     bilinear resize to 299 (align_corners=False), 2x - 1         [pytorch-fid 0.3.0]
  clean           PIL bicubic per channel on float32, (x - 128)/128            [clean-fid 'clean']
  torch-fidelity  TF1 bilinear on uint8 values, (x - 128)/128                  [torch-fidelity]
  paper-is        PIL bilinear to 256, CIFAR mean/std, bilinear to 299          [the paper's IS]
Statistics are accumulated in f64 (mean, covariance with N - 1) in batches; the Fréchet \
distance uses symmetric eigendecompositions only. FID is biased in N: compare only equal N.

Examples:
  i2i-unlearn fid generated/ reference/
  i2i-unlearn fid generated/ --save-stats generated.npz
  i2i-unlearn fid generated.npz reference.npz")]
    Fid {
        /// A folder of images or an .npz statistics file.
        path_a: PathBuf,
        /// The second folder or .npz (optional with --save-stats).
        path_b: Option<PathBuf>,
        #[command(flatten)]
        ex: ExtractorFlags,
        /// Feature dimension: 64, 192, 768 or 2048 (pool3).
        #[arg(long, default_value_t = 2048)]
        dims: usize,
        /// Save the statistics of PATH_A (mu, sigma) in pytorch-fid's .npz format.
        #[arg(long, value_name = "OUT.npz")]
        save_stats: Option<PathBuf>,
    },
    /// Inception Score of a folder of images, as torch-fidelity computes it (or `--paper`).
    #[command(long_about = "\
Inception Score of the images under PATH. The last line printed is `IS: <mean> ± <std>`.

Default: torch-fidelity's definition: the FID InceptionV3 (pytorch-fid's weights), TF1 bilinear \
resize of uint8 inputs, softmax in f64 over the 1008 logits without bias, numpy \
RandomState(2020) shuffle, 10 splits, mean and population std over splits.
--paper: the official evaluation of the unlearning paper (its metric.py): each image resized to \
256x256 (PIL bilinear), normalised with the CIFAR-10 mean/std (a quirk of that code), upsampled \
to 299 (torch bilinear) into torchvision's ImageNet InceptionV3 (inception_v3_google-0cc3c7bd.pth, \
1000 classes, transform_input=False), softmax of the logits, contiguous splits of N/10 (remainder \
dropped), no shuffle (--mode paper-is; another --mode overrides the input).")]
    Is {
        /// A folder of images.
        path: PathBuf,
        #[command(flatten)]
        ex: ExtractorFlags,
        #[arg(long, default_value_t = 10)]
        splits: usize,
        /// The paper's variant (see above).
        #[arg(long)]
        paper: bool,
    },
    /// Kernel Inception Distance between two folders, as torch-fidelity computes it.
    Kid {
        path_a: PathBuf,
        path_b: PathBuf,
        #[command(flatten)]
        ex: ExtractorFlags,
        #[arg(long, default_value_t = 100)]
        subsets: usize,
        #[arg(long, default_value_t = 1000)]
        subset_size: usize,
    },
    /// CLIP image embeddings of a folder of images, as an .npy file.
    #[command(long_about = "\
Write the projected, L2-normalised CLIP image embeddings of every PNG / JPEG under --images to \
--out (.npy, float32, [N, projection_dim], rows in sorted file order; the order is also written \
to OUT.files.txt). The model is a hub id (openai/clip-vit-base-patch32, \
openai/clip-vit-large-patch14, laion/CLIP-ViT-H-14-laion2B-s32B-b79K) or a folder with \
config.json and model.safetensors. Preprocessing is CLIPImageProcessor's (PIL bicubic shorter \
side to 224, centre crop, OpenAI normalisation); JPEGs decode exactly as Pillow decodes them.")]
    Embed {
        #[arg(long, default_value = crate::metrics::clip::PAPER_CLIP)]
        model: String,
        #[arg(long)]
        images: PathBuf,
        #[arg(long, value_name = "EMB.npy")]
        out: PathBuf,
        #[arg(long, default_value_t = 16)]
        batch_size: usize,
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
    },
    /// Checks of the installation on a device (tools/gpu/check.sh runs them on CUDA).
    #[command(long_about = "\
Checks of the installation itself, for a new device or build:
  grads               one step of every unlearning method on a tiny MAE: every trained parameter \
gets a finite non-zero gradient and moves, every other parameter stays bit-identical (candle has \
ops whose backward is missing on some backends). Prints one JSON object per method; exit code 1 \
if any check fails.
  inception-weights   write InceptionV3 weights from the test formula (no download; not a trained \
network), for running `fid` / `is` with --weights on a machine without network.")]
    Selfcheck {
        #[command(subcommand)]
        what: SelfcheckCommand,
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
        /// Show each value's 95% bootstrap interval over images in table.md and table.tex
        /// (`metrics.bootstrap` resamples, stored with every cell; charts always draw them).
        #[arg(long)]
        ci: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SelfcheckCommand {
    /// Gradients and frozen parameters of one step of every method.
    Grads {
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
    },
    /// Write formula InceptionV3 weights (safetensors).
    InceptionWeights {
        #[arg(long, value_name = "FILE.safetensors")]
        out: PathBuf,
        /// `fid` (pytorch-fid's structure, 1008 classes) or `imagenet` (torchvision's, 1000).
        #[arg(long, default_value = "fid")]
        variant: String,
    },
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
        Command::Fetch { experiment } => {
            let exp = crate::config::load(&experiment)?;
            let n = crate::pipeline::fetch(&exp, &progress)?;
            progress.note(&format!(
                "{}: {n} items available offline; run it with HF_HUB_OFFLINE=1",
                experiment.display()
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
                "{}: valid; {} cells ({} selected), {} unlearned models to train ({} selected)",
                experiment.display(),
                all.len(),
                cells.len(),
                grid::unlearnings(&all),
                grid::unlearnings(&cells)
            );
            let oracles = cells
                .iter()
                .filter(|c| c.method.name == crate::unlearn::MethodName::Retrain)
                .map(|c| (c.dataset_idx, c.model_idx))
                .collect::<std::collections::BTreeSet<_>>()
                .len();
            if oracles > 0 {
                println!(
                    "plus {oracles} retrain oracle(s): the original's pre-training again without the forget classes (cached like it)"
                );
            }
            for n in grid::absent_rows(&exp) {
                println!("{n}");
            }
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
        } => {
            let n = crate::inpaint::run(
                &crate::inpaint::InpaintArgs {
                    model: &model,
                    family: family.into(),
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
                &progress,
            )?;
            progress.note(&format!("inpainted {n} images → {}", out.display()));
            Ok(())
        }
        Command::Fid {
            path_a,
            path_b,
            ex,
            dims,
            save_stats,
        } => {
            use crate::metrics::preprocess::ResizeMode;
            if path_b.is_none() && save_stats.is_none() {
                return Err(user(
                    "give two paths to compare, or one path with --save-stats OUT.npz",
                ));
            }
            let a = ex.args(ResizeMode::PytorchFid, dims)?;
            let paths: Vec<PathBuf> = std::iter::once(path_a).chain(path_b).collect();
            crate::metrics::commands::fid(&paths, save_stats.as_deref(), &a, &progress)?;
            Ok(())
        }
        Command::Is {
            path,
            ex,
            splits,
            paper,
        } => {
            use crate::metrics::preprocess::ResizeMode;
            let default = if paper {
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
            crate::metrics::commands::inception_score(&path, paper, splits, &a, &progress)?;
            Ok(())
        }
        Command::Kid {
            path_a,
            path_b,
            ex,
            subsets,
            subset_size,
        } => {
            use crate::metrics::preprocess::ResizeMode;
            let a = ex.args(ResizeMode::TorchFidelity, 2048)?;
            crate::metrics::commands::kid(
                &[path_a, path_b],
                subsets.max(1),
                subset_size,
                &a,
                &progress,
            )?;
            Ok(())
        }
        Command::Selfcheck { what } => match what {
            SelfcheckCommand::Grads { device: d } => {
                let reports = crate::selfcheck::grads(&device(d)?)?;
                let mut ok = true;
                for r in &reports {
                    ok &= r.ok();
                    println!("{}", serde_json::to_string(r)?);
                }
                if ok {
                    progress.note(&format!(
                        "selfcheck grads on {d:?}: all {} (family, method) steps ok",
                        reports.len()
                    ));
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "selfcheck grads on {d:?}: some parameters got no gradient or moved when frozen (see the JSON lines)"
                    ))
                }
            }
            SelfcheckCommand::InceptionWeights { out, variant } => {
                use crate::metrics::inception::Variant;
                let v = match variant.as_str() {
                    "fid" => Variant::Fid,
                    "imagenet" => Variant::ImageNet,
                    other => return Err(user(format!("--variant {other}: use fid or imagenet"))),
                };
                crate::metrics::inception::formula::write_weights(v, &out)?;
                progress.note(&format!(
                    "wrote formula {variant} InceptionV3 weights → {}",
                    out.display()
                ));
                Ok(())
            }
        },
        Command::Embed {
            model,
            images,
            out,
            batch_size,
            device: d,
        } => {
            if !images.is_dir() {
                return Err(user(format!("--images {}: not a folder", images.display())));
            }
            let files = crate::data::folder::list_images(&images)?;
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
                let imgs: Vec<image::RgbImage> =
                    dec.images.iter().map(|(_, i)| i.clone()).collect();
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
            let t =
                candle_core::Tensor::from_vec(rows, (names.len(), dim), &candle_core::Device::Cpu)?;
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
        Command::Report { dirs, out, ci } => {
            for d in &dirs {
                if !d.is_dir() {
                    return Err(user(format!("{} is not a folder (give the results folder of a run, e.g. results/quickstart)", d.display())));
                }
            }
            let out = out.unwrap_or_else(|| dirs[0].clone());
            let s =
                crate::report::build(&dirs, &out, crate::report::ReportOptions { ci }, &progress)?;
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
