//! `i2i-unlearn selfcheck`: checks of the installation itself, runnable on any device — the
//! device script (tools/gpu/check.sh) runs them on CUDA, the test suite on the CPU.
//!
//! - `grads`: one step of every unlearning method on the tiny model of every family of the
//!   registry (the transformer and the convolutional building blocks). Every parameter the method trains must
//!   receive a finite, non-zero gradient and move; every other parameter must stay
//!   bit-identical. candle has ops whose backward is silently missing (fused LayerNorm / softmax),
//!   and backends differ, so this is checked per device.
//! - `inception-weights`: write the formula InceptionV3 weights (no download), so `fid` / `is`
//!   can be run and compared across devices on a machine without network.

use crate::data::embedded::{Embedded, EmbeddedConfig};
use crate::data::{DataSource, ImageSet, Split};
use crate::models::{self, FamilyConfig, FamilyName, Role};
use crate::unlearn::{
    self, trainer, Ctx, MethodName, NoiseKind, Scope, StepBatch, UnlearnMask, UnlearnSpec,
};
use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

/// What one method's step did to the parameters.
#[derive(Clone, Debug, Serialize)]
pub struct GradReport {
    pub family: String,
    pub method: String,
    pub trained: usize,
    /// Trained parameters without a finite, non-zero gradient.
    pub no_gradient: Vec<String>,
    /// Trained parameters the optimiser step did not move.
    pub not_moved: Vec<String>,
    /// Parameters outside the method's scope that changed.
    pub frozen_changed: Vec<String>,
    /// A trained set that differs from the method's scope.
    pub wrong_scope: bool,
}

impl GradReport {
    pub fn ok(&self) -> bool {
        self.no_gradient.is_empty()
            && self.not_moved.is_empty()
            && self.frozen_changed.is_empty()
            && !self.wrong_scope
    }
}

/// The tiny MAE (config, initial weights on `device`) and two classes of textures (forget,
/// retain) the checks use.
pub fn tiny_setup(device: &Device) -> Result<(FamilyConfig, models::Weights, ImageSet, ImageSet)> {
    let fc = FamilyName::Mae.tiny();
    let w = fc
        .init_weights(3, &Device::Cpu)?
        .into_iter()
        .map(|(k, v)| Ok((k, v.to_device(device)?)))
        .collect::<Result<models::Weights>>()?;
    let src = Embedded::new(EmbeddedConfig {
        classes: 4,
        size: 16,
        seed: 0,
    })?;
    let set = |c: usize| -> Result<ImageSet> {
        ImageSet::from_raw(&src.images(c, Split::Train, 6, 0)?, 16, device)
    };
    Ok((fc, w, set(0)?, set(1)?))
}

fn nonzero(t: &candle_core::Tensor) -> Result<bool> {
    let n = t
        .to_dtype(candle_core::DType::F32)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f32>()?;
    Ok(n > 0.0 && n.is_finite())
}

/// The tiny architecture of `family` ([`crate::models::Family::tiny`]) with every weight moved
/// off its initial value (Palette's initialisation zeroes the last convolution of each block,
/// which would block the gradients of what feeds it), and the textures of [`tiny_setup`].
pub fn tiny_family_setup(
    family: FamilyName,
    device: &Device,
) -> Result<(FamilyConfig, models::Weights, ImageSet, ImageSet)> {
    let (_, _, forget, retain) = tiny_setup(device)?;
    let fc = family.tiny();
    let mut rng = crate::util::rng("selfcheck-palette", 0);
    let w = fc
        .init_weights(3, &Device::Cpu)?
        .into_iter()
        .map(|(k, v)| {
            let n = crate::util::normal_vec(&mut rng, v.elem_count());
            let d = candle_core::Tensor::from_vec(n, v.shape(), &Device::Cpu)?;
            Ok((k, (v + (d * 0.05)?)?.to_device(device)?))
        })
        .collect::<Result<models::Weights>>()?;
    Ok((fc, w, forget, retain))
}

/// One step of every training method on `device`, for every family of the registry
/// ([`tiny_family_setup`]).
pub fn grads(device: &Device) -> Result<Vec<GradReport>> {
    let mut out = vec![];
    for &family in FamilyName::ALL {
        out.extend(grads_of(tiny_family_setup(family, device)?, device)?);
    }
    Ok(out)
}

fn grads_of(
    (fc, w, forget, retain): (FamilyConfig, models::Weights, ImageSet, ImageSet),
    device: &Device,
) -> Result<Vec<GradReport>> {
    let family = fc.family().as_str().to_string();
    let mut out = vec![];
    for &name in MethodName::ALL.iter().filter(|m| m.trains()) {
        let method = unlearn::method(name);
        let student = fc.build(&w, true, device)?;
        let teacher = fc.build(&w, false, device)?;
        let ctx = Ctx {
            student: &*student,
            teacher: &*teacher,
            alpha: 0.5,
            noise: NoiseKind::Normal,
            paper_compat: false,
        };
        let mut mrng = crate::util::rng("selfcheck-masks", 0);
        let (rm, fm) = trainer::step_masks(
            &*student,
            UnlearnMask::Family,
            None,
            &retain.ids,
            &forget.ids,
            &mut mrng,
        )?;
        let mut prng = crate::util::rng("selfcheck-prepare", 0);
        let batch = StepBatch {
            retain: student.prepare(&retain.pixels, &rm, &mut prng)?,
            forget: student.prepare(&forget.pixels, &fm, &mut prng)?,
            noise_stats: unlearn::scalar_stats(&[&retain.pixels, &forget.pixels])?,
        };
        let mut rng = crate::util::rng("selfcheck", 0);
        let loss = method.loss(&ctx, &batch, &mut rng)?;
        let g = loss.total.backward()?;
        let trained = trainer::trainable(&*student, method.scope());
        let mut report = GradReport {
            family: family.clone(),
            method: name.as_str().into(),
            trained: trained.len(),
            no_gradient: vec![],
            not_moved: vec![],
            frozen_changed: vec![],
            wrong_scope: false,
        };
        for (n, v, _) in &trained {
            match g.get(v.as_tensor()) {
                Some(t) if nonzero(t)? => {}
                _ => report.no_gradient.push(n.clone()),
            }
        }
        let roles: &[Role] = match method.scope() {
            Scope::Encoder => &[Role::Encoder],
            Scope::Full => &[Role::Encoder, Role::Decoder],
            Scope::None => &[],
        };
        report.wrong_scope = trained.len() != student.params().with_roles(roles).len();

        // One real trainer step: trained parameters move, all others are bit-identical.
        let student = fc.build(&w, true, device)?;
        let ctx = Ctx {
            student: &*student,
            ..ctx
        };
        let spec = UnlearnSpec {
            steps: 1,
            retain_batch: 3,
            forget_batch: 3,
            warmup_steps: 0,
            ..Default::default()
        };
        let job = trainer::UnlearnJob {
            spec: &spec,
            retain: &retain,
            forget: &forget,
            eval_mask: None,
            seed: 0,
        };
        trainer::run(&*method, &ctx, &job, |_, _| {})?;
        let names: Vec<&String> = trained.iter().map(|(n, _, _)| n).collect();
        for (n, v, _) in &student.params().vars {
            let changed = crate::util::max_abs_diff(v.as_tensor(), &w[n])? > 0.0;
            if names.contains(&n) && !changed {
                report.not_moved.push(n.clone());
            } else if !names.contains(&n) && changed {
                report.frozen_changed.push(n.clone());
            }
        }
        out.push(report);
    }
    Ok(out)
}
