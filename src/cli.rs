//! Command-line interface (clap). Exit codes: 0 success, 1 the run failed, 2 bad input (a config
//! error, a missing file, a bad flag).

use crate::commands;
use crate::progress::Progress;
use anyhow::Result;
use clap::{Parser, Subcommand};

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
    /// Run a model even when its parameters' training state alone exceeds this machine's
    /// memory (by default refused before anything is allocated).
    #[arg(long, global = true)]
    pub ignore_memory_limit: bool,
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
(--cache-dir, $I2I_UNLEARN_CACHE, or ~/.cache/i2i-unlearn), as is the domain extractor. A \
pre-training saves its whole state beside its cache entry every 5 minutes ($I2I_CHECKPOINT_SECS): \
a killed run goes on from there and ends with the same weights as one never killed.

Spread a grid over machines with --shard K/N (e.g. a Slurm array: --shard $((SLURM_ARRAY_TASK_ID+1))/N), \
then merge with `i2i-unlearn report DIR1 DIR2 ...`.")]
    Run(commands::run::RunArgs),
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
    Fetch(commands::fetch::FetchArgs),
    /// Validate an experiment file and list its cells, without running anything.
    Check(commands::check::CheckArgs),
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
    Inpaint(commands::inpaint::InpaintArgs),
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
    Fid(commands::metrics::FidArgs),
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
dropped), no shuffle (--mode paper-is; another --mode overrides the input).
--paper=places365: the paper's Places-365 evaluation (its eval365.py): CSAIL's Places365 ResNet-50 \
(resnet50_places365.pth.tar, 365 classes; downloaded from places2.csail.mit.edu and pinned on first \
download, or --weights FILE), each image resized to 256x256 (PIL bilinear), centre crop 224, \
ImageNet mean/std, softmax of the logits, contiguous splits of N/10. The official code shuffles the \
files unseeded first; here the split order is the sorted file order.")]
    Is(commands::metrics::IsArgs),
    /// Kernel Inception Distance between two folders, as torch-fidelity computes it.
    Kid(commands::metrics::KidArgs),
    /// CLIP image embeddings of a folder of images, as an .npy file.
    #[command(long_about = "\
Write the projected, L2-normalised CLIP image embeddings of every PNG / JPEG under --images to \
--out (.npy, float32, [N, projection_dim], rows in sorted file order; the order is also written \
to OUT.files.txt). The model is a hub id (openai/clip-vit-base-patch32, \
openai/clip-vit-large-patch14, laion/CLIP-ViT-H-14-laion2B-s32B-b79K) or a folder with \
config.json and model.safetensors. Preprocessing is CLIPImageProcessor's (PIL bicubic shorter \
side to 224, centre crop, OpenAI normalisation); JPEGs decode exactly as Pillow decodes them.")]
    Embed(commands::embed::EmbedArgs),
    /// Checks of the installation on a device (tools/gpu/check.sh runs them on CUDA).
    #[command(long_about = "\
Checks of the installation itself, for a new device or build:
  grads               one step of every unlearning method on a tiny MAE: every trained parameter \
gets a finite non-zero gradient and moves, every other parameter stays bit-identical (candle has \
ops whose backward is missing on some backends). Prints one JSON object per method; exit code 1 \
if any check fails.
  inception-weights   write InceptionV3 weights from the test formula (no download; not a trained \
network), for running `fid` / `is` with --weights on a machine without network.")]
    Selfcheck(commands::selfcheck::SelfcheckArgs),
    /// Rebuild runs.parquet, runs.csv, table.md, table.tex and charts from stored cells.
    #[command(long_about = "\
Rebuild the report from the cell records of one or more results folders (for example the \
folders written by the shards of a grid). Only cells of the folders' current grid.json are used; \
a cell found in several folders counts once. Output goes to the first folder unless --out is given.")]
    Report(commands::report::ReportArgs),
    /// Re-check a results folder: cells, unlearned models, manifests and the cache entries it used.
    #[command(long_about = "\
Re-check everything a results folder's tables rest on: every cell record parses, is stored under \
its own id and comes from the same original model as the other cells of its (dataset, model); \
every unlearned model matches the SHA-256 sealed beside it and names its own key and original; \
the manifests parse; every cache entry the folder used (pre-trainings, domain extractors) is still \
there with the hash it had. Lists what is stale or corrupt; exit 0 only when all is sound (cells \
not run yet are listed, not faults), 1 otherwise, 2 for a bad argument.")]
    Verify(commands::verify::VerifyArgs),
}

/// Run the command `cli` names.
pub fn main_with(cli: Cli) -> Result<()> {
    let progress = Progress::new(cli.quiet);
    crate::models::size::ignore_memory_limit(cli.ignore_memory_limit);
    match cli.command {
        Command::Run(a) => commands::run::run(a, &progress),
        Command::Fetch(a) => commands::fetch::run(a, &progress),
        Command::Check(a) => commands::check::run(a, &progress),
        Command::Inpaint(a) => commands::inpaint::run(a, &progress),
        Command::Fid(a) => commands::metrics::fid(a, &progress),
        Command::Is(a) => commands::metrics::is(a, &progress),
        Command::Kid(a) => commands::metrics::kid(a, &progress),
        Command::Embed(a) => commands::embed::run(a, &progress),
        Command::Selfcheck(a) => commands::selfcheck::run(a, &progress),
        Command::Report(a) => commands::report::run(a, &progress),
        Command::Verify(a) => commands::verify::run(a, &progress),
    }
}
