//! Palette (Saharia et al. 2022) as the paper's Palette fork (branch `i2i`) builds, trains and
//! samples it: `family: palette`, the paper's diffusion family.
//!
//! - `unet.rs`: the guided-diffusion UNet (`denoise_fn`); `diffusion.rs`: β schedules,
//!   respacing and the ancestral step, kept apart from the network; `masks.rs`: the hybrid
//!   training masks; `weights.rs`: names, checkpoints, initialisation; `config.rs`: the official
//!   settings.
//! - Images are in [0, 1] at the harness's boundary and in [−1, 1] inside, as Palette's.
//! - The input is `[y_cond, y_t]`: the condition image holds N(0, 1) in the hole and the known
//!   pixels elsewhere; the noisy image is `√γ·y0 + √(1−γ)·ε` in the hole and `y0` elsewhere.
//! - Training masks: a random box united with brush strokes, on the pixel grid. Evaluation masks
//!   are drawn on a 16 × 16 grid (the paper's 16-px cells at 256 px).
//! - The encoder is `cond_embed` + every input block + the middle block (the official unlearning
//!   optimiser holds every parameter, and `cond_embed` gets gradients through the feature maps);
//!   its embedding is the list of input-block and middle-block maps, whose MSEs the loss sums.

mod config;
pub mod diffusion;
mod family;
mod masks;
mod probe;
mod unet;
mod weights;

pub use config::{
    BetaSchedule, PaletteConfig, SamplingConfig, Schedules, UnetConfig, CONFIG_FIELDS, MASK_GRID,
};
pub use diffusion::{Schedule, StepCoefficients};
pub use masks::hybrid;
pub use unet::UNet;
pub use weights::{
    check_names, expected_shapes, init_weights, load_checkpoint_weights, LAYOUT, PREFIX,
};

use super::{Embedding, Family, GenerateOptions, I2IModel, ModelInput, Params, Role, Weights};
use crate::masks::BatchMask;
use crate::nn::Mode;
use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

fn role_of(name: &str) -> Role {
    let n = name.strip_prefix(PREFIX).unwrap_or(name);
    if n.starts_with("input_blocks.")
        || n.starts_with("middle_block.")
        || n.starts_with("cond_embed.")
    {
        Role::Encoder
    } else {
        Role::Decoder
    }
}

/// Indices into [`ModelInput::cond`].
const GAMMAS: usize = 0;
const EPS: usize = 1;
const COND_NOISE: usize = 2;
const PURE: usize = 3;

/// Palette's network with its schedules.
pub struct Palette {
    cfg: PaletteConfig,
    pub net: UNet,
    pub train: Schedule,
    pub test: Schedule,
    params: Params,
}

impl Palette {
    pub fn new(
        cfg: PaletteConfig,
        weights: &Weights,
        trainable: bool,
        device: &Device,
    ) -> Result<Self> {
        check_names(&cfg, weights)?;
        let (vb, params) = super::var_builder(weights, trainable, device, |n| {
            n.starts_with(PREFIX).then(|| role_of(n))
        })?;
        Ok(Self {
            net: UNet::new(vb.pp("denoise_fn"), &cfg)?,
            train: Schedule::new(&cfg.beta_schedule.train),
            test: Schedule::new(&cfg.beta_schedule.test),
            cfg,
            params,
        })
    }

    pub fn palette_config(&self) -> &PaletteConfig {
        &self.cfg
    }

    fn size(&self) -> usize {
        self.cfg.unet.image_size
    }

    /// `[y_cond, y_t]` of a prepared batch; `signal` replaces the images as the hole's clean
    /// signal (a training target other than the images themselves).
    pub fn net_input(&self, input: &ModelInput, signal: Option<&Tensor>) -> Result<Tensor> {
        anyhow::ensure!(
            input.cond.len() == 4,
            "a Palette batch needs its noise levels and noise (I2IModel::prepare)"
        );
        let dev = input.pixels.device();
        let y0 = input.pixels.affine(2.0, -1.0)?;
        let m = input.mask.pixel_mask(self.size(), dev)?;
        let y_cond = crate::masks::paste(&y0, &input.cond[COND_NOISE], &m)?;
        let sig = match signal {
            Some(s) => s.affine(2.0, -1.0)?,
            None => y0.clone(),
        };
        let b = input.len();
        let g = input.cond[GAMMAS].reshape((b, 1, 1, 1))?;
        let pure = input.cond[PURE].reshape((b, 1, 1, 1))?;
        let keep = pure.affine(-1.0, 1.0)?;
        // Official `q_sample` with labels: the signal's share vanishes for "pure" samples,
        // whose hole is the noise itself.
        let a = (g.sqrt()? * &keep)?;
        let c = ((g.affine(-1.0, 1.0)?.sqrt()? * &keep)? + &pure)?;
        let hole = (sig.broadcast_mul(&a)? + input.cond[EPS].broadcast_mul(&c)?)?;
        let y_t = crate::masks::paste(&y0, &hole, &m)?;
        Ok(Tensor::cat(&[&y_cond, &y_t], 1)?)
    }

    /// `mse(mask·ε, mask·ε̂)` over every element, as Palette's training step.
    fn masked_noise_loss(&self, input: &ModelInput, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let eps_hat = self.net.forward(x, &input.cond[GAMMAS], mode)?;
        let m = input.mask.pixel_mask(self.size(), x.device())?;
        let eps = &input.cond[EPS];
        crate::nn::mse(&eps_hat.broadcast_mul(&m)?, &eps.broadcast_mul(&m)?)
    }

    /// One N(0, 1) image per stream, `[B, 3, S, S]`.
    fn noise_per_image(&self, rngs: &mut [ChaCha8Rng], device: &Device) -> Result<Tensor> {
        let s = self.size();
        let n = 3 * s * s;
        let v: Vec<f32> = rngs
            .iter_mut()
            .flat_map(|r| crate::util::normal_vec(r, n))
            .collect();
        Ok(Tensor::from_vec(v, (rngs.len(), 3, s, s), device)?)
    }

    /// The ancestral restoration loop of the test schedule respaced to `steps`, from `y_cond`
    /// (the masked image with `cond_noise` in the hole), the known region reset at every step;
    /// `step_noise(i)` gives the noise of step `i` (counting down; none at 0). Returns y_0 in
    /// [−1, 1].
    pub fn restore(
        &self,
        y0: &Tensor,
        mask: &Tensor,
        cond_noise: &Tensor,
        schedule: &Schedule,
        step_noise: &mut dyn FnMut(usize) -> Result<Tensor>,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let net = |x: &Tensor, g: &Tensor| self.net.forward(x, g, Mode::Infer);
        self.restore_with(y0, mask, cond_noise, schedule, step_noise, on_step, &net)
    }

    /// [`Palette::restore`] with `eps(x, gammas)` as the noise prediction of `x = [y_cond, y_t]`.
    #[allow(clippy::too_many_arguments)]
    pub fn restore_with(
        &self,
        y0: &Tensor,
        mask: &Tensor,
        cond_noise: &Tensor,
        schedule: &Schedule,
        step_noise: &mut dyn FnMut(usize) -> Result<Tensor>,
        on_step: &mut dyn FnMut(usize, usize),
        eps_of: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Tensor> {
        let b = y0.dim(0)?;
        let y_cond = crate::masks::paste(y0, cond_noise, mask)?.detach();
        let mut y_t = y_cond.clone();
        let n = schedule.len();
        for i in (0..n).rev() {
            let c = schedule.coefficients(i);
            let gam = diffusion::gammas_tensor(&vec![c.gamma; b], y0.device())?;
            let eps = eps_of(&Tensor::cat(&[&y_cond, &y_t], 1)?, &gam)?;
            let (mean, logvar) = diffusion::posterior(&y_t, &eps, &c)?;
            let noise = if i > 0 { Some(step_noise(i)?) } else { None };
            let y = diffusion::ancestral(&mean, logvar, noise.as_ref())?;
            // Generation needs no gradients: detached, a trainable (student) network does not
            // keep every step's graph alive through y_t.
            y_t = crate::masks::paste(y0, &y, mask)?.detach();
            on_step(n - i, n);
        }
        Ok(y_t)
    }
}

impl I2IModel for Palette {
    fn image_size(&self) -> usize {
        self.cfg.image_size()
    }
    fn mask_grid(&self) -> usize {
        self.cfg.mask_grid()
    }
    /// Hybrid masks (a random box and brush strokes) on the pixel grid.
    fn training_masks(&self, keys: &[u64], _rng: &mut ChaCha8Rng) -> Result<BatchMask> {
        BatchMask::ragged(
            keys.iter()
                .map(|&k| masks::hybrid(self.size(), k))
                .collect(),
        )
    }
    /// A noise level per image as `Network.forward` draws it (t uniform in [1, T), γ uniform
    /// between ᾱ_{t−1} and ᾱ_t of the train schedule), the noise ε of the noisy image and the
    /// N(0, 1) of the condition image's hole.
    fn prepare(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rng: &mut ChaCha8Rng,
    ) -> Result<ModelInput> {
        let b = mask.len();
        let dev = pixels.device();
        let t_max = self.train.len();
        let gammas: Vec<f64> = (0..b)
            .map(|_| {
                let t = rng.random_range(1..t_max);
                let u: f64 = rng.random();
                self.train.training_gamma(t, u)
            })
            .collect();
        let s = self.size();
        let n = b * 3 * s * s;
        let eps = Tensor::from_vec(crate::util::normal_vec(rng, n), (b, 3, s, s), dev)?;
        let zc = Tensor::from_vec(crate::util::normal_vec(rng, n), (b, 3, s, s), dev)?;
        Ok(ModelInput {
            pixels: pixels.clone(),
            mask: mask.clone(),
            cond: vec![
                diffusion::gammas_tensor(&gammas, dev)?,
                eps,
                zc,
                Tensor::zeros(b, DType::F32, dev)?,
            ],
        })
    }
    /// The official forget target: the same image as condition, the same noise level and noise,
    /// and pure noise in the noisy image's hole (the `noise` image of the harness is not used:
    /// diffusion's noise target is the N(0, 1) itself, method.md).
    fn noise_input(&self, input: &ModelInput, _noise: &Tensor) -> Result<ModelInput> {
        let mut cond = input.cond.clone();
        anyhow::ensure!(cond.len() == 4, "a Palette batch needs I2IModel::prepare");
        cond[PURE] = cond[PURE].ones_like()?;
        Ok(ModelInput {
            pixels: input.pixels.clone(),
            mask: input.mask.clone(),
            cond,
        })
    }
    fn encode(&self, input: &ModelInput, mode: Mode) -> Result<Embedding> {
        let x = self.net_input(input, None)?;
        Ok(Embedding(self.net.features(
            &x,
            &input.cond[GAMMAS],
            mode,
        )?))
    }
    /// The noise prediction (what the official Retain Label compares).
    fn output(&self, input: &ModelInput, mode: Mode) -> Result<Tensor> {
        let x = self.net_input(input, None)?;
        self.net.forward(&x, &input.cond[GAMMAS], mode)
    }
    /// Palette's loss, `mse(mask·ε, mask·ε̂)`, with `target` as the hole's clean signal.
    fn training_loss(&self, input: &ModelInput, target: &Tensor, mode: Mode) -> Result<Tensor> {
        let signal = (target.id() != input.pixels.id()).then_some(target);
        let x = self.net_input(input, signal)?;
        self.masked_noise_loss(input, &x, mode)
    }
    fn loss_denominator(&self, input: &ModelInput) -> f64 {
        input.pixels.elem_count() as f64
    }
    /// Noisy Label's forget term as the official code: the hole of the noisy image is pure noise
    /// and the network is trained to predict that noise.
    fn random_target_loss(
        &self,
        input: &ModelInput,
        noise: &Tensor,
        _rng: &mut ChaCha8Rng,
        mode: Mode,
    ) -> Result<Tensor> {
        let pure = self.noise_input(input, noise)?;
        let x = self.net_input(&pure, None)?;
        self.masked_noise_loss(&pure, &x, mode)
    }
    /// Ancestral sampling over the (respaced) test schedule, then compositing.
    fn generate(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rngs: &mut [ChaCha8Rng],
        opts: &GenerateOptions,
        on_step: &mut dyn FnMut(usize, usize),
    ) -> Result<Tensor> {
        let dev = pixels.device().clone();
        let schedule = self.test.respaced(self.cfg.sampling_steps(opts.steps));
        let y0 = pixels.affine(2.0, -1.0)?;
        let m = mask.pixel_mask(self.size(), &dev)?;
        let zc = self.noise_per_image(rngs, &dev)?;
        let out = self.restore(
            &y0,
            &m,
            &zc,
            &schedule,
            &mut |_| self.noise_per_image(rngs, &dev),
            on_step,
        )?;
        let out = out.affine(0.5, 0.5)?.clamp(0f32, 1f32)?;
        crate::masks::composite::composite(pixels, &out, mask, self.cfg.hole_fill(), opts.composite)
    }
    fn generate_noise_maps(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rngs: &mut [ChaCha8Rng],
        opts: &GenerateOptions,
        keep: usize,
    ) -> Option<Result<Tensor>> {
        Some(probe::generate_noise_maps(
            self, pixels, mask, rngs, opts, keep,
        ))
    }
    fn describe_generation(&self, opts: &GenerateOptions) -> String {
        let t = &self.cfg.beta_schedule.test;
        let n = self.cfg.sampling_steps(opts.steps);
        let steps = if n == t.n_timestep {
            format!("all {n} steps (as the official sampler)")
        } else {
            format!(
                "respaced to {n} of its {} steps (a deviation: the official sampler runs all)",
                t.n_timestep
            )
        };
        format!(
            "generation: {}, ancestral DDPM from the masked image with N(0,1) in the hole, known region reset every step, test β schedule {} {}→{} {steps}",
            opts.composite.describe(self.size()),
            t.schedule,
            t.linear_start,
            t.linear_end
        )
    }
    /// One pass at the test schedule's last (noisiest) step from the condition image: the
    /// predicted y0, clipped.
    fn predict(
        &self,
        pixels: &Tensor,
        mask: &BatchMask,
        rngs: &mut [ChaCha8Rng],
    ) -> Result<Tensor> {
        let dev = pixels.device();
        let b = mask.len();
        let y0 = pixels.affine(2.0, -1.0)?;
        let m = mask.pixel_mask(self.size(), dev)?;
        let zc = self.noise_per_image(rngs, dev)?;
        let y_cond = crate::masks::paste(&y0, &zc, &m)?;
        let c = self.test.coefficients(self.test.len() - 1);
        let gam = diffusion::gammas_tensor(&vec![c.gamma; b], dev)?;
        let eps = self
            .net
            .forward(&Tensor::cat(&[&y_cond, &y_cond], 1)?, &gam, Mode::Infer)?;
        let y0_hat = ((&y_cond * c.sqrt_recip_gammas)? - (eps * c.sqrt_recipm1_gammas)?)?;
        Ok(y0_hat.clamp(-1f32, 1f32)?.affine(0.5, 0.5)?)
    }
    /// The official optimiser is Adam without weight decay; with decay configured here, it
    /// spares biases and GroupNorms as the other families do.
    fn decays(&self, name: &str, var: &Var) -> bool {
        var.rank() >= 2 && !name.ends_with(".bias")
    }
    fn params(&self) -> &Params {
        &self.params
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn tiny_cfg() -> PaletteConfig {
        let mut c = PaletteConfig::default();
        c.unet.inner_channel = 32;
        c.unet.channel_mults = vec![1, 2];
        c.unet.attn_res = vec![2];
        c.unet.num_head_channels = 16;
        c.unet.res_blocks = 1;
        c.unet.image_size = 16;
        c.beta_schedule.train.n_timestep = 100;
        c.beta_schedule.test.n_timestep = 100;
        c
    }

    /// Fresh weights moved off zero everywhere (the zero-initialised convolutions would block
    /// gradients to what feeds them).
    pub(crate) fn random_weights(cfg: &PaletteConfig, seed: u64) -> Weights {
        let dev = Device::Cpu;
        let mut rng = crate::util::rng("palette-test", seed);
        init_weights(cfg, seed, &dev)
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let n = crate::util::normal_vec(&mut rng, v.elem_count());
                let d = Tensor::from_vec(n, v.shape(), &dev).unwrap();
                (k, (v + (d * 0.05).unwrap()).unwrap())
            })
            .collect()
    }

    #[test]
    fn encoder_is_input_and_middle_blocks_and_gradients_reach_it() {
        let cfg = tiny_cfg();
        let dev = Device::Cpu;
        let w = random_weights(&cfg, 0);
        let m = Palette::new(cfg.clone(), &w, true, &dev).unwrap();
        let x = Tensor::rand(0f32, 1.0, (2, 3, 16, 16), &dev).unwrap();
        let mut rng = crate::util::rng("t", 0);
        let mask = m.training_masks(&[1, 2], &mut rng).unwrap();
        let input = m.prepare(&x, &mask, &mut rng).unwrap();
        let emb = m.encode(&input, Mode::Train).unwrap();
        assert_eq!(emb.0.len(), cfg.num_encoder_maps());
        let target = emb.detach();
        let pure = m.noise_input(&input, &x).unwrap();
        let t2 = m.encode(&pure, Mode::Infer).unwrap().detach();
        assert!(t2.mse(&target).unwrap().to_scalar::<f32>().unwrap() > 0.0);
        let loss = emb.mse(&t2).unwrap();
        let grads = loss.backward().unwrap();
        for (name, var, role) in &m.params().vars {
            let g = grads.get(var.as_tensor());
            let nz = g
                .map(|g| {
                    g.abs()
                        .unwrap()
                        .sum_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                        > 0.0
                })
                .unwrap_or(false);
            match role {
                Role::Encoder => assert!(nz, "encoder tensor {name} got no gradient"),
                _ => assert!(
                    !nz,
                    "decoder tensor {name} got a gradient from the encoder loss"
                ),
            }
        }
        // The whole network trains through the noise loss.
        let l = m.training_loss(&input, &x, Mode::Train).unwrap();
        let g = l.backward().unwrap();
        let out = &m
            .params()
            .vars
            .iter()
            .find(|(n, _, _)| n == "denoise_fn.out.2.weight")
            .unwrap()
            .1;
        assert!(g.get(out.as_tensor()).is_some());
    }

    #[test]
    fn generation_is_deterministic_per_image_and_keeps_known_pixels() {
        let mut cfg = tiny_cfg();
        cfg.sampling.steps = 5;
        let dev = Device::Cpu;
        let w = init_weights(&cfg, 1, &dev).unwrap();
        let m = Palette::new(cfg, &w, false, &dev).unwrap();
        let x = Tensor::rand(0f32, 1.0, (2, 3, 16, 16), &dev).unwrap();
        let mask = "center:8"
            .parse::<crate::masks::MaskSpec>()
            .unwrap()
            .batch(MASK_GRID, &[0, 1])
            .unwrap();
        let run = |b: usize| {
            let mut rngs: Vec<_> = (0..b).map(|i| crate::util::rng("g", i as u64)).collect();
            let mut steps = 0;
            let out = m
                .generate(
                    &x.narrow(0, 0, b).unwrap(),
                    &mask.head(b),
                    &mut rngs,
                    &GenerateOptions::default(),
                    &mut |_, _| steps += 1,
                )
                .unwrap();
            assert_eq!(steps, 5);
            out
        };
        let both = run(2);
        let one = run(1);
        assert!(crate::util::max_abs_diff(&both.narrow(0, 0, 1).unwrap(), &one).unwrap() < 1e-5);
        let pm = mask.pixel_mask(16, &dev).unwrap();
        let keep = pm.affine(-1.0, 1.0).unwrap();
        let d = crate::util::max_abs_diff(
            &both.broadcast_mul(&keep).unwrap(),
            &x.broadcast_mul(&keep).unwrap(),
        )
        .unwrap();
        assert!(d < 1e-6, "known pixels changed by {d}");
    }
}
