//! What the benchmark examples share: flags, the device, the peak resident memory, the CPU model,
//! and the timing of "ours" unlearning steps.

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: &str) -> String {
    let a: Vec<String> = std::env::args().collect();
    a.iter()
        .position(|x| x == name)
        .and_then(|i| a.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

/// Peak resident memory of this process so far (`VmHWM`), MiB.
#[allow(dead_code)]
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// The CPU's model name (`/proc/cpuinfo`).
#[allow(dead_code)]
pub fn cpu_model() -> String {
    i2i_unlearn::host::cpu_model()
}

/// `--device cpu|cuda` (default cpu).
#[allow(dead_code)]
pub fn device_arg() -> anyhow::Result<candle_core::Device> {
    match arg("--device", "cpu").as_str() {
        "cpu" => Ok(candle_core::Device::Cpu),
        "cuda" => Ok(candle_core::Device::new_cuda(0)?),
        other => anyhow::bail!("--device cpu|cuda, got {other}"),
    }
}

/// Seconds per step of `iters` "ours" steps of `batch` images (half forget, half retain; at least
/// one of each), timed after one untimed step, with the family's training masks. Every step gets
/// distinct random images, so no per-image cache (MAGE's tokens) ever hits. `spec`
/// gives the optimiser; steps and batch sizes are set here. Returns (seconds, images per step).
#[allow(dead_code)]
pub fn time_ours_steps(
    student: &dyn i2i_unlearn::models::I2IModel,
    teacher: &dyn i2i_unlearn::models::I2IModel,
    alpha: f64,
    spec: i2i_unlearn::unlearn::UnlearnSpec,
    batch: usize,
    iters: usize,
    dev: &candle_core::Device,
) -> anyhow::Result<(f64, usize)> {
    use i2i_unlearn::unlearn::{self, trainer, Ctx, MethodName, NoiseKind, UnlearnSpec};
    let size = teacher.image_size();
    let half = (batch / 2).max(1);
    let rest = (batch - half).max(1);
    let set = |n: usize, off: u64| -> anyhow::Result<i2i_unlearn::data::ImageSet> {
        let m = n * (iters + 1);
        Ok(i2i_unlearn::data::ImageSet {
            pixels: candle_core::Tensor::rand(0f32, 1.0, (m, 3, size, size), dev)?,
            labels: vec![0; m],
            ids: (0..m as u64).map(|i| i + off).collect(),
        })
    };
    let (forget, retain) = (set(half, 0)?, set(rest, 1_000_000)?);
    let method = unlearn::method(MethodName::Ours);
    let ctx = Ctx {
        student,
        teacher,
        alpha,
        noise: NoiseKind::Normal,
        paper_compat: false,
    };
    let spec = UnlearnSpec {
        steps: iters + 1,
        retain_batch: rest,
        forget_batch: half,
        warmup_steps: 0,
        ..spec
    };
    let job = trainer::UnlearnJob {
        spec: &spec,
        retain: &retain,
        forget: &forget,
        eval_mask: None,
        seed: 0,
    };
    let mut marks = vec![];
    trainer::run(&*method, &ctx, &job, |_, _| {
        marks.push(std::time::Instant::now())
    })?;
    let secs = marks[marks.len() - 1]
        .duration_since(marks[0])
        .as_secs_f64()
        / iters as f64;
    Ok((secs, half + rest))
}
