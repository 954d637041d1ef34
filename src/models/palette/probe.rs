//! The decoder probe of the Palette question (docs/palette.md): does the decoder read the forget
//! images through map 0 alone? Generation by the network with the encoder's maps from index
//! `keep` on taken from the pure-noise input — the target Ours trains the forget images' maps
//! toward — and the maps below `keep` from the real input. `keep` = every map is the plain
//! generation; `keep` = 0 feeds the decoder the noise input's maps only. Inference only: no
//! training is involved, so it separates what the maps carry from how far training moved them.
//!
//! The pure-noise input is the official forget target's: the same condition image and noise
//! level, with N(0, 1) in the noisy image's hole; at sampling time that N(0, 1) is the condition
//! image's hole noise of the same image (drawn once per image).

use super::Palette;
use crate::masks::BatchMask;
use crate::models::{Family, GenerateOptions};
use crate::nn::Mode;
use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;

pub fn generate_noise_maps(
    p: &Palette,
    pixels: &Tensor,
    mask: &BatchMask,
    rngs: &mut [ChaCha8Rng],
    opts: &GenerateOptions,
    keep: usize,
) -> Result<Tensor> {
    let dev = pixels.device().clone();
    let schedule = p.test.respaced(p.cfg.sampling_steps(opts.steps));
    let y0 = pixels.affine(2.0, -1.0)?;
    let m = mask.pixel_mask(p.size(), &dev)?;
    let zc = p.noise_per_image(rngs, &dev)?;
    let y_pure = crate::masks::paste(&y0, &zc, &m)?;
    let eps_of = |x: &Tensor, g: &Tensor| -> Result<Tensor> {
        let real = p.net.features(x, g, Mode::Infer)?;
        if keep >= real.len() {
            return p.net.decode(real, g, Mode::Infer);
        }
        let pure_x = Tensor::cat(&[&x.narrow(1, 0, 3)?, &y_pure], 1)?;
        let pure = p.net.features(&pure_x, g, Mode::Infer)?;
        let maps: Vec<Tensor> = real
            .into_iter()
            .take(keep)
            .chain(pure.into_iter().skip(keep))
            .collect();
        p.net.decode(maps, g, Mode::Infer)
    };
    let out = p.restore_with(
        &y0,
        &m,
        &zc,
        &schedule,
        &mut |_| p.noise_per_image(rngs, &dev),
        &mut |_, _| {},
        &eps_of,
    )?;
    let out = out.affine(0.5, 0.5)?.clamp(0f32, 1f32)?;
    crate::masks::composite::composite(pixels, &out, mask, p.cfg.hole_fill(), opts.composite)
}

#[cfg(test)]
mod tests {
    use super::super::tests::{random_weights, tiny_cfg};
    use super::*;
    use crate::masks::MaskSpec;
    use crate::models::I2IModel;
    use candle_core::Device;

    #[test]
    fn keeping_every_map_is_the_plain_generation_and_fewer_change_it() {
        let cfg = tiny_cfg();
        let dev = Device::Cpu;
        let p = Palette::new(cfg.clone(), &random_weights(&cfg, 3), false, &dev).unwrap();
        let x = Tensor::rand(0f32, 1.0, (2, 3, 16, 16), &dev).unwrap();
        let mask: MaskSpec = "center:8".parse().unwrap();
        let m = mask.batch(p.mask_grid(), &[1, 2]).unwrap();
        let opts = GenerateOptions {
            steps: Some(3),
            ..Default::default()
        };
        let rngs = || vec![crate::util::rng("a", 1), crate::util::rng("b", 2)];
        let plain = p
            .generate(&x, &m, &mut rngs(), &opts, &mut |_, _| {})
            .unwrap();
        let n = cfg.num_encoder_maps();
        let all = generate_noise_maps(&p, &x, &m, &mut rngs(), &opts, n).unwrap();
        let diff = |a: &Tensor, b: &Tensor| crate::util::max_abs_diff(a, b).unwrap();
        assert_eq!(diff(&plain, &all), 0.0);
        let none = generate_noise_maps(&p, &x, &m, &mut rngs(), &opts, 0).unwrap();
        assert!(diff(&plain, &none) > 1e-4);
        // Outside the hole both keep the known pixels.
        let hole = m.pixel_mask(16, &dev).unwrap();
        let known = (1.0 - &hole).unwrap();
        let outside = diff(
            &plain.broadcast_mul(&known).unwrap(),
            &none.broadcast_mul(&known).unwrap(),
        );
        assert_eq!(outside, 0.0);
    }
}
