//! Expected tensor names and shapes of a family, listed by building its modules once on a
//! recording backend (so names are written in one place: the module constructors), and the check
//! of loaded weights against them.

use super::Tensors as Weights;
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeMap;

type Shapes = std::sync::Arc<std::sync::Mutex<BTreeMap<String, Vec<usize>>>>;

/// A `VarBuilder` backend that only records the names and shapes asked for, answering each with
/// a broadcast scalar (no allocation: listing a ViT-B's 150 M parameters costs nothing).
struct ShapeRecorder(Shapes);

impl candle_nn::var_builder::SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        s: candle_core::Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        self.0
            .lock()
            .expect("recorder lock")
            .insert(name.to_string(), s.dims().to_vec());
        Tensor::zeros((), dtype, dev)?.broadcast_as(s)
    }
    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("shape recorder: `{name}` asked for without a shape")
    }
    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// Every tensor `build` asks its `VarBuilder` for, with its shape.
pub fn record(
    build: impl FnOnce(candle_nn::VarBuilder) -> Result<()>,
) -> Result<BTreeMap<String, Vec<usize>>> {
    let shapes = Shapes::default();
    let vb = candle_nn::VarBuilder::from_backend(
        Box::new(ShapeRecorder(shapes.clone())),
        DType::F32,
        Device::Cpu,
    );
    build(vb)?;
    let out = std::mem::take(&mut *shapes.lock().expect("recorder lock"));
    Ok(out)
}

/// Check that `weights` holds every expected tensor with its shape (extra tensors are allowed);
/// `hint` adds a sentence to the error for the missing names it recognises.
pub fn check_against(
    want: &BTreeMap<String, Vec<usize>>,
    weights: &Weights,
    hint: impl Fn(&[&String]) -> &'static str,
) -> Result<()> {
    let missing: Vec<&String> = want.keys().filter(|k| !weights.contains_key(*k)).collect();
    if !missing.is_empty() {
        anyhow::bail!(
            "{} expected tensors missing, e.g. `{}`{}",
            missing.len(),
            missing[0],
            hint(&missing)
        );
    }
    for (k, shape) in want {
        let got = weights[k].dims();
        anyhow::ensure!(
            got == shape.as_slice(),
            "tensor `{k}` has shape {got:?}, the config expects {shape:?}"
        );
    }
    Ok(())
}
