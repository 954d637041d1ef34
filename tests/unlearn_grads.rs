//! Every trainable parameter of every method receives a non-zero gradient, and the parameters a
//! method must not train stay bit-identical after a step. (candle's fused LayerNorm / softmax
//! silently drop gradients; this test is what catches such a path.)

use candle_core::{Device, Tensor};
use i2i_unlearn::data::embedded::{Embedded, EmbeddedConfig};
use i2i_unlearn::data::{DataSource, ImageSet, Split};
use i2i_unlearn::masks::MaskSpec;
use i2i_unlearn::models::{self, mae::MaeConfig, FamilyConfig, GenerateOptions, ModelInput, Role};
use i2i_unlearn::unlearn::{
    self, trainer, Ctx, MethodName, NoiseKind, Scope, StepBatch, UnlearnMask, UnlearnSpec,
};

fn setup() -> (FamilyConfig, models::Weights, ImageSet, ImageSet) {
    let cfg = MaeConfig {
        image_size: 16,
        patch_size: 4,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        decoder_hidden_size: 16,
        decoder_num_hidden_layers: 1,
        decoder_num_attention_heads: 2,
        decoder_intermediate_size: 32,
        ..Default::default()
    };
    let fc = FamilyConfig::Mae(cfg);
    let dev = Device::Cpu;
    let w = models::init_weights(&fc, 3, &dev).unwrap();
    let src = Embedded::new(EmbeddedConfig {
        classes: 4,
        size: 16,
        seed: 0,
    })
    .unwrap();
    let set = |c: usize| {
        ImageSet::from_raw(&src.images(c, Split::Train, 6, 0).unwrap(), 16, &dev).unwrap()
    };
    (fc, w, set(0), set(1))
}

#[test]
fn every_trainable_parameter_gets_a_gradient_and_frozen_ones_stay() {
    let (fc, w, forget, retain) = setup();
    let dev = Device::Cpu;
    for name in MethodName::ALL.into_iter().filter(|m| m.trains()) {
        let method = unlearn::method(name);
        let student = models::build(&fc, &w, true, &dev).unwrap();
        let teacher = models::build(&fc, &w, false, &dev).unwrap();
        let ctx = Ctx {
            student: &*student,
            teacher: &*teacher,
            alpha: 0.5,
            noise: NoiseKind::Normal,
            paper_compat: false,
        };
        let mut mrng = i2i_unlearn::util::rng("m", 0);
        let (rm, fm) = trainer::step_masks(
            &*student,
            UnlearnMask::Family,
            None,
            &retain.ids,
            &forget.ids,
            &mut mrng,
        )
        .unwrap();
        let batch = StepBatch {
            retain: ModelInput::plain(&retain.pixels, &rm),
            forget: ModelInput::plain(&forget.pixels, &fm),
            noise_stats: unlearn::scalar_stats(&[&retain.pixels, &forget.pixels]).unwrap(),
        };
        let mut rng = i2i_unlearn::util::rng("t", 0);
        let loss = method.loss(&ctx, &batch, &mut rng).unwrap();
        let grads = loss.total.backward().unwrap();
        let trained = trainer::trainable(&*student, method.scope());
        assert!(!trained.is_empty());
        for (n, v, _) in &trained {
            let g = grads
                .get(v.as_tensor())
                .unwrap_or_else(|| panic!("{name:?}: no gradient for {n}"));
            let norm = g
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            assert!(
                norm > 0.0 && norm.is_finite(),
                "{name:?}: zero gradient for {n}"
            );
        }
        let expected_roles: &[Role] = match method.scope() {
            Scope::Encoder => &[Role::Encoder],
            Scope::Full => &[Role::Encoder, Role::Decoder],
            Scope::None => &[],
        };
        assert_eq!(
            trained.len(),
            student.params().with_roles(expected_roles).len()
        );

        // One real trainer step: trained parameters move, all others are bit-identical.
        let student = models::build(&fc, &w, true, &dev).unwrap();
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
        trainer::run(&*method, &ctx, &job, |_, _| {}).unwrap();
        let names: Vec<String> = trained.iter().map(|(n, _, _)| n.clone()).collect();
        for (n, v, role) in &student.params().vars {
            let before = &w[n];
            let changed = i2i_unlearn::util::max_abs_diff(v.as_tensor(), before).unwrap() > 0.0;
            if names.contains(n) {
                assert!(changed, "{name:?}: trained parameter {n} did not move");
            } else {
                assert!(
                    !changed,
                    "{name:?}: frozen parameter {n} ({role:?}) changed"
                );
            }
        }
    }
}

#[test]
fn fused_inference_and_differentiable_training_paths_agree() {
    let (fc, w, forget, _) = setup();
    let dev = Device::Cpu;
    let m = models::build(&fc, &w, true, &dev).unwrap();
    let mask = MaskSpec::RandomBox { k: 2 }.batch(4, &forget.ids).unwrap();
    let input = ModelInput::plain(&forget.pixels, &mask);
    let a = m.encode(&input, i2i_unlearn::nn::Mode::Train).unwrap();
    let b = m.encode(&input, i2i_unlearn::nn::Mode::Infer).unwrap();
    let d = i2i_unlearn::util::max_abs_diff(&a.0[0], &b.0[0]).unwrap();
    assert!(d < 1e-4, "{d}");
    let mut rngs = vec![i2i_unlearn::util::rng("g", 0); forget.len()];
    let g = m
        .generate(
            &forget.pixels,
            &mask,
            &mut rngs,
            &GenerateOptions::default(),
            &mut |_, _| {},
        )
        .unwrap();
    // Visible pixels are pasted back exactly.
    let pm = mask.pixel_mask(16, &dev).unwrap();
    let keep = (pm
        .affine(-1.0, 1.0)
        .unwrap()
        .broadcast_as(g.shape())
        .unwrap())
    .contiguous()
    .unwrap();
    let diff = ((g - &forget.pixels).unwrap() * keep)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(diff, 0.0);
    let _ = Tensor::zeros(1, candle_core::DType::F32, &dev);
}
