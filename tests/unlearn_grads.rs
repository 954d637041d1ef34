//! Every trainable parameter of every method receives a non-zero gradient, and the parameters a
//! method must not train stay bit-identical after a step. (candle's fused LayerNorm / softmax
//! silently drop gradients; this test is what catches such a path.)

use candle_core::{Device, Tensor};
use i2i_unlearn::masks::MaskSpec;
use i2i_unlearn::models::{self, GenerateOptions, ModelInput};
use i2i_unlearn::unlearn::MethodName;

#[test]
fn every_trainable_parameter_gets_a_gradient_and_frozen_ones_stay() {
    // The same check `i2i-unlearn selfcheck grads --device cuda` runs on a GPU.
    let reports = i2i_unlearn::selfcheck::grads(&Device::Cpu).unwrap();
    for family in models::FamilyName::ALL.iter().map(|f| f.as_str()) {
        assert_eq!(
            reports.iter().filter(|r| r.family == family).count(),
            MethodName::ALL.iter().filter(|m| m.trains()).count(),
            "{family}"
        );
    }
    for r in &reports {
        assert!(r.trained > 0, "{r:?}");
        assert!(r.ok(), "{r:?}");
    }
}

#[test]
fn fused_inference_and_differentiable_training_paths_agree() {
    let (fc, w, forget, _) = i2i_unlearn::selfcheck::tiny_setup(&Device::Cpu).unwrap();
    let dev = Device::Cpu;
    let m = fc.build(&w, true, &dev).unwrap();
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
