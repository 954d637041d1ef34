//! The price of a grid before it runs (`check`, `fetch --dry-run`): images × generation passes
//! per cell, unlearning steps, and hours per device class from throughput measured on real
//! hardware. A figure nobody measured is written "not measured", never guessed.

use crate::config::{grid, Experiment};
use crate::models::{FamilyConfig, FamilyName};

/// A throughput measured (or derived from one measured) for one architecture on one device class.
#[derive(Clone, Copy, Debug)]
pub struct Rate {
    /// Images per second.
    pub per_s: f64,
    /// Where the figure comes from.
    pub source: &'static str,
}

/// Device classes an estimate is given for.
pub const DEVICES: [&str; 2] = ["cpu (2 cores, ci-2c)", "gpu"];

/// The CPU figures: the 2-core CI host (AMD EPYC, AVX-512, RAYON_NUM_THREADS=2) of
/// docs/speed.md and docs/results.md. GPU: docs/gpu.md records no throughput yet.
struct Rates {
    /// One generation pass (one sampling step, one MaskGIT decode, one MAE forward) per image.
    generate: Option<Rate>,
    /// One unlearning step, per image of the step.
    unlearn: Option<Rate>,
    /// What a generation "pass" is for this family, and how many each image needs.
    passes: (String, usize),
}

/// The architecture's rates on the 2-core CPU, where measured at this size.
fn cpu_rates(cfg: Option<&FamilyConfig>, family: FamilyName, checkpoint: Option<&str>) -> Rates {
    match (family, cfg) {
        (FamilyName::Palette, c) => {
            let (steps, real) = match c {
                Some(FamilyConfig::Palette(p)) => (
                    if p.sampling.steps == 0 {
                        p.beta_schedule.test.n_timestep
                    } else {
                        p.sampling.steps
                    },
                    p.unet.image_size == 256
                        && p.unet.inner_channel == 64
                        && p.unet.channel_mults == [1, 2, 4, 8],
                ),
                _ => (2000, false),
            };
            let m = |v, what| {
                real.then_some(Rate {
                    per_s: v,
                    source: what,
                })
            };
            Rates {
                generate: m(
                    0.297,
                    "Palette Places2 UNet forward, batch 4: 0.297 img/s (docs/results.md)",
                ),
                unlearn: m(
                    0.177,
                    "Palette Ours step, batch 4: 0.177 img/s (docs/results.md)",
                ),
                passes: ("UNet passes (sampling steps)".into(), steps),
            }
        }
        (FamilyName::Mage, c) => {
            let (iters, real) = match c {
                Some(FamilyConfig::Mage(m)) => (
                    m.inpaint.num_iter,
                    m.mage.embed_dim == 768
                        && m.mage.depth == 12
                        && m.vqgan.ddconfig.resolution == 256,
                ),
                _ => (20, false),
            };
            let m = |v, what| {
                real.then_some(Rate {
                    per_s: v,
                    source: what,
                })
            };
            Rates {
                generate: m(0.139, "MAGE ViT-B MaskGIT inpainting (centre hole), batch 4: 0.139 img/s (docs/results.md)"),
                unlearn: m(0.277, "MAGE ViT-B Ours step, batch 4: 0.277 img/s (docs/results.md)"),
                passes: (format!("MaskGIT decodes (≤ {iters} transformer iterations + tokenizer, timed as a whole)"), 1),
            }
        }
        (FamilyName::Mae, c) => {
            let size = match c {
                Some(FamilyConfig::Mae(m)) if m.image_size == 224 && m.patch_size == 16 => {
                    match m.hidden_size {
                        768 => "base",
                        1024 => "large",
                        _ => "",
                    }
                }
                None => match checkpoint {
                    Some(id) if id.contains("vit-mae-base") => "base",
                    Some(id) if id.contains("vit-mae-large") => "large",
                    _ => "",
                },
                _ => "",
            };
            let (generate, unlearn) = match size {
                "base" => (
                    Some(Rate { per_s: 5.27, source: "MAE-base forward, batch 8: 5.27 img/s (docs/speed.md)" }),
                    Some(Rate { per_s: 1.78, source: "MAE-base Ours step, 8 + 8 images: 1.78 img/s (docs/speed.md)" }),
                ),
                // ViT-L/16's encoder costs 3.56× ViT-B/16's per token (24 × 1024² against
                // 12 × 768²); the decoder is the same: dividing by 3.56 bounds the time from above.
                "large" => (
                    Some(Rate { per_s: 5.27 / 3.56, source: "MAE-base forward 5.27 img/s (docs/speed.md) ÷ 3.56, ViT-L's encoder FLOPs per token over ViT-B's (derived, not measured)" }),
                    Some(Rate { per_s: 1.78 / 3.56, source: "MAE-base Ours step 1.78 img/s (docs/speed.md) ÷ 3.56 (derived, not measured)" }),
                ),
                _ => (None, None),
            };
            Rates {
                generate,
                unlearn,
                passes: ("forward passes".into(), 1),
            }
        }
    }
}

/// Measured rates of the metric extractors on the 2-core CPU.
fn extractor_rate(r: crate::metrics::ExtractorRef) -> Option<Rate> {
    use crate::metrics::ExtractorRef as E;
    match r {
        E::InceptionV3 | E::InceptionPaper => Some(Rate {
            per_s: 18.6,
            source: "InceptionV3, whole `fid` command: 18.6 img/s (docs/speed.md)",
        }),
        E::Domain | E::Clip | E::Places365 => None,
    }
}

/// The (forget, retain) class counts of a dataset: resolved against its source's classes when
/// the source is here, as the run resolves them (a preset under `restrict_to_available` keeps
/// only the classes the source has); else its lists or its preset's, an upper bound.
fn class_counts(d: &crate::data::DatasetSpec) -> (usize, usize) {
    if d.effective_source().is_present() {
        let resolved = crate::data::open_dataset(d)
            .ok()
            .and_then(|src| crate::data::split::resolve_classes(d, &src.classes(), false).ok());
        if let Some(r) = resolved {
            return (r.forget.len(), r.retain.len());
        }
    }
    let p = d.preset.as_deref().and_then(crate::data::presets::preset);
    let f = if d.forget_classes.is_empty() {
        p.as_ref().map_or(0, |p| p.forget.len())
    } else {
        d.forget_classes.len()
    };
    let r = if d.retain_classes.is_empty() {
        p.as_ref().map_or(0, |p| p.retain.len())
    } else {
        d.retain_classes.len()
    };
    (f, r)
}

fn hours(n: f64, rate: Option<Rate>) -> Option<f64> {
    rate.map(|r| n / r.per_s / 3600.0)
}

fn fmt_h(h: Option<f64>) -> String {
    match h {
        Some(h) if h >= 100.0 => format!("{h:.0} h"),
        Some(h) if h >= 1.0 => format!("{h:.1} h"),
        Some(h) => format!("{:.0} min", (h * 60.0).max(1.0)),
        None => "not measured".into(),
    }
}

/// The price of `exp` as lines: per (dataset, model), the cells, images, passes and steps, and
/// hours per device class.
pub fn render(exp: &Experiment) -> Vec<String> {
    let cells = grid::expand(exp);
    let offline = crate::hub::HubConfig {
        offline: true,
        ..crate::hub::HubConfig::from_env()
    };
    let hub = crate::hub::Hub::new(offline).ok();
    let mut lines = vec!["compute:".to_string()];
    for d in &exp.datasets {
        let (nf, nr) = class_counts(d);
        let images = (nf + nr) * d.eval_per_class;
        for m in &exp.models {
            let mine: Vec<grid::Cell> = cells
                .iter()
                .filter(|c| c.dataset == d.name && c.model == m.name)
                .cloned()
                .collect();
            let models = grid::unlearnings(&mine);
            let cfg = m
                .family_config()
                .ok()
                .flatten()
                .or_else(|| m.resolve_config(hub.as_ref()).ok().map(|(c, _)| c));
            let id = match &m.weights {
                Some(crate::models::WeightsSource::Checkpoint(s)) => Some(s.as_str()),
                _ => None,
            };
            let rates = cpu_rates(cfg.as_ref(), m.family, id);
            let (pass_name, passes) = &rates.passes;
            let gen_images = (mine.len() * images) as f64;
            let step_images = (exp.unlearn.retain_batch + exp.unlearn.forget_batch)
                * exp.unlearn.grad_accum.max(1);
            let unlearn_images = (models * exp.unlearn.steps * step_images) as f64;
            lines.push(format!(
                "  {} × {} ({} family):",
                d.name,
                m.name,
                m.family.as_str()
            ));
            lines.push(format!(
                "    evaluation: {} cells × {images} images ({nf} forget + {nr} retain classes × {}) × {passes} {pass_name} = {:.3e} passes",
                mine.len(), d.eval_per_class, gen_images * *passes as f64
            ));
            lines.push(format!(
                "    unlearning: {models} models × {} steps × {step_images} images = {:.3e} image-steps{}",
                exp.unlearn.steps, unlearn_images,
                if m.weights.is_none() { "; plus the original's pre-training here (not costed)" } else { "" }
            ));
            let extractors = exp.metrics.extractors();
            let metric_images = gen_images + images as f64;
            let cpu_gen = hours(gen_images * *passes as f64, rates.generate);
            let cpu_unl = hours(unlearn_images, rates.unlearn);
            let mut parts = vec![
                format!("generation {}", fmt_h(cpu_gen)),
                format!("unlearning {}", fmt_h(cpu_unl)),
            ];
            let mut total = cpu_gen.unwrap_or(0.0) + cpu_unl.unwrap_or(0.0);
            let mut unmeasured = cpu_gen.is_none() || cpu_unl.is_none();
            for r in &extractors {
                let h = hours(metric_images, extractor_rate(*r));
                total += h.unwrap_or(0.0);
                unmeasured |= h.is_none() && *r != crate::metrics::ExtractorRef::Domain;
                parts.push(format!("{} {}", r.as_str(), fmt_h(h)));
            }
            lines.push(format!(
                "    {}: {} — total {}{}",
                DEVICES[0],
                parts.join(", "),
                fmt_h(Some(total)),
                if unmeasured {
                    " + the parts not measured"
                } else {
                    ""
                }
            ));
            let mut sources: Vec<&str> = [rates.generate, rates.unlearn]
                .into_iter()
                .flatten()
                .chain(extractors.iter().filter_map(|r| extractor_rate(*r)))
                .map(|r| r.source)
                .collect();
            sources.dedup();
            for s in sources {
                lines.push(format!("      from {s}"));
            }
            lines.push(format!(
                "    {}: not measured (docs/gpu.md records no GPU throughput yet)",
                DEVICES[1]
            ));
        }
    }
    lines
}
