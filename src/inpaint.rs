//! `i2i-unlearn inpaint`: run a model's inpainting on a folder of images, for inspection and for
//! checks by others.

use crate::data::folder;
use crate::masks::MaskSpec;
use crate::models::{self, FamilyName, GenerateOptions, I2IModel};
use crate::progress::Progress;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub struct InpaintArgs<'a> {
    pub model: &'a str,
    pub family: FamilyName,
    pub generate: GenerateOptions,
    pub mask: MaskSpec,
    pub images: &'a Path,
    pub out: &'a Path,
    pub save_tensors: Option<&'a Path>,
    pub batch_size: usize,
    pub seed: u64,
    pub device: Device,
}

/// Load a model of `family` from a hub id or a local checkpoint folder, through the registry.
/// Returns the model, the SHA-256 of its weights file and the key layout it was found in.
pub fn load_model(
    family: FamilyName,
    spec: &str,
    device: &Device,
) -> Result<(Box<dyn I2IModel>, String, String)> {
    let hub = crate::hub::Hub::from_env()?;
    let ck = models::resolve_checkpoint(family, spec, Some(&hub))?;
    // The hash reads the file on one core while the other copies its tensors out.
    let (p, sha) = std::thread::scope(|s| {
        let sha = s.spawn(|| ck.sha256());
        let p = models::load_resolved(family, ck.clone(), device);
        (p, sha.join().expect("the hashing thread panicked"))
    });
    let (p, sha) = (p?, sha?);
    Ok((p.config.build(&p.weights, false, device)?, sha, p.layout))
}

/// The images under `--images` (bad input when there is no folder or no image), after checking
/// that no output can overwrite an input: `--out` outside `--images`, one output per input
/// (`x.png`, `x.jpg` and `x.PNG` would all be written to `x.png`), `--save-tensors` not an input.
fn list_inputs(a: &InpaintArgs, p: &Progress) -> Result<Vec<PathBuf>> {
    let images = a.images;
    if !images.is_dir() {
        return Err(crate::error::user(format!(
            "--images {}: not a folder",
            images.display()
        )));
    }
    let listing = folder::list_images_noted(images)?;
    if let Some(n) = listing.note() {
        p.note(&n);
    }
    let files = listing.files;
    if files.is_empty() {
        return Err(crate::error::user(format!(
            "no PNG or JPEG images under {}",
            images.display()
        )));
    }
    let canon_images = images.canonicalize()?;
    if existing_ancestor(a.out).starts_with(&canon_images) {
        return Err(crate::error::user(format!(
            "--out {} is inside --images {}: outputs would be read as inputs (and could overwrite them); give a folder outside it",
            a.out.display(),
            images.display()
        )));
    }
    let mut targets: HashMap<PathBuf, &PathBuf> = HashMap::new();
    for f in &files {
        if let Some(first) = targets.insert(output_path(a, f), f) {
            return Err(crate::error::user(format!(
                "{} and {} would both be written to {}: rename one of them (outputs are PNGs named after their input)",
                first.display(),
                f.display(),
                output_path(a, f).display()
            )));
        }
    }
    if let Some(t) = a.save_tensors {
        let t = existing_ancestor(t);
        if files.iter().any(|f| f.canonicalize().is_ok_and(|f| f == t)) {
            return Err(crate::error::user(format!(
                "--save-tensors {} names an input image: give another file",
                a.save_tensors.expect("checked").display()
            )));
        }
    }
    Ok(files)
}

/// The output file of an input: its path under `--out`, as a PNG (OS strings kept as they are).
fn output_path(a: &InpaintArgs, input: &Path) -> PathBuf {
    a.out
        .join(input.strip_prefix(a.images).unwrap_or(input))
        .with_extension("png")
}

/// `path` resolved through its nearest existing ancestor (links and `..` resolved), the rest
/// appended: where a file that may not exist yet would be.
fn existing_ancestor(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut rest = vec![];
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            return rest.iter().rev().fold(c, |acc: PathBuf, r| acc.join(r));
        }
        match (cur.file_name(), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            _ => return abs,
        }
    }
}

/// `--save-tensors`: every batch's tensors joined, and the file order beside them.
fn write_tensors(
    path: &Path,
    saved: HashMap<&str, Vec<Tensor>>,
    names: &[String],
    p: &Progress,
) -> Result<()> {
    let mut map = HashMap::new();
    for (k, v) in saved {
        map.insert(k.to_string(), Tensor::cat(&v, 0)?);
    }
    candle_core::safetensors::save(&map, path)
        .with_context(|| format!("writing {}", path.display()))?;
    let list = PathBuf::from(format!("{}.files.txt", path.display()));
    std::fs::write(&list, names.join("\n") + "\n")?;
    p.note(&format!(
        "wrote {} (inputs, predictions = raw, unpasted, on the [0, 1] scale; outputs = pasted; mask = 1 where hidden; rows in the order of {})",
        path.display(),
        list.display()
    ));
    Ok(())
}

pub fn run(a: &InpaintArgs, p: &Progress) -> Result<usize> {
    let files = list_inputs(a, p)?;
    let (model, sha, layout) = load_model(a.family, a.model, &a.device)?;
    let size = model.image_size();
    let grid = model.mask_grid();
    a.mask.check_grid(grid).map_err(crate::error::user)?;
    p.note(&format!(
        "{}: {} images, {size} px, mask {} on a {grid}×{grid} grid, weights sha256 {} ({layout}), {}",
        a.model,
        files.len(),
        a.mask,
        &sha[..12],
        model.describe_generation(&a.generate)
    ));
    std::fs::create_dir_all(a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let bar = p.bar(files.len() as u64, "inpaint");
    // On a CPU each batch as one shard per thread, each shard on a core of its own: every
    // image's output is its own (see `models::generate_in_shards`). A GPU takes it whole.
    let shards = crate::parallel::Shards::for_device(&a.device)?;
    let mut saved: HashMap<&str, Vec<Tensor>> = HashMap::new();
    let mut names: Vec<String> = vec![];
    let mut skipped = vec![];
    for chunk in files.chunks(a.batch_size.max(1)) {
        let dec = folder::decode_files(chunk);
        skipped.extend(dec.failed.clone());
        if dec.images.is_empty() {
            continue;
        }
        let n = dec.images.len();
        let data: Vec<f32> = dec
            .images
            .iter()
            .flat_map(|(_, img)| folder::to_chw_resized(img, size))
            .collect();
        let x = Tensor::from_vec(data, (n, 3, size, size), &a.device)?;
        let keys: Vec<u64> = dec
            .images
            .iter()
            .map(|(path, _)| {
                crate::util::mix(&[crate::util::fnv1a64(rel(path, a.images).as_bytes()), a.seed])
            })
            .collect();
        let m = a.mask.batch(grid, &keys)?;
        let mut rngs: Vec<_> = keys
            .iter()
            .map(|&k| crate::util::rng("generate", k))
            .collect();
        // The saved one-pass predictions draw from streams of their own, seeded alike (--seed
        // and the image's name), so they follow --seed and do not shift the generation's.
        let mut predict_rngs: Vec<_> = keys
            .iter()
            .map(|&k| crate::util::rng("predict", k))
            .collect();
        // A second bar over the sampling steps of this batch, for families that sample in
        // steps (diffusion: up to 2000 network passes per batch).
        let mut steps_bar: Option<crate::progress::Bar> = None;
        let out = models::generate_in_shards(
            model.as_ref(),
            &shards,
            &x,
            &m,
            &mut rngs,
            &a.generate,
            &mut |_, total| {
                if total > 1 {
                    steps_bar
                        .get_or_insert_with(|| p.bar(total as u64, "sampling steps"))
                        .inc(1);
                }
            },
        )?;
        if let Some(b) = steps_bar {
            b.finish_and_clear();
        }
        anyhow::ensure!(
            models::is_finite(&out)?,
            "{}: the outputs of {} hold NaN or infinite values (generation); nothing written for them",
            a.model,
            rel(&dec.images[0].0, a.images)
        );
        for (i, (path, _)) in dec.images.iter().enumerate() {
            let target = output_path(a, path);
            let img = crate::data::tensor_to_rgb(&out.get(i)?)?;
            let mut bytes = std::io::Cursor::new(Vec::new());
            img.write_to(&mut bytes, image::ImageFormat::Png)?;
            crate::util::write_atomic(&target, bytes.get_ref())?;
            names.push(rel(path, a.images));
        }
        if a.save_tensors.is_some() {
            saved.entry("predictions").or_default().push(model.predict(
                &x,
                &m,
                &mut predict_rngs,
            )?);
            saved.entry("inputs").or_default().push(x);
            saved.entry("outputs").or_default().push(out);
            saved
                .entry("mask")
                .or_default()
                .push(m.patch_mask(&a.device)?);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if !skipped.is_empty() {
        let d = folder::Decoded {
            images: vec![],
            failed: skipped,
        };
        eprintln!("{}", d.warning().expect("non-empty"));
    }
    if let Some(path) = a.save_tensors {
        write_tensors(path, saved, &names, p)?;
    }
    Ok(names.len())
}

fn rel(path: &Path, root: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use crate::masks::MaskSpec;
    use crate::models::{self, FamilyConfig, GenerateOptions, I2IModel};
    use crate::parallel::Shards;
    use candle_core::{Device, Tensor};

    /// Every family generates each image from its own pixels, mask and stream: shards of the
    /// batch give the batch's outputs, up to float rounding.
    #[test]
    fn generation_in_shards_equals_the_whole_batch() {
        let dev = Device::Cpu;
        let (mae, w, ..) = crate::selfcheck::tiny_setup(&dev).unwrap();
        let palette = FamilyConfig::Palette(models::palette::tests::tiny_cfg());
        let pw = palette.init_weights(1, &dev).unwrap();
        let (mage, _) = models::mage::tests::tiny();
        let mage = FamilyConfig::Mage(mage);
        let gw = mage.init_weights(2, &dev).unwrap();
        let opts = GenerateOptions {
            steps: Some(3),
            ..Default::default()
        };
        for (cfg, w) in [(mae, w), (palette, pw), (mage, gw)] {
            let model: Box<dyn I2IModel> = cfg.build(&w, false, &dev).unwrap();
            let (n, s) = (5, model.image_size());
            let pixels = Tensor::rand(0f32, 1.0, (n, 3, s, s), &dev).unwrap();
            let keys: Vec<u64> = (0..n as u64).collect();
            let mask = MaskSpec::Center {
                k: model.mask_grid() / 2,
            }
            .batch(model.mask_grid(), &keys)
            .unwrap();
            let rngs = || -> Vec<_> { keys.iter().map(|&k| crate::util::rng("t", k)).collect() };
            let whole = model
                .generate(&pixels, &mask, &mut rngs(), &opts, &mut |_, _| {})
                .unwrap();
            let mut steps = 0;
            let shards = models::generate_in_shards(
                model.as_ref(),
                &Shards::new(3).unwrap(),
                &pixels,
                &mask,
                &mut rngs(),
                &opts,
                &mut |_, _| steps += 1,
            )
            .unwrap();
            let diff = crate::util::max_abs_diff(&whole, &shards).unwrap();
            // At these tiny shapes MAE's matrix products round a few values by their row count
            // (measured: 1.2e-7; at MAE-base's shapes `inpaint --save-tensors` gave the same
            // bits on 1 and 2 threads); Palette and MAGE came out bit for bit the same.
            assert!(diff <= 1e-6, "{diff}: {}", model.describe_generation(&opts));
            if matches!(cfg, FamilyConfig::Palette(_)) {
                assert_eq!(steps, 3, "the first shard's sampling steps are reported");
            }
        }
    }
}
