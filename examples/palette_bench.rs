//! Palette on CPU: one UNet forward (one step of the evaluation's ancestral sampling) and one
//! `ours` unlearning step, with the peak resident memory. Prints one JSON line. Used by
//! tools/bench/palette_vs_official.py, which runs the official Palette code the same way.
//!
//!   cargo run --release --example palette_bench -- --size base --what forward --batch 1 --iters 3
//!   cargo run --release --example palette_bench -- --size base --what unlearn --batch 4 --iters 1
//!
//! `--size base`: Palette's Places2 network (256 px, inner 64, mults 1-2-4-8, 2 res blocks,
//! `attn_res: [16]`, 32-channel heads), random weights. `--size tiny`: the bench script's tiny
//! config (32 px). `--config JSON`: any PaletteConfig (`{"unet": {…}, "beta_schedule": {…}}`).
//! Unlearning: B images per step, half forget and half retain, the family's hybrid masks, Adam
//! without weight decay or clipping (the official optimiser, lr 5e-5).

mod common;
use common::{arg, cpu_model, peak_rss_mib};

#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

use candle_core::Tensor;
use i2i_unlearn::models::palette::PaletteConfig;
use i2i_unlearn::models::{self, FamilyConfig};
use i2i_unlearn::nn::Mode;
use i2i_unlearn::unlearn::UnlearnSpec;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    i2i_unlearn::tune_allocator();
    i2i_unlearn::default_candle_threads();
    eprintln!("{}", i2i_unlearn::host::describe());
    let size = arg("--size", "base");
    let batch: usize = arg("--batch", "1").parse()?;
    let iters: usize = arg("--iters", "3").parse()?;
    let what = arg("--what", "forward");
    let json = arg("--config", "");
    let cfg = if !json.is_empty() {
        PaletteConfig::from_json(&json)?
    } else if size == "tiny" {
        let v = serde_json::json!({"unet": {"inner_channel": 32, "channel_mults": [1, 2],
            "attn_res": [2], "num_head_channels": 16, "res_blocks": 1, "image_size": 32}});
        PaletteConfig::from_yaml_value(&v).map_err(|(_, m)| anyhow::anyhow!(m))?
    } else {
        PaletteConfig::default()
    };
    let dev = common::device_arg()?;
    let s = cfg.unet.image_size;
    let fc = FamilyConfig::Palette(cfg.clone());
    let w = fc.init_weights(0, &dev)?;
    let teacher = models::palette::Palette::new(cfg.clone(), &w, false, &dev)?;
    let threads = candle_core::utils::get_num_threads();
    let (secs, per) = match what.as_str() {
        "forward" => {
            let x = Tensor::randn(0f32, 1.0, (batch, 6, s, s), &dev)?;
            let g = Tensor::full(0.5f32, batch, &dev)?;
            let run = || -> anyhow::Result<()> {
                teacher.net.forward(&x, &g, Mode::Infer)?;
                Ok(())
            };
            run()?; // warm-up
            dev.synchronize()?;
            let mut best = f64::INFINITY;
            for _ in 0..iters {
                let t = Instant::now();
                run()?;
                dev.synchronize()?;
                best = best.min(t.elapsed().as_secs_f64());
            }
            (best, batch)
        }
        "unlearn" => {
            let student = fc.build(&w, true, &dev)?;
            // The official optimiser: Adam, lr 5e-5, no weight decay, no clipping.
            let spec = UnlearnSpec {
                lr: 5e-5,
                min_lr: 5e-5,
                weight_decay: 0.0,
                betas: [0.9, 0.999],
                grad_clip: 0.0,
                ..Default::default()
            };
            common::time_ours_steps(&*student, &teacher, 0.1, spec, batch, iters, &dev)?
        }
        other => anyhow::bail!("--what forward|unlearn, got {other}"),
    };
    println!(
        "{{\"impl\": \"i2i-unlearn (candle)\", \"size\": \"{size}\", \"what\": \"{what}\", \"batch\": {batch}, \"threads\": {threads}, \"seconds_per_iter\": {secs:.4}, \"images_per_s\": {:.3}, \"peak_rss_mib\": {:.0}, \"cpu\": \"{}\"}}",
        per as f64 / secs,
        peak_rss_mib(),
        cpu_model()
    );
    Ok(())
}
