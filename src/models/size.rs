//! A model's size from its config, before anything is allocated: a YAML `config:` or a
//! checkpoint's `config.json` with absurd layer counts, widths or channels would otherwise abort
//! on memory or panic ("capacity overflow") half-way through a run that `check` accepted.
//!
//! Two checks: every integer of the config must be plausible (at most [`MAX_VALUE`]: no layer
//! count, width or channel count comes near it), then the parameters are counted from the
//! shapes the constructors ask for (recorded without allocating) and the memory of unlearning
//! them — weights, the frozen teacher's copy, gradients and Adam's two moments: 20 bytes per
//! parameter — is compared with the machine's memory. Activations are not in the estimate (they
//! depend on the batch); it is a lower bound of what a run needs. `--ignore-memory-limit`
//! (or `I2I_UNLEARN_IGNORE_MEMORY_LIMIT=1`) skips the memory comparison, never the first check.

use super::FamilyConfig;
use crate::error::user;
use anyhow::Result;
use std::sync::atomic::{AtomicBool, Ordering};

/// The largest integer a model config may hold.
pub const MAX_VALUE: u64 = 1 << 20;

/// Bytes per parameter while unlearning: weights, teacher copy, gradient, Adam's m and v (f32).
pub const TRAINING_BYTES_PER_PARAM: u128 = 20;

static IGNORE: AtomicBool = AtomicBool::new(false);

/// Skip the memory comparison (the `--ignore-memory-limit` flag).
pub fn ignore_memory_limit(on: bool) {
    IGNORE.store(on, Ordering::Relaxed);
}

fn ignored() -> bool {
    IGNORE.load(Ordering::Relaxed)
        || std::env::var("I2I_UNLEARN_IGNORE_MEMORY_LIMIT").is_ok_and(|v| v == "1")
}

/// What a model's config implies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SizeEstimate {
    pub params: u128,
    /// Weights, teacher copy, gradients and Adam state while unlearning (activations excluded).
    pub training_bytes: u128,
}

/// The size of `family`'s model, or a bad-input error naming `what` (the model) and the
/// offending value or total.
pub fn check(family: &FamilyConfig, what: &str) -> Result<SizeEstimate> {
    let v = serde_json::to_value(family)?;
    if let Some((path, n)) = largest(&v, String::new()).filter(|(_, n)| *n > MAX_VALUE) {
        return Err(user(format!(
            "{what}: config value `{path}` = {n} is implausibly large (at most {MAX_VALUE}); fix the model's config"
        )));
    }
    let shapes = family.param_shapes()?;
    let mut params: u128 = 0;
    for (name, shape) in &shapes {
        let n = shape
            .iter()
            .try_fold(1u128, |a, &d| a.checked_mul(d as u128))
            .ok_or_else(|| user(format!("{what}: tensor `{name}` {shape:?} overflows")))?;
        params = params.saturating_add(n);
    }
    let est = SizeEstimate {
        params,
        training_bytes: params.saturating_mul(TRAINING_BYTES_PER_PARAM),
    };
    if let Some(mem) = crate::host::memory_bytes() {
        if est.training_bytes > mem as u128 && !ignored() {
            return Err(user(format!(
                "{what}: {:.2e} parameters need at least {:.1} GiB to unlearn (weights, teacher, gradients, Adam state; activations aside), more than this machine's {:.1} GiB; use a smaller config, or --ignore-memory-limit to try anyway",
                est.params as f64,
                est.training_bytes as f64 / (1u64 << 30) as f64,
                mem as f64 / (1u64 << 30) as f64
            )));
        }
    }
    Ok(est)
}

/// The largest non-negative integer in a JSON value, with its path.
fn largest(v: &serde_json::Value, path: String) -> Option<(String, u64)> {
    use serde_json::Value;
    match v {
        Value::Number(n) => n.as_u64().map(|n| (path, n)),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .filter_map(|(i, x)| largest(x, format!("{path}[{i}]")))
            .max_by_key(|(_, n)| *n),
        Value::Object(o) => o
            .iter()
            .filter_map(|(k, x)| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                largest(x, p)
            })
            .max_by_key(|(_, n)| *n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::FamilyName;

    #[test]
    fn every_tiny_family_is_sized_and_absurd_configs_are_refused() {
        for f in FamilyName::ALL {
            let est = check(&f.tiny(), "tiny").unwrap();
            assert!(est.params > 1000, "{f:?}: {est:?}");
        }
        // MAE with a width of 2^24: refused by the value check, before any shape is recorded.
        let FamilyConfig::Mae(mut c) = FamilyName::Mae.tiny() else {
            unreachable!()
        };
        c.hidden_size = 1 << 24;
        let e = check(&FamilyConfig::Mae(c.clone()), "model `m`").unwrap_err();
        assert!(e.to_string().contains("hidden_size"), "{e}");
        // Plausible values, an implausible product: 4096 layers of width 65536 (2e14 params).
        c.hidden_size = 65536;
        c.intermediate_size = 65536;
        c.num_hidden_layers = 4096;
        c.num_attention_heads = 64;
        let e = check(&FamilyConfig::Mae(c), "model `m`").unwrap_err();
        assert!(e.to_string().contains("GiB to unlearn"), "{e}");
    }
}
