//! Why "ours" leaves Palette's forget outputs unchanged on the quickstart's textures: a probe.
//!
//!   cargo run --release -- run experiments/quickstart_palette.yaml --output OUT
//!   cargo run --release --example palette_probe -- --original CACHE/pretrain/<hash>.safetensors \
//!       --unlearned OUT/unlearned/<ours>.safetensors
//!
//! Ours trains the encoder so that a forget image's maps equal the original's maps of the same
//! input with pure noise in the noisy image's hole. If that target behaviour — the original
//! network seeing no signal in the hole at every sampling step, only the condition image's
//! context — still inpaints the forget classes well, Ours has nothing to remove. On the
//! quickstart's forget classes (held-out images, centre 8 × 8 px, 16 steps) this prints the
//! hole's mean squared error against the truth for:
//!   1. the original, sampled normally;
//!   2. the original, its network fed a fresh N(0, 1) hole at every step ("no signal": the
//!      behaviour Ours' forget target asks for), the ancestral update as usual;
//!   3. the unlearned model (`--unlearned`), sampled normally;
//!   4. the hole filled with the mean of the known pixels (a context-only baseline), and with grey.

mod common;
use common::arg;

use candle_core::{Device, Tensor};
use i2i_unlearn::data::embedded::{Embedded, EmbeddedConfig};
use i2i_unlearn::data::{DataSource, ImageSet, Split};
use i2i_unlearn::masks::MaskSpec;
use i2i_unlearn::models::palette::{diffusion, Palette, PaletteConfig, MASK_GRID};
use i2i_unlearn::models::I2IModel;
use i2i_unlearn::nn::Mode;

fn main() -> anyhow::Result<()> {
    let dev = Device::Cpu;
    let cfg = PaletteConfig::from_yaml_value(&serde_json::json!({
        "unet": {"inner_channel": 32, "channel_mults": [1, 2], "attn_res": [2],
                 "num_head_channels": 32, "res_blocks": 1, "image_size": 16},
        "sampling": {"steps": 16}}))
    .map_err(|(_, m)| anyhow::anyhow!(m))?;
    let original = i2i_unlearn::models::load_weights(arg("--original", "").as_ref(), &dev)?;
    let teacher = Palette::new(cfg.clone(), &original, false, &dev)?;
    let src = Embedded::new(EmbeddedConfig {
        classes: 16,
        size: 16,
        seed: 7,
    })?;
    let n: usize = arg("--per-class", "30").parse()?;
    let mut raw = vec![];
    for c in [0, 1, 2] {
        raw.extend(src.images(c, Split::Val, n, 0)?);
    }
    let set = ImageSet::from_raw(&raw, 16, &dev)?;
    let b = set.len();
    let mask = "center:8".parse::<MaskSpec>().map_err(anyhow::Error::msg)?;
    let masks = mask.batch(MASK_GRID, &set.ids)?;
    let m = masks.pixel_mask(16, &dev)?;
    let y0 = set.pixels.affine(2.0, -1.0)?;
    let schedule = teacher.test.respaced(16);
    let noise = |seed: u64| -> anyhow::Result<Tensor> {
        let mut r = i2i_unlearn::util::rng("probe", seed);
        Ok(Tensor::from_vec(
            i2i_unlearn::util::normal_vec(&mut r, b * 3 * 256),
            (b, 3, 16, 16),
            &dev,
        )?)
    };
    let hole_mse = |out: &Tensor| -> anyhow::Result<f32> {
        let d = ((out - &y0)?.broadcast_mul(&m)?.sqr()?.sum_all()?
            / (m.sum_all()?.to_scalar::<f32>()? as f64 * 3.0))?;
        Ok(d.to_scalar::<f32>()?)
    };
    let sample = |net: &Palette, no_signal: bool| -> anyhow::Result<Tensor> {
        let zc = noise(1)?;
        let y_cond = i2i_unlearn::masks::paste(&y0, &zc, &m)?;
        let mut y_t = y_cond.clone();
        let t = schedule.len();
        for i in (0..t).rev() {
            let c = schedule.coefficients(i);
            let g = diffusion::gammas_tensor(&vec![c.gamma; b], &dev)?;
            let seen = if no_signal {
                i2i_unlearn::masks::paste(&y0, &noise(1000 + i as u64)?, &m)?
            } else {
                y_t.clone()
            };
            let eps = net
                .net
                .forward(&Tensor::cat(&[&y_cond, &seen], 1)?, &g, Mode::Infer)?;
            let (mean, logvar) = diffusion::posterior(&y_t, &eps, &c)?;
            let z = if i > 0 {
                Some(noise(2000 + i as u64)?)
            } else {
                None
            };
            y_t = i2i_unlearn::masks::paste(
                &y0,
                &diffusion::ancestral(&mean, logvar, z.as_ref())?,
                &m,
            )?;
        }
        Ok(y_t)
    };
    println!(
        "forget classes 0-2, {b} held-out images, centre 8x8 px, 16 steps; hole MSE in [-1, 1]:"
    );
    println!(
        "  original, normal sampling        {:.4}",
        hole_mse(&sample(&teacher, false)?)?
    );
    println!(
        "  original, no signal in the hole  {:.4}",
        hole_mse(&sample(&teacher, true)?)?
    );
    let u = arg("--unlearned", "");
    if !u.is_empty() {
        let mut w = original.clone();
        for (k, v) in i2i_unlearn::models::load_weights(u.as_ref(), &dev)? {
            w.insert(k, v);
        }
        let student = Palette::new(cfg, &w, false, &dev)?;
        println!(
            "  unlearned, normal sampling       {:.4}",
            hole_mse(&sample(&student, false)?)?
        );
        // Per encoder map, on the forget images with the training noise levels and the
        // evaluation mask: how much of the gap between the original's map and the target (the
        // original's map with pure noise in the hole) the unlearned encoder closed.
        let mut rng = i2i_unlearn::util::rng("probe-prepare", 0);
        let input = teacher.prepare(&set.pixels, &masks, &mut rng)?;
        let pure = teacher.noise_input(&input, &set.pixels)?;
        let t_x = teacher.encode(&input, Mode::Infer)?;
        let t_p = teacher.encode(&pure, Mode::Infer)?;
        let s_x = student.encode(&input, Mode::Infer)?;
        println!("  per encoder map: ‖student − target‖² / ‖original − target‖² (1 = unchanged, 0 = target reached)");
        for (i, ((a, tp), tx)) in s_x.0.iter().zip(&t_p.0).zip(&t_x.0).enumerate() {
            let num = (a - tp)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
            let den = (tx - tp)?.sqr()?.sum_all()?.to_scalar::<f32>()?;
            println!("    map {i} {:?}: {:.3}", a.dims(), num / den);
        }
    }
    // Context-only baselines: the known pixels' mean colour per image, and grey.
    let keep = m.affine(-1.0, 1.0)?;
    let mean = y0
        .broadcast_mul(&keep)?
        .sum_keepdim((2, 3))?
        .broadcast_div(&keep.sum_keepdim((2, 3))?)?;
    let filled = i2i_unlearn::masks::paste(&y0, &mean.broadcast_as(y0.shape())?.contiguous()?, &m)?;
    println!(
        "  hole = mean of the known pixels  {:.4}",
        hole_mse(&filled)?
    );
    let grey = i2i_unlearn::masks::paste(&y0, &y0.zeros_like()?, &m)?;
    println!("  hole = grey                      {:.4}", hole_mse(&grey)?);
    println!(
        "(cpu: {}, peak RSS {:.0} MiB)",
        common::cpu_model(),
        common::peak_rss_mib()
    );
    Ok(())
}
