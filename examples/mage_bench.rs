//! MAGE on CPU: MaskGIT inpainting throughput (centre 128 px hole at 256 px, the official
//! evaluation's 20 iterations with sampling) and one `ours` unlearning step, with the peak
//! resident memory. Prints one JSON line. Used by tools/bench/mage_vs_official.py, which runs the
//! official MAGE code the same way.
//!
//!   cargo run --release --example mage_bench -- --size base --what inpaint --batch 8 --iters 3
//!   cargo run --release --example mage_bench -- --size base --what unlearn --batch 4 --iters 1
//!
//! `--size base`: the real sizes (VQ tokenizer ch 128, mults 1-1-2-2-4, 2 res blocks, 1024 codes;
//! MAGE ViT-B: 768 wide, 12 blocks, decoder 8 blocks), random weights. `--size tiny`: the tiny
//! config of the bench script (32 px). Unlearning: B images per step, half forget and half retain.

mod common;
use common::{arg, cpu_model, peak_rss_mib};

#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

use candle_core::Tensor;
use i2i_unlearn::masks::MaskSpec;
use i2i_unlearn::models::mage::MageConfig;
use i2i_unlearn::models::{FamilyConfig, GenerateOptions};
use i2i_unlearn::unlearn::UnlearnSpec;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    i2i_unlearn::tune_allocator();
    i2i_unlearn::default_candle_threads();
    eprintln!("{}", i2i_unlearn::host::describe());
    let size = arg("--size", "base");
    let batch: usize = arg("--batch", "8").parse()?;
    let iters: usize = arg("--iters", "3").parse()?;
    let what = arg("--what", "inpaint");
    let cfg = if size == "tiny" {
        let v = serde_json::json!({
            "vqgan": {"embed_dim": 32, "n_embed": 64,
                      "ddconfig": {"z_channels": 32, "resolution": 32, "ch": 32, "ch_mult": [1, 1, 2], "num_res_blocks": 1}},
            "mage": {"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 4,
                     "decoder_embed_dim": 64, "decoder_depth": 2, "decoder_num_heads": 4}
        });
        MageConfig::from_yaml_value(&v).map_err(|(_, m)| anyhow::anyhow!(m))?
    } else {
        MageConfig::default()
    };
    let dev = common::device_arg()?;
    let s = cfg.mage.img_size;
    let grid = cfg.grid();
    let fc = FamilyConfig::Mage(cfg.clone());
    let w = fc.init_weights(0, &dev)?;
    let teacher = fc.build(&w, false, &dev)?;
    let x = Tensor::rand(0f32, 1.0, (batch, 3, s, s), &dev)?;
    let keys: Vec<u64> = (0..batch as u64).collect();
    let threads = candle_core::utils::get_num_threads();
    let (secs, per) = match what.as_str() {
        "inpaint" => {
            // The weights now live in the model (frozen linears as their transposed copies);
            // `i2i-unlearn inpaint` drops the loaded map once the model is built, and so does
            // this bench (the official bench holds only its model).
            drop(w);
            // The official centre hole: half the side (128 px at 256), token mask grown by one.
            let mask = MaskSpec::Center { k: grid / 2 }.batch(grid, &keys)?;
            let run = || -> anyhow::Result<()> {
                let mut rngs: Vec<_> = (0..batch as u64)
                    .map(|i| i2i_unlearn::util::rng("bench", i))
                    .collect();
                teacher.generate(
                    &x,
                    &mask,
                    &mut rngs,
                    &GenerateOptions::default(),
                    &mut |_, _| {},
                )?;
                Ok(())
            };
            run()?; // warm-up
            dev.synchronize()?;
            let t = Instant::now();
            for _ in 0..iters {
                run()?;
            }
            dev.synchronize()?;
            (t.elapsed().as_secs_f64() / iters as f64, batch)
        }
        "unlearn" => {
            let student = fc.build(&w, true, &dev)?;
            // Distinct images every step (MAGE's token cache never hits: every step tokenizes
            // its batch, as the official one) and the family's training masks (ratio from the
            // truncated normal, half the tokens dropped), as the official step.
            common::time_ours_steps(
                &*student,
                &*teacher,
                0.25,
                UnlearnSpec::default(),
                batch,
                iters,
                &dev,
            )?
        }
        other => anyhow::bail!("--what inpaint|unlearn, got {other}"),
    };
    println!(
        "{{\"impl\": \"i2i-unlearn (candle)\", \"size\": \"{size}\", \"what\": \"{what}\", \"batch\": {batch}, \"threads\": {threads}, \"seconds_per_iter\": {secs:.4}, \"images_per_s\": {:.3}, \"peak_rss_mib\": {:.0}, \"cpu\": \"{}\"}}",
        per as f64 / secs,
        peak_rss_mib(),
        cpu_model()
    );
    Ok(())
}
