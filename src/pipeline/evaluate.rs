//! The evaluation of one cell, as named steps: generate each evaluation set under the cell's
//! mask and seed ([`generate`]); keep a few rows for its sample sheet ([`sheet_rows`]) and a
//! class-spread subset's embeddings for the t-SNE figure ([`tsne_embeddings`]); compute the
//! metrics ([`metric_rows`], with the distance to the retrain oracle's outputs read from the
//! group's [`super::oracle::OracleOutputs`]); the membership audit; then the artefacts a person
//! opens ([`write_artefacts`]) and the record the store keeps ([`record`]).

use super::generate::generate;
use super::group::Group;
use super::samples::{labelled_sheet, write_png};
use super::RunOptions;
use crate::config::grid::{self, Cell};
use crate::config::Experiment;
use crate::data::ImageSet;
use crate::metrics::{self, MetricValue};
use crate::models::I2IModel;
use crate::names::{MethodName, MetricId};
use crate::store::{CellRecord, Provenance, Row};
use crate::unlearn::trainer;
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::time::Instant;

/// Images per set in a sample sheet.
const SAMPLES_PER_ROW: usize = 8;
/// Points per group (generated / truth × forget / retain) kept for the t-SNE figure, as the paper.
const TSNE_POINTS: usize = 50;

/// `k` indices spread over a set of `n` (the sets are ordered by class), as a tensor too.
fn spread(k: usize, n: usize, dev: &Device) -> Result<(Vec<usize>, Tensor)> {
    let idx: Vec<usize> = (0..k).map(|i| i * n / k).collect();
    let t = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), k, dev)?;
    Ok((idx, t))
}

/// Truth, masked input (hidden pixels grey) and output of a few images spread over the set.
fn sheet_rows(
    cell: &Cell,
    model: &dyn I2IModel,
    set: &ImageSet,
    gen: &Tensor,
    dev: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let (idx, _) = spread(SAMPLES_PER_ROW.min(set.len()), set.len(), dev)?;
    chosen_rows(cell, model, set, gen, &idx, dev)
}

/// Truth, masked input (hidden pixels grey) and output of the images at `idx`.
fn chosen_rows(
    cell: &Cell,
    model: &dyn I2IModel,
    set: &ImageSet,
    gen: &Tensor,
    idx: &[usize],
    dev: &Device,
) -> Result<(Tensor, Tensor, Tensor)> {
    let ids = Tensor::from_vec(
        idx.iter().map(|&i| i as u32).collect::<Vec<_>>(),
        idx.len(),
        dev,
    )?;
    let first = set.select(idx)?;
    let m = cell.mask.batch(
        model.mask_grid(),
        &trainer::mask_keys(&first.ids, cell.seed, None),
    )?;
    let pm = m.pixel_mask(model.image_size(), dev)?;
    let grey = (pm.ones_like()? * 0.5)?;
    let masked = crate::masks::paste(
        &first.pixels,
        &grey.broadcast_as(first.pixels.shape())?.contiguous()?,
        &pm,
    )?;
    Ok((first.pixels.clone(), masked, gen.index_select(&ids, 0)?))
}

/// The similarity extractor's embeddings of a class-spread subset of the outputs and of their
/// ground truth, for the report's t-SNE figure.
fn tsne_embeddings(
    g: &Group,
    r: metrics::ExtractorRef,
    set_name: &str,
    set: &ImageSet,
    gen: &Tensor,
    dev: &Device,
    out: &mut HashMap<String, Tensor>,
) -> Result<()> {
    let k = TSNE_POINTS.min(set.len());
    let (idx, ids) = spread(k, set.len(), dev)?;
    let generated = g.extractors[&r]
        .features(&gen.index_select(&ids, 0)?)?
        .to_device(&Device::Cpu)?;
    let t = &g.truth[set_name][&r];
    let truth_rows: Vec<f32> = idx
        .iter()
        .flat_map(|&i| t.features[i * t.dim..(i + 1) * t.dim].iter().copied())
        .collect();
    out.insert(format!("{set_name}_generated"), generated);
    out.insert(
        format!("{set_name}_truth"),
        Tensor::from_vec(truth_rows, (k, t.dim), &Device::Cpu)?,
    );
    Ok(())
}

/// The metrics of one generated set, and its FID to the oracle's outputs on the same inputs
/// where the group has the oracle (not for the oracle's own cell).
fn metric_rows(
    exp: &Experiment,
    g: &Group,
    cell: &Cell,
    set_name: &str,
    gen: &Tensor,
) -> Result<Vec<MetricValue>> {
    let boot_seed = crate::util::mix(&[cell.seed, crate::util::fnv1a64(set_name.as_bytes())]);
    let extractors = g.extractors();
    let (mut values, features) = metrics::evaluate_set(
        &exp.metrics,
        &extractors,
        gen,
        &g.truth[set_name],
        boot_seed,
    )?;
    let oracle = g.oracle_outputs.get(set_name, cell);
    if let (Some(r), Some(o), false) = (
        exp.metrics.fid,
        oracle,
        cell.method.name == MethodName::Retrain,
    ) {
        values.push(metrics::fid_pair(
            MetricId::FidOracle,
            "outputs-vs-retrain-oracle-outputs (same inputs, masks and seeds)",
            &features[&r],
            &o.features,
            &extractors[&r].protocol(),
            exp.metrics.bootstrap,
            crate::util::mix(&[
                boot_seed,
                crate::util::fnv1a64(MetricId::FidOracle.as_str().as_bytes()),
            ]),
        )?);
    }
    Ok(values)
}

/// (set, positions, (truth, masked, output)) of the qualitative figure.
type FigureRows = (String, Vec<usize>, (Tensor, Tensor, Tensor));

/// What the evaluation of a cell produced besides its rows.
#[derive(Default)]
struct Artefacts {
    sheet: Vec<(Tensor, Tensor, Tensor)>,
    /// (set, positions, (truth, masked, output)) of the qualitative figure.
    figure: Vec<FigureRows>,
    /// `figure/<cell id>/rows.json`: each figure row's set, position and class index.
    figure_rows: Vec<serde_json::Value>,
    embeddings: HashMap<String, Tensor>,
}

/// Evaluate `model` on the cell: both sets, their metrics, the audit; writes the sample sheet
/// and embeddings, and returns the record to store.
pub(crate) fn evaluate_cell(
    exp: &Experiment,
    g: &Group,
    cell: &Cell,
    model: &dyn I2IModel,
    log: Option<trainer::UnlearnLog>,
    opts: &RunOptions,
    (i, n): (usize, usize),
) -> Result<CellRecord> {
    let (p, dev) = (&opts.progress, &opts.device);
    let alpha_s = cell.alpha.map(|a| format!(" α={a}")).unwrap_or_default();
    let title = format!(
        "[{i}/{n}] {}{alpha_s} {} seed {}",
        cell.label, cell.mask, cell.seed
    );
    let t = Instant::now();
    let bar = p.bar(2, &format!("evaluate {title}"));
    let gen_protocol = model.describe_generation(&exp.generate);
    let mut rows = vec![];
    let mut art = Artefacts::default();
    for (set_name, set) in g.eval_sets() {
        // The oracle's own outputs were generated once for the group.
        let gen = match g.oracle_outputs.images(set_name, cell) {
            Some(images) if cell.method.name == MethodName::Retrain => images.clone(),
            _ => generate(exp, cell, model, set)
                .with_context(|| format!("{} ({}), the {set_name} set", cell.label, cell.model))?,
        };
        if opts.samples {
            art.sheet.push(sheet_rows(cell, model, set, &gen, dev)?);
        }
        if let Some(f) = &exp.figure {
            let pos = f.of(set_name);
            if let Some(bad) = pos.iter().find(|&&i| i >= set.len()) {
                return Err(crate::error::user(format!(
                    "figure.{set_name}: position {bad} is past the {set_name} evaluation set ({} images)",
                    set.len()
                )));
            }
            if !pos.is_empty() {
                let rows = chosen_rows(cell, model, set, &gen, pos, dev)?;
                for &i in pos {
                    art.figure_rows.push(serde_json::json!({
                        "set": set_name, "position": i, "class": set.labels[i],
                    }));
                }
                art.figure.push((set_name.to_string(), pos.to_vec(), rows));
            }
        }
        if let Some(r) = exp.metrics.clip {
            tsne_embeddings(g, r, set_name, set, &gen, dev, &mut art.embeddings)?;
        }
        for v in metric_rows(exp, g, cell, set_name, &gen)? {
            rows.push(row(exp, cell, set_name, v, &gen_protocol));
        }
        bar.inc(1);
    }
    if let Some(audit) = &g.audit {
        for (set, v) in
            super::audit::evaluate(model, audit, cell.mask, cell.seed, exp.metrics.bootstrap)?
        {
            rows.push(row(exp, cell, set, v, &gen_protocol));
        }
    }
    bar.finish_and_clear();
    write_artefacts(exp, cell, opts, &art)?;
    let eval_s = t.elapsed().as_secs_f64();
    let show = |set: &str, m: MetricId| {
        rows.iter()
            .find(|r| r.set == set && r.metric == m)
            .map(|r| format!("{:.3}", r.value))
            .unwrap_or_else(|| "-".into())
    };
    p.note(&format!(
        "{title}: FID retain {} forget {} | eval {:.1} s",
        show("retain", MetricId::Fid),
        show("forget", MetricId::Fid),
        eval_s
    ));
    Ok(record(exp, g, cell, rows, log, eval_s, dev))
}

/// A stored row of the cell.
fn row(exp: &Experiment, cell: &Cell, set: &str, v: MetricValue, gen_protocol: &str) -> Row {
    Row {
        cell: cell.id.clone(),
        experiment: exp.name.clone(),
        dataset: exp.datasets[cell.dataset_idx].name.clone(),
        model: cell.model.clone(),
        family: exp.models[cell.model_idx].family.as_str().to_string(),
        method: cell.method_key(),
        label: cell.label.clone(),
        alpha: cell.alpha,
        mask: cell.mask.to_string(),
        seed: cell.seed,
        set: set.into(),
        metric: v.metric.clone(),
        value: v.value,
        n: v.n as u64,
        // The audit scores training losses, not generations.
        protocol: if v.metric == MetricId::MiaAuc {
            v.protocol
        } else {
            format!("{}; {gen_protocol}", v.protocol)
        },
        ci_low: v.ci.map(|c| c.0),
        ci_high: v.ci.map(|c| c.1),
    }
}

/// The sample sheet (for looking at: failing to write it must not lose the cell) and the t-SNE
/// embeddings (written before the cell's record, so a stored record always has them).
fn write_artefacts(
    exp: &Experiment,
    cell: &Cell,
    opts: &RunOptions,
    art: &Artefacts,
) -> Result<()> {
    let dir = crate::store::RunDir::new(&super::out_dir_of(opts, exp));
    if opts.samples {
        let path = dir.sample_sheet(cell);
        let title = format!(
            "{}{} · {} · seed {}",
            cell.label,
            cell.alpha
                .map(|a| format!(" · α = {a}"))
                .unwrap_or_default(),
            cell.mask,
            cell.seed
        );
        if let Err(e) = labelled_sheet(&art.sheet, SAMPLES_PER_ROW, &["D_R", "D_F"], &title)
            .and_then(|img| write_png(&img, &path))
        {
            opts.progress.note(&format!(
                "warning: could not write {}: {e:#}",
                path.display()
            ));
        }
    }
    for (set, pos, (truth, masked, out)) in &art.figure {
        for (k, &p) in pos.iter().enumerate() {
            for (kind, t) in [("truth", truth), ("masked", masked), ("output", out)] {
                let img = crate::data::tensor_to_rgb(&t.get(k)?)?;
                write_png(&img, &dir.figure_image(&cell.id, set, p, kind))?;
            }
        }
    }
    if !art.figure_rows.is_empty() {
        let path = dir.figure_dir(&cell.id).join("rows.json");
        crate::util::write_atomic(
            &path,
            serde_json::to_string_pretty(&art.figure_rows)?.as_bytes(),
        )?;
    }
    if !art.embeddings.is_empty() {
        crate::util::write_atomic_with(&dir.embeddings(&cell.id), |tmp| {
            Ok(candle_core::safetensors::save(&art.embeddings, tmp)?)
        })?;
    }
    Ok(())
}

/// The cell's record, with where it came from.
fn record(
    exp: &Experiment,
    g: &Group,
    cell: &Cell,
    rows: Vec<Row>,
    log: Option<trainer::UnlearnLog>,
    eval_seconds: f64,
    dev: &Device,
) -> CellRecord {
    let unlearn_seconds = log.as_ref().map(|l| l.seconds).unwrap_or(0.0);
    CellRecord {
        cell: cell.clone(),
        experiment: exp.name.clone(),
        rows,
        unlearn: log,
        unlearn_seconds,
        eval_seconds,
        provenance: Provenance {
            tool: format!("i2i-unlearn {}", env!("CARGO_PKG_VERSION")),
            protocol_version: grid::PROTOCOL_VERSION,
            original_weights_sha256: g.original_sha.clone(),
            device: format!("{dev:?}"),
            threads: candle_core::utils::get_num_threads(),
            finished_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        },
    }
}
