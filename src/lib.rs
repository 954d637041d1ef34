//! i2i-unlearn: an experiment harness for machine unlearning in image-to-image generative models.
//!
//! Data flows one way: `config` → `data` → `models` → `unlearn` → generation → `metrics` → `store`
//! → `report`. Each concept with variants is one trait with a small registry:
//! [`data::DataSource`], [`models::I2IModel`], [`unlearn::Method`], [`metrics::Extractor`].
//! Leaf modules that any step may use: `util`, `error`, `locate` (YAML paths of fields),
//! `resample` (reference-exact image resizing), `weights` (checkpoint and weight-file readers),
//! `hub`, `progress`, `nn` (differentiable layers), `masks`, `train` (the optimiser).

pub mod cli;
pub mod commands;
pub mod config;
pub mod data;
#[cfg(feature = "report")]
pub mod draw;
pub mod error;
pub mod host;
pub mod hub;
pub mod inpaint;
pub mod locate;
pub mod masks;
pub mod metrics;
pub mod models;
pub mod names;
pub mod net;
pub mod nn;
pub mod parallel;
pub mod pipeline;
pub mod pretrain;
pub mod progress;
pub mod report;
pub mod resample;
pub mod selfcheck;
pub mod store;
pub mod train;
pub mod unlearn;
pub mod util;
pub mod weights;

/// The allocator of the project's binaries: candle allocates a fresh buffer for every op, and
/// mimalloc reuses them where the system allocator kept faulting in new pages.
pub use mimalloc::MiMalloc as Allocator;

unsafe extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// One thread for candle's element-wise pool unless `CANDLE_NUM_THREADS` says otherwise: that
/// pool spin-waits, and next to rayon's threads (which run the GEMMs, the shards and the
/// unlearning jobs) on a small machine it costs more than it gains; with the split Ours step's
/// two parts each on a core, its 2 extra threads made an MAE-base step 4.9 → 5.9 s. Call at
/// start-up, before any candle op (the pool is created on first use).
pub fn default_candle_threads() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Keep freed memory mapped (mimalloc's `purge_delay` = -1): a training step frees and
/// re-allocates the same large buffers, and purging them made the kernel zero fresh pages on
/// every step (27% of an MAE-base unlearning step).
///
/// And no transparent huge pages for the process: mimalloc asks for them (`MADV_HUGEPAGE`) on its
/// arenas, and on this project's virtual machines a fresh huge page comes 5× slower than fresh
/// 4 KiB pages (first touch of 512 MiB: 1.1 s against 0.21 s), which loading MAE-base's 450 MB
/// paid on every start (2.4 → 0.9 s); the quickstart did not change beyond its noise. Call once
/// at start-up.
pub fn tune_allocator() {
    const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15; // same index in mimalloc v2 and v3
                                                       // SAFETY: a plain option setter of the linked mimalloc; no memory is touched.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    // mimalloc's own `allow_thp` option is read before `main` (its first arena is reserved
    // then); the process-wide switch also covers that arena. A failure leaves THP as it was.
    #[cfg(target_os = "linux")]
    // SAFETY: sets a flag of this process's memory map; no memory is touched.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}
