//! What machine a figure was measured on: CPU model, the SIMD instruction sets the CPU offers
//! (and so the matrix-multiply kernels `gemm` dispatches to), and the thread counts. Benchmarks
//! print [`describe`] with their figures, so numbers from different hosts are never compared
//! blindly.

/// The CPU's model name (`/proc/cpuinfo`), or "unknown".
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The SIMD instruction sets this CPU offers, as detected at run time (x86-64; empty elsewhere).
pub fn simd() -> Vec<&'static str> {
    #[allow(unused_mut)]
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! probe {
            ($($f:tt),*) => {$(
                if std::arch::is_x86_feature_detected!($f) {
                    v.push($f);
                }
            )*};
        }
        probe!(
            "avx",
            "avx2",
            "fma",
            "f16c",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512vnni"
        );
    }
    v
}

/// The matrix-multiply kernel family `gemm` picks on this CPU.
pub fn gemm_kernel() -> &'static str {
    let s = simd();
    if s.contains(&"avx512f") {
        "avx512f (gemm x86-v4)"
    } else if s.contains(&"fma") && s.contains(&"avx2") {
        "avx2+fma (gemm x86-v3)"
    } else {
        "scalar/sse"
    }
}

/// One line: CPU, logical CPUs, SIMD sets, GEMM kernel, rayon threads and the threads of
/// candle's element-wise pool (`CANDLE_NUM_THREADS`, else candle's rayon count, as candle reads
/// it; `candle_core::utils::get_num_threads` reports the rayon count only).
pub fn describe() -> String {
    let candle = std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(candle_core::utils::get_num_threads);
    format!(
        "CPU: {} ({} logical CPUs; {}); GEMM kernel: {}; threads: rayon {}, candle element-wise {}",
        cpu_model(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        simd().join(", "),
        gemm_kernel(),
        rayon::current_num_threads(),
        candle
    )
}

/// The machine's memory in bytes (`MemTotal` of `/proc/meminfo`), if it can be read.
pub fn memory_bytes() -> Option<u64> {
    meminfo("MemTotal:")
}

/// The memory available to a new allocation now (`MemAvailable`), if it can be read.
pub fn available_memory_bytes() -> Option<u64> {
    meminfo("MemAvailable:")
}

fn meminfo(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    kb.checked_mul(1024)
}
