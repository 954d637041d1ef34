//! The membership audit of one cell's model: its per-image reconstruction loss on the audit's
//! members and non-members, summarised by the loss-threshold attack's AUC
//! ([`crate::metrics::audit`]), on the forget classes (the test) and the retain classes (the
//! control).

use crate::data::split::{Audit, AuditPair};
use crate::data::ImageSet;
use crate::masks::MaskSpec;
use crate::metrics::MetricValue;
use crate::models::{I2IModel, ModelInput};
use crate::names::MetricId;
use crate::nn::Mode;
use anyhow::Result;

/// The family's training loss of every image of `set` on its own, under the evaluation mask
/// `mask`. The family's per-batch randomness (a diffusion noise level and noise) comes from one
/// stream per image id, so every model of a grid is scored on the same draws.
///
/// Images are prepared one at a time and scored [`AUDIT_BATCH`] at a time
/// ([`I2IModel::per_image_loss`]: each value is the image's own loss).
pub fn losses(model: &dyn I2IModel, set: &ImageSet, mask: MaskSpec, seed: u64) -> Result<Vec<f64>> {
    let grid = model.mask_grid();
    let mut out = Vec::with_capacity(set.len());
    for start in (0..set.len()).step_by(AUDIT_BATCH) {
        let inputs = (start..set.len().min(start + AUDIT_BATCH))
            .map(|i| {
                let one = set.slice(i, 1)?;
                let m = mask.batch(
                    grid,
                    &crate::unlearn::trainer::mask_keys(&one.ids, seed, None),
                )?;
                let mut rng = crate::util::rng("audit", crate::util::mix(&[one.ids[0], seed]));
                model.prepare(&one.pixels, &m, &mut rng)
            })
            .collect::<Result<Vec<_>>>()?;
        out.extend(model.per_image_loss(&ModelInput::concat(&inputs)?, Mode::Infer)?);
    }
    Ok(out)
}

/// Images per pass of the audit's scoring.
pub const AUDIT_BATCH: usize = 50;

/// The audit's AUC on the forget and the retain classes, each with its bootstrap interval:
/// `(set, value)` pairs for the cell's rows.
pub fn evaluate(
    model: &dyn I2IModel,
    audit: &Audit,
    mask: MaskSpec,
    seed: u64,
    resamples: usize,
) -> Result<Vec<(&'static str, MetricValue)>> {
    let mut out = vec![];
    for (set, pair) in [("forget", &audit.forget), ("retain", &audit.retain)] {
        if let Some(v) = auc_of(model, pair, mask, seed, resamples)? {
            out.push((set, v));
        }
    }
    Ok(out)
}

fn auc_of(
    model: &dyn I2IModel,
    pair: &AuditPair,
    mask: MaskSpec,
    seed: u64,
    resamples: usize,
) -> Result<Option<MetricValue>> {
    let members = losses(model, &pair.members, mask, seed)?;
    let nonmembers = losses(model, &pair.nonmembers, mask, seed)?;
    let boot_seed = crate::util::mix(&[
        seed,
        crate::util::fnv1a64(MetricId::MiaAuc.as_str().as_bytes()),
    ]);
    let Some((value, ci)) =
        crate::metrics::audit::auc_with_interval(&members, &nonmembers, resamples, boot_seed)?
    else {
        // Not computable: a row that says so (n/a in the table), never a silently missing one.
        let why = if members.is_empty() || nonmembers.is_empty() {
            format!(
                "{} members and {} non-members",
                members.len(),
                nonmembers.len()
            )
        } else {
            let bad = members
                .iter()
                .chain(&nonmembers)
                .filter(|v| !v.is_finite())
                .count();
            format!(
                "{bad} of the {} per-image losses are not finite",
                members.len() + nonmembers.len()
            )
        };
        return Ok(Some(MetricValue {
            metric: MetricId::MiaAuc.as_str().into(),
            value: f64::NAN,
            n: members.len() + nonmembers.len(),
            protocol: format!("membership audit: not computed ({why})"),
            ci: None,
        }));
    };
    Ok(Some(MetricValue {
        metric: MetricId::MiaAuc.as_str().into(),
        value,
        n: (members.len() + nonmembers.len()),
        protocol: format!(
            "membership audit: ROC AUC of a loss-threshold attack (lower training loss = member), {} members vs {} non-members, the family's training loss under the evaluation mask, one image at a time{}",
            members.len(),
            nonmembers.len(),
            if resamples > 0 {
                format!("; 95% bootstrap interval, members and non-members resampled separately ({resamples} resamples)")
            } else {
                String::new()
            }
        ),
        ci,
    }))
}

#[cfg(test)]
mod tests {
    use crate::nn::Mode;
    use candle_core::{DType, Device, Tensor};

    /// MAE's batched per-image losses are the one-image losses, up to float rounding.
    #[test]
    fn per_image_losses_in_one_pass_equal_one_image_at_a_time() {
        let dev = Device::Cpu;
        let (cfg, w, ..) = crate::selfcheck::tiny_setup(&dev).unwrap();
        let model = cfg.build(&w, false, &dev).unwrap();
        let mut rng = crate::util::rng("per-image-test", 0);
        let px: Vec<f32> = crate::util::normal_vec(&mut rng, 7 * 3 * 16 * 16)
            .into_iter()
            .map(|v| (0.5 + 0.2 * v).clamp(0.0, 1.0))
            .collect();
        let pixels = Tensor::from_vec(px, (7, 3, 16, 16), &dev).unwrap();
        let keys: Vec<u64> = (0..7).collect();
        let mask = model.training_masks(&keys, &mut rng).unwrap();
        let input = model.prepare(&pixels, &mask, &mut rng).unwrap();
        let batched = model.per_image_loss(&input, Mode::Infer).unwrap();
        let single: Vec<f64> = (0..7)
            .map(|i| {
                let one = input.slice(i, 1).unwrap();
                let l = model.training_loss(&one, &one.pixels, Mode::Infer).unwrap();
                l.to_dtype(DType::F64).unwrap().to_scalar::<f64>().unwrap()
            })
            .collect();
        // The batch's matrix products round a few values differently (measured: 2e-7 relative).
        for (b, s) in batched.iter().zip(&single) {
            assert!((b - s).abs() <= 1e-6 * s.abs(), "{batched:?} vs {single:?}");
        }
        assert!(single.iter().all(|l| *l > 0.0));
    }

    /// A model whose losses are not finite gets an audit row that says so (n/a), not no row.
    #[test]
    fn an_audit_that_cannot_be_computed_is_a_row_that_says_why() {
        let dev = Device::Cpu;
        let (cfg, mut w, a, b) = crate::selfcheck::tiny_setup(&dev).unwrap();
        let (name, t) = w
            .iter()
            .find(|(_, t)| t.rank() == 2)
            .map(|(k, t)| (k.clone(), t.clone()))
            .unwrap();
        w.insert(name, (t * f64::NAN).unwrap());
        let model = cfg.build(&w, false, &dev).unwrap();
        let pair = || crate::data::split::AuditPair {
            members: a.clone(),
            nonmembers: b.clone(),
        };
        let audit = crate::data::split::Audit {
            forget: pair(),
            retain: pair(),
        };
        let rows = super::evaluate(&*model, &audit, "center:2".parse().unwrap(), 0, 10).unwrap();
        assert_eq!(rows.len(), 2);
        for (_, v) in rows {
            assert!(v.value.is_nan());
            assert!(
                v.protocol.contains("not computed") && v.protocol.contains("not finite"),
                "{}",
                v.protocol
            );
        }
    }
}
