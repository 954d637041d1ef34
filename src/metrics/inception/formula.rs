//! Formula weights for InceptionV3: every tensor of the state dict from a formula of (name, index)
//! that Python (tools/reference/inception_reference.py) and Rust both compute, so parity fixtures
//! and device checks need no 100 MB download. Not a trained network: features from these weights
//! check the maths, they are no FID of anything.

use super::{state_dict_shapes, Variant};
use crate::util::{fnv1a64, splitmix64};
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::collections::HashMap;

/// The value v ∈ [−1, 1) of element `i` of the tensor whose name hashes to `name_hash`
/// (`fnv1a64`): `2u − 1`, `u = (splitmix64(hash + i) >> 11) · 2⁻⁵³`; every formula-weights
/// fixture (InceptionV3, the Places365 ResNet-50) draws its values from it.
pub fn formula_v(name_hash: u64, i: usize) -> f64 {
    let u = (splitmix64(name_hash.wrapping_add(i as u64)) >> 11) as f64 * 2f64.powi(-53);
    2.0 * u - 1.0
}

/// The fixture README's formula, in f64 then cast to f32.
pub fn formula_tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = fnv1a64(name.as_bytes());
    (0..n)
        .map(|i| {
            let v = formula_v(h, i);
            let x = if name.ends_with("conv.weight") {
                let fan_in = (shape[1] * shape[2] * shape[3]) as f64;
                let a = 1.5 * (6.0 / fan_in).sqrt();
                a * v - 2.0 / fan_in
            } else if name.ends_with("bn.weight") {
                1.0 + 0.1 * v
            } else if name.ends_with("bn.bias") || name.ends_with("bn.running_mean") {
                0.01 * v
            } else if name.ends_with("bn.running_var") {
                1.0
            } else if name == "fc.weight" {
                0.3 * v
            } else if name == "fc.bias" {
                0.1 * v
            } else {
                // Not a tensor of the state dict: small values, never reached by its names.
                0.01 * v
            };
            x as f32
        })
        .collect()
}

/// The whole state dict of `variant` from the formula.
pub fn state_dict(variant: Variant) -> Result<HashMap<String, Tensor>> {
    state_dict_shapes(variant)
        .into_iter()
        .map(|(n, s)| {
            let t = Tensor::from_vec(formula_tensor(&n, &s), s.as_slice(), &Device::Cpu)?;
            Ok((n, t))
        })
        .collect()
}

/// The state dict written as safetensors (a `--weights` file for the metric commands).
pub fn write_weights(variant: Variant, path: &std::path::Path) -> Result<()> {
    let sd = state_dict(variant)?;
    crate::util::write_atomic_with(path, |tmp| Ok(candle_core::safetensors::save(&sd, tmp)?))
}
