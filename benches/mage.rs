//! MAGE at the paper's size (ViT-B over the 256 px VQ tokenizer, random weights) on CPU:
//! MaskGIT inpainting of the official centre hole (20 iterations with sampling, 6 of them run for
//! the 100-of-256 token mask; tokenize → decode → blurred compositing) and one Ours unlearning step
//! (the family's training masks, 1 retain + 1 forget image, distinct images every step so the
//! token cache never hits). The same two measured for the official code on the same CPU:
//! `tools/bench/mage_vs_official.py` (with `examples/mage_bench.rs`).
//!
//!   cargo bench --bench mage

use candle_core::{Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};
use i2i_unlearn::data::ImageSet;
use i2i_unlearn::masks::{Composite, MaskSpec};
use i2i_unlearn::models::mage::MageConfig;
use i2i_unlearn::models::{FamilyConfig, GenerateOptions};
use i2i_unlearn::unlearn::{self, trainer, Ctx, MethodName, NoiseKind, UnlearnSpec};

#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

fn bench(c: &mut Criterion) {
    i2i_unlearn::tune_allocator();
    // Figures from different hosts are never compared blindly: say which one this is.
    eprintln!("{}", i2i_unlearn::host::describe());
    let dev = Device::Cpu;
    let cfg = MageConfig::default();
    let fc = FamilyConfig::Mage(cfg.clone());
    let w = fc.init_weights(0, &dev).expect("init");
    let teacher = fc.build(&w, false, &dev).expect("teacher");
    let grid = cfg.grid();
    let x = Tensor::rand(0f32, 1.0, (1, 3, 256, 256), &dev).expect("image");
    let mask = MaskSpec::Center { k: grid / 2 }
        .batch(grid, &[0])
        .expect("mask");
    let opts = GenerateOptions {
        steps: None,
        composite: Composite::Blur,
    };
    let mut g = c.benchmark_group("mage_vitb_256px");
    g.sample_size(10);
    g.bench_function("maskgit_inpaint_1_image", |b| {
        b.iter(|| {
            let mut rngs = vec![i2i_unlearn::util::rng("bench", 0)];
            teacher
                .generate(&x, &mask, &mut rngs, &opts, &mut |_, _| {})
                .expect("inpaint")
        })
    });
    let student = fc.build(&w, true, &dev).expect("student");
    let method = unlearn::method(MethodName::Ours);
    let ctx = Ctx {
        student: &*student,
        teacher: &*teacher,
        alpha: 0.25,
        noise: NoiseKind::Normal,
        paper_compat: false,
    };
    let spec = UnlearnSpec {
        steps: 1,
        retain_batch: 1,
        forget_batch: 1,
        warmup_steps: 0,
        ..Default::default()
    };
    let mut round = 0u64;
    g.bench_function("ours_step_1_retain_1_forget", |b| {
        b.iter(|| {
            round += 1;
            let set = |off: u64| ImageSet {
                pixels: Tensor::rand(0f32, 1.0, (1, 3, 256, 256), &dev).expect("image"),
                labels: vec![0],
                ids: vec![off + round],
            };
            let (retain, forget) = (set(1 << 40), set(0));
            let job = trainer::UnlearnJob {
                spec: &spec,
                retain: &retain,
                forget: &forget,
                eval_mask: None,
                seed: 0,
            };
            trainer::run(&*method, &ctx, &job, |_, _| {}).expect("step")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
