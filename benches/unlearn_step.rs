//! One unlearning step of the quickstart's tiny MAE (width 64, 4 + 2 blocks, 32 px, 4 px patches,
//! the family's random training masks, 32 retain + 32 forget images), per method, and one
//! pre-training step.
//!
//!   cargo bench --bench unlearn_step

use candle_core::Device;
use criterion::{criterion_group, criterion_main, Criterion};
use i2i_unlearn::config;
use i2i_unlearn::data::split::Splits;
use i2i_unlearn::unlearn::{self, trainer, Ctx, MethodName, NoiseKind, UnlearnSpec};

#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

fn bench(c: &mut Criterion) {
    i2i_unlearn::tune_allocator();
    // Figures from different hosts are never compared blindly: say which one this is.
    eprintln!("{}", i2i_unlearn::host::describe());
    let exp = config::load(std::path::Path::new("experiments/quickstart.yaml"))
        .expect("quickstart config");
    let dev = Device::Cpu;
    let fc = exp.models[0]
        .family_config()
        .expect("valid config")
        .expect("quickstart has a config");
    let splits = Splits::build(&exp.datasets[0], 32, &dev).expect("data");
    let w = fc.init_weights(0, &dev).expect("init");
    let teacher = fc.build(&w, false, &dev).expect("teacher");
    let mut g = c.benchmark_group("unlearn_step_tiny_mae");
    g.sample_size(10);
    for name in [MethodName::Ours, MethodName::MaxLoss] {
        let method = unlearn::method(name);
        let student = fc.build(&w, true, &dev).expect("student");
        let ctx = Ctx {
            student: &*student,
            teacher: &*teacher,
            alpha: 0.25,
            noise: NoiseKind::Normal,
            paper_compat: false,
        };
        let spec = UnlearnSpec {
            steps: 1,
            warmup_steps: 0,
            ..exp.unlearn.clone()
        };
        let job = trainer::UnlearnJob {
            spec: &spec,
            retain: &splits.retain_train,
            forget: &splits.forget_train,
            eval_mask: Some(exp.masks[0]),
            seed: 0,
        };
        g.bench_function(name.as_str(), |b| {
            b.iter(|| trainer::run(&*method, &ctx, &job, |_, _| {}).expect("step"))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("pretrain_step_tiny_mae");
    g.sample_size(10);
    let data = Splits::pretrain_set(&exp.datasets[0], &[], 32, &dev).expect("data");
    let mut spec = exp.models[0].pretrain.clone();
    spec.steps = 1;
    g.bench_function("batch64", |b| {
        b.iter(|| {
            i2i_unlearn::pretrain::pretrain(&fc, &spec, &data, &dev, None, |_, _| {}).expect("step")
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
