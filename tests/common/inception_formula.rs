//! The fixture weights of tests/fixtures/inception (see its README): every tensor of the
//! InceptionV3 state dict from a formula of (name, index) that Python and Rust both compute.
#![allow(dead_code)]

use candle_core::{Device, Tensor};
use i2i_unlearn::metrics::inception::{state_dict_shapes, Variant};
use i2i_unlearn::util::{fnv1a64, splitmix64};
use std::collections::HashMap;

/// The fixture README's formula, in f64 then cast to f32.
pub fn formula_tensor(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let h = fnv1a64(name.as_bytes());
    let uv = |i: usize| {
        let u = (splitmix64(h.wrapping_add(i as u64)) >> 11) as f64 * 2f64.powi(-53);
        (u, 2.0 * u - 1.0)
    };
    (0..n)
        .map(|i| {
            let (_, v) = uv(i);
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
                panic!("unexpected tensor {name}")
            };
            x as f32
        })
        .collect()
}

pub fn state_dict(variant: Variant) -> HashMap<String, Tensor> {
    state_dict_shapes(variant)
        .into_iter()
        .map(|(n, s)| {
            let t = Tensor::from_vec(formula_tensor(&n, &s), s.as_slice(), &Device::Cpu).unwrap();
            (n, t)
        })
        .collect()
}

/// The FID state dict written as safetensors (a `--weights` file for the commands).
pub fn write_weights(path: &std::path::Path) {
    candle_core::safetensors::save(&state_dict(Variant::Fid), path).unwrap();
}
