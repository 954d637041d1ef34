//! The one road from named weights to a `VarBuilder`, shared by every family's constructor.

use super::{Params, Role, Weights};
use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;
use std::collections::HashMap;

/// A `VarBuilder` over `weights` (as f32 on `device`) and the model's trainable variables.
///
/// With `trainable`, every weight whose `role_of` is `Some(Encoder | Decoder)` becomes a candle
/// `Var` (recorded in [`Params`], sorted by name); everything else — frozen buffers
/// (`Some(Frozen)`, e.g. fixed position tables or MAGE's tokenizer) and tensors that are no
/// parameter (`None`) — stays a plain tensor, so passes through it record no graph. Without
/// `trainable` every weight is a plain tensor and `Params` is empty (a frozen teacher).
pub fn var_builder(
    weights: &Weights,
    trainable: bool,
    device: &Device,
    role_of: impl Fn(&str) -> Option<Role>,
) -> Result<(VarBuilder<'static>, Params)> {
    let mut map: HashMap<String, Tensor> = HashMap::with_capacity(weights.len());
    let mut vars = Vec::new();
    for (name, t) in weights {
        let t = t.to_dtype(DType::F32)?.to_device(device)?;
        let role = role_of(name).filter(|r| trainable && *r != Role::Frozen);
        let t = match role {
            Some(role) => {
                let var = Var::from_tensor(&t)?;
                let tracked = var.as_tensor().clone();
                vars.push((name.clone(), var, role));
                tracked
            }
            None => t,
        };
        map.insert(name.clone(), t);
    }
    Ok((
        VarBuilder::from_tensors(map, DType::F32, device),
        Params { vars },
    ))
}
