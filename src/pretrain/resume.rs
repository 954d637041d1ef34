//! Resuming a killed pre-training. The whole training state — every weight, the optimiser's
//! moments and step, the sampler's epoch order and position, the RNG's position — is saved
//! beside the cache entry every few minutes, atomically ([`crate::util::write_atomic_with`]), so
//! that a run killed after an hour of pre-training goes on from its last checkpoint and
//! ends with the same bytes as a run that was never killed. The checkpoint is deleted once the
//! finished weights are in the cache.

use crate::models::Weights;
use crate::train::AdamState;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where and how often a pre-training saves its state.
pub struct Resume {
    pub path: PathBuf,
    pub every: Duration,
}

impl Resume {
    /// The checkpoint of the cache entry `entry` (`<key>.safetensors` → `<key>.resume.safetensors`),
    /// written every `I2I_CHECKPOINT_SECS` seconds (default 300).
    pub fn beside(entry: &Path) -> Self {
        let secs = std::env::var("I2I_CHECKPOINT_SECS")
            .ok()
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .unwrap_or(300.0);
        Self {
            path: entry.with_extension("resume.safetensors"),
            every: Duration::from_secs_f64(secs),
        }
    }
}

/// A pre-training's state after `step` steps of its main stage (the family's pre-stage, MAGE's
/// tokenizer, is then finished and inside `weights`).
pub struct State {
    pub step: usize,
    /// Steps done over the whole pre-training, the pre-stage's included (for progress).
    pub done: usize,
    /// The loss of the last step (NaN before the first).
    pub last: f64,
    /// Every weight, frozen and trained.
    pub weights: Weights,
    pub adam: AdamState,
    pub order: Vec<usize>,
    pub pos: usize,
    pub word_pos: u128,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Meta {
    step: usize,
    done: usize,
    last: f64,
    t: usize,
    pos: usize,
    word_pos: String,
}

const META: &str = "resume.meta";
const ORDER: &str = "resume.order";

/// Write `state` to `path` atomically.
pub fn save(path: &Path, state: &State) -> Result<()> {
    let meta = Meta {
        step: state.step,
        done: state.done,
        last: state.last,
        t: state.adam.t,
        pos: state.pos,
        word_pos: state.word_pos.to_string(),
    };
    let cpu = &Device::Cpu;
    let json = serde_json::to_vec(&meta)?;
    let mut out: HashMap<String, Tensor> = HashMap::new();
    let len = json.len();
    out.insert(META.into(), Tensor::from_vec(json, len, cpu)?);
    let order: Vec<u32> = state.order.iter().map(|&i| i as u32).collect();
    out.insert(
        ORDER.into(),
        Tensor::from_vec(order, state.order.len(), cpu)?,
    );
    for (k, v) in &state.weights {
        out.insert(format!("w.{k}"), v.to_device(cpu)?);
    }
    for (k, m, v) in &state.adam.moments {
        out.insert(format!("m.{k}"), m.to_device(cpu)?);
        out.insert(format!("v.{k}"), v.to_device(cpu)?);
    }
    crate::util::write_atomic_with(path, |tmp| {
        candle_core::safetensors::save(&out, tmp)
            .with_context(|| format!("writing the pre-training checkpoint {}", path.display()))
    })
}

/// The state saved at `path`, or `None` when there is no checkpoint. `n` is the number of
/// training images, which the saved epoch order must index.
pub fn load(path: &Path, n: usize, device: &Device) -> Result<Option<State>> {
    if !path.exists() {
        return Ok(None);
    }
    let what = || {
        format!(
            "reading the pre-training checkpoint {} (delete it to start over)",
            path.display()
        )
    };
    let mut all = candle_core::safetensors::load(path, device).with_context(what)?;
    let mut take = |k: &str| {
        all.remove(k)
            .ok_or_else(|| anyhow::anyhow!("no `{k}` in it"))
            .with_context(what)
    };
    let meta: Meta = serde_json::from_slice(&take(META)?.to_vec1::<u8>()?).with_context(what)?;
    let order: Vec<usize> = take(ORDER)?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    anyhow::ensure!(
        order.len() == n && order.iter().all(|&i| i < n),
        "{}: its epoch order is over {} images, the pre-training has {n}",
        what(),
        order.len()
    );
    let (mut weights, mut m, mut v) = (Weights::new(), HashMap::new(), HashMap::new());
    for (k, t) in all {
        if let Some(name) = k.strip_prefix("w.") {
            weights.insert(name.to_string(), t);
        } else if let Some(name) = k.strip_prefix("m.") {
            m.insert(name.to_string(), t);
        } else if let Some(name) = k.strip_prefix("v.") {
            v.insert(name.to_string(), t);
        }
    }
    let mut moments = Vec::with_capacity(m.len());
    for (name, mt) in m {
        let vt = v
            .remove(&name)
            .ok_or_else(|| anyhow::anyhow!("no second moment of `{name}`"))
            .with_context(what)?;
        moments.push((name, mt, vt));
    }
    Ok(Some(State {
        step: meta.step,
        done: meta.done,
        last: meta.last,
        weights,
        adam: AdamState { t: meta.t, moments },
        order,
        pos: meta.pos,
        word_pos: meta.word_pos.parse().with_context(what)?,
    }))
}

/// How many steps the checkpoint at `path` has done over the whole pre-training, reading only its
/// small metadata; `None` without a readable checkpoint.
pub fn saved_steps(path: &Path) -> Option<usize> {
    // SAFETY: the file is only ever replaced by a rename, never written in place.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.ok()?;
    let meta = st.load(META, &Device::Cpu).ok()?.to_vec1::<u8>().ok()?;
    Some(serde_json::from_slice::<Meta>(&meta).ok()?.done)
}

/// Delete the checkpoint (after the finished weights are stored).
pub fn remove(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("deleting {}", path.display()))
        }
        _ => Ok(()),
    }
}
