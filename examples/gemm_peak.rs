//! How fast the matrix multiply behind every linear layer runs on this host: candle's CPU
//! matmul (the `gemm` crate) on the shapes of MAE-base's blocks (batch 8 × 133 visible tokens,
//! the decoder's 8 × 197) and a square one, in GFLOP/s, with the host line. Compare with
//! `torch.matmul` at the same threads (tools/bench/gemm_vs_torch.py runs both).
//!
//!   cargo run --release --example gemm_peak

#[global_allocator]
static GLOBAL: i2i_unlearn::Allocator = i2i_unlearn::Allocator;

use candle_core::{Device, Tensor};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    i2i_unlearn::tune_allocator();
    i2i_unlearn::default_candle_threads();
    eprintln!("{}", i2i_unlearn::host::describe());
    let dev = Device::Cpu;
    let shapes = [
        (1064, 768, 3072),
        (1064, 3072, 768),
        (1064, 768, 768),
        (1576, 512, 2048),
        (2048, 2048, 2048),
    ];
    let mut out = vec![];
    for (m, k, n) in shapes {
        let a = Tensor::rand(0f32, 1.0, (m, k), &dev)?;
        let b = Tensor::rand(0f32, 1.0, (k, n), &dev)?;
        // A linear layer's layout: the weight stored [N, K], used transposed.
        let w = Tensor::rand(0f32, 1.0, (n, k), &dev)?;
        let at = a.t()?;
        for (name, lhs, rhs) in [
            ("plain", &a, b),
            ("linear", &a, w.t()?),
            ("swapped", &w, at.clone()),
        ] {
            for _ in 0..3 {
                lhs.matmul(&rhs)?;
            }
            let mut best = f64::INFINITY;
            for _ in 0..5 {
                let t = Instant::now();
                for _ in 0..5 {
                    lhs.matmul(&rhs)?;
                }
                best = best.min(t.elapsed().as_secs_f64() / 5.0);
            }
            let gflops = 2.0 * (m * k * n) as f64 / best / 1e9;
            eprintln!("candle {name} {m}x{k}x{n}: {gflops:.1} GFLOP/s");
            out.push(format!("\"{name} {m}x{k}x{n}\": {gflops:.1}"));
        }
    }
    println!("{{{}}}", out.join(", "));
    Ok(())
}
