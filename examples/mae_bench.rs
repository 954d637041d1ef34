//! MAE at full size on CPU: inpainting forward throughput and one encoder-unlearning (`ours`)
//! step, with the peak resident memory. Prints one JSON line. Used by
//! tools/bench/mae_vs_transformers.py, which runs transformers the same way.
//!
//!   cargo run --release --example mae_bench -- --size base --batch 8 --iters 3 --what forward
//!   cargo run --release --example mae_bench -- --size large --batch 4 --iters 1 --what unlearn
//!
//! On a CPU the forward runs the batch as one shard per rayon thread, each on a core of its own,
//! as `inpaint` does (`--shards 1`: every op split over the threads instead).
//!
//! `--device cuda` (a `--features cuda` build) times the same on the first GPU; the GPU's memory
//! is then read by tools/gpu/check.sh with nvidia-smi (peak_rss_mib is the host's).

mod common;
use common::{arg, peak_rss_mib};

#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

use candle_core::Tensor;
use i2i_unlearn::data::ImageSet;
use i2i_unlearn::masks::MaskSpec;
use i2i_unlearn::models::{mae::MaeConfig, FamilyConfig};
use i2i_unlearn::unlearn::{self, trainer, Ctx, MethodName, NoiseKind, UnlearnMask, UnlearnSpec};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    i2i_unlearn::tune_allocator();
    i2i_unlearn::default_candle_threads();
    eprintln!("{}", i2i_unlearn::host::describe());
    let size = arg("--size", "base");
    let batch: usize = arg("--batch", "8").parse()?;
    let iters: usize = arg("--iters", "3").parse()?;
    let what = arg("--what", "forward");
    let mask = arg("--mask", "center:8")
        .parse::<MaskSpec>()
        .map_err(anyhow::Error::msg)?;
    let mut cfg = MaeConfig::default(); // vit-mae-base
    if size == "large" {
        cfg.hidden_size = 1024;
        cfg.num_hidden_layers = 24;
        cfg.num_attention_heads = 16;
        cfg.intermediate_size = 4096;
    }
    let dev = common::device_arg()?;
    let fc = FamilyConfig::Mae(cfg.clone());
    let w = fc.init_weights(0, &dev)?;
    let teacher = fc.build(&w, false, &dev)?;
    let x = Tensor::rand(0f32, 1.0, (batch, 3, 224, 224), &dev)?;
    let keys: Vec<u64> = (0..batch as u64).collect();
    let m = mask.batch(cfg.grid(), &keys)?;
    let threads = candle_core::utils::get_num_threads();
    let shards = match arg("--shards", "") {
        n if n.is_empty() => i2i_unlearn::parallel::Shards::for_device(&dev)?,
        n => i2i_unlearn::parallel::Shards::new(n.parse()?)?,
    };
    let (secs, per) = match what.as_str() {
        "forward" => {
            // As `inpaint` runs it on a CPU: the batch in one shard per thread.
            let forward = || -> anyhow::Result<()> {
                shards.map(batch, |_, r| {
                    teacher.predict(
                        &x.narrow(0, r.start, r.len())?,
                        &m.slice(r.start, r.len()),
                        &mut [],
                    )
                })?;
                Ok(())
            };
            forward()?; // warm-up
            dev.synchronize()?;
            let t = Instant::now();
            for _ in 0..iters {
                forward()?;
            }
            dev.synchronize()?;
            (t.elapsed().as_secs_f64() / iters as f64, batch)
        }
        "unlearn" => {
            let student = fc.build(&w, true, &dev)?;
            let set = ImageSet {
                pixels: x.clone(),
                labels: vec![0; batch],
                ids: keys.clone(),
            };
            let method = unlearn::method(MethodName::Ours);
            let ctx = Ctx {
                student: &*student,
                teacher: &*teacher,
                alpha: 0.25,
                noise: NoiseKind::Normal,
                paper_compat: false,
            };
            // One run of iters + 1 steps (one optimiser); time the steps after the first.
            let spec = UnlearnSpec {
                steps: iters + 1,
                retain_batch: batch,
                forget_batch: batch,
                warmup_steps: 0,
                // The same mask as the PyTorch side of tools/bench/mae_vs_transformers.py.
                mask: UnlearnMask::Fixed(mask),
                ..Default::default()
            };
            let job = trainer::UnlearnJob {
                spec: &spec,
                retain: &set,
                forget: &set,
                eval_mask: None,
                seed: 0,
            };
            let mut marks = vec![];
            trainer::run(&*method, &ctx, &job, |_, _| marks.push(Instant::now()))?;
            let secs = marks[marks.len() - 1]
                .duration_since(marks[0])
                .as_secs_f64()
                / iters as f64;
            (secs, 2 * batch)
        }
        other => anyhow::bail!("--what forward|unlearn, got {other}"),
    };
    println!(
        "{{\"impl\": \"i2i-unlearn (candle)\", \"size\": \"{size}\", \"what\": \"{what}\", \"batch\": {batch}, \"threads\": {threads}, \"shards\": {}, \"seconds_per_iter\": {secs:.4}, \"images_per_s\": {:.3}, \"peak_rss_mib\": {:.0}}}",
        shards.len(),
        per as f64 / secs,
        peak_rss_mib()
    );
    Ok(())
}
