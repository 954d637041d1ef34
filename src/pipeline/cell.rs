//! One unlearned model and the cells it serves: unlearn it (or load it, stored by an earlier
//! run), then evaluate it under each cell's evaluation mask — generate the retain and forget
//! evaluation sets, compute the metrics, store the cell.
//!
//! The unlearned parameters are stored under `<output>/unlearned/<key>.safetensors` (only the
//! parameters the method trains) with the trainer's log beside them (`<key>.json`, written last),
//! so a run killed between two masks, or a grid whose mask list changed, reuses the unlearning.

use super::group::Group;
use super::samples::{labelled_sheet, write_png};
use super::{out_dir_of, RunOptions};
use crate::config::grid::{self, Cell};
use crate::config::Experiment;
use crate::data::ImageSet;
use crate::metrics;
use crate::models::{self, I2IModel, Weights};
use crate::store::{CellRecord, Provenance, Row, Store};
use crate::unlearn::{self, trainer, Ctx, RetainSource};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

const SAMPLES_PER_ROW: usize = 8;
/// Points per group (generated / truth × forget / retain) kept for the t-SNE figure, as the paper.
const TSNE_POINTS: usize = 50;

/// What one unlearned model's job took.
pub struct JobReport {
    pub unlearn_seconds: f64,
    pub eval_seconds: f64,
    /// Whether this run trained it (false: loaded, or the original model).
    pub unlearned: bool,
}

/// Where an unlearned model is stored.
pub fn unlearned_paths(out_dir: &Path, key: &str) -> (PathBuf, PathBuf) {
    let dir = out_dir.join("unlearned");
    (
        dir.join(format!("{key}.safetensors")),
        dir.join(format!("{key}.json")),
    )
}

/// Unlearn (or load) the model of `cells` (one unlearn key) and evaluate each cell.
pub fn run_unlearned(
    exp: &Experiment,
    g: &Group,
    cells: &[&Cell],
    opts: &RunOptions,
    store: &Store,
    done: &AtomicUsize,
    total: usize,
) -> Result<JobReport> {
    let p = &opts.progress;
    let dev = &opts.device;
    let c0 = cells[0];
    let method = unlearn::method(c0.method.name);
    let teacher = models::build(&g.family, &g.original, false, dev)?;
    let alpha_s = c0.alpha.map(|a| format!(" α={a}")).unwrap_or_default();
    let what = format!("{}{alpha_s} seed {}", c0.label, c0.seed);
    let t = Instant::now();
    let mut report = JobReport {
        unlearn_seconds: 0.0,
        eval_seconds: 0.0,
        unlearned: false,
    };
    let (model, log): (Box<dyn I2IModel>, Option<trainer::UnlearnLog>) = if c0.method.name
        == unlearn::MethodName::Retrain
    {
        let oracle = g
            .oracle
            .as_ref()
            .context("the retrain oracle was not pre-trained for this model")?;
        (models::build(&g.family, oracle, false, dev)?, None)
    } else if !c0.method.name.trains() {
        (teacher, None)
    } else {
        let (wpath, lpath) = unlearned_paths(&out_dir_of(opts, exp), &c0.unlearn_key);
        if let Some((weights, log)) = load_unlearned(&g.original, &wpath, &lpath, dev)? {
            p.note(&format!(
                "{what}: unlearned model stored by an earlier run ({} steps) → {}",
                log.steps,
                wpath.display()
            ));
            (models::build(&g.family, &weights, false, dev)?, Some(log))
        } else {
            let student = models::build(&g.family, &g.original, true, dev)?;
            let retain = match c0.method.retain {
                RetainSource::Real => &g.splits.retain_train,
                RetainSource::Proxy => g.splits.proxy_train.as_ref().context("no proxy classes")?,
            };
            let ctx = Ctx {
                student: &*student,
                teacher: &*teacher,
                alpha: c0.alpha.unwrap_or(0.0),
                noise: c0.method.noise,
                paper_compat: exp.paper_compat,
            };
            let job = trainer::UnlearnJob {
                spec: &exp.unlearn,
                retain,
                forget: &g.splits.forget_train,
                eval_mask: Some(c0.mask),
                seed: c0.seed,
            };
            let bar = p.bar(exp.unlearn.steps as u64, &format!("unlearn {what}"));
            let log = trainer::run(&*method, &ctx, &job, |_, l| {
                bar.inc(1);
                if let Ok(v) = l
                    .total
                    .to_dtype(candle_core::DType::F32)
                    .and_then(|t| t.to_scalar::<f32>())
                {
                    bar.set_message(format!("loss {v:.4}"));
                }
            })
            .with_context(|| format!("unlearning {what} ({})", c0.unlearn_key))?;
            bar.finish_and_clear();
            // Only what the method trained is stored; the rest is the original model.
            let trained: Weights = trainer::trainable(&*student, method.scope())
                .into_iter()
                .map(|(n, v, _)| (n, v.as_detached_tensor()))
                .collect();
            models::save_weights(&trained, &wpath)?;
            crate::util::write_atomic(&lpath, &serde_json::to_vec_pretty(&log)?)?;
            report.unlearned = true;
            p.note(&format!(
                "{what}: unlearned in {:.1} s ({} steps, masks: {}) → {}",
                log.seconds,
                log.steps,
                log.masks,
                wpath.display()
            ));
            (student, Some(log))
        }
    };
    report.unlearn_seconds = t.elapsed().as_secs_f64();
    for cell in cells {
        let i = done.fetch_add(1, Ordering::Relaxed) + 1;
        let t = Instant::now();
        let rec = evaluate_cell(exp, g, cell, &*model, log.clone(), opts, (i, total))?;
        store.put(&rec)?;
        report.eval_seconds += t.elapsed().as_secs_f64();
    }
    Ok(report)
}

/// The original weights with a stored unlearning's parameters on top, and its log; `None` when
/// nothing (or only a part, from a killed write) is stored.
fn load_unlearned(
    original: &Weights,
    wpath: &Path,
    lpath: &Path,
    dev: &Device,
) -> Result<Option<(Weights, trainer::UnlearnLog)>> {
    if !(wpath.is_file() && lpath.is_file()) {
        return Ok(None);
    }
    let log: trainer::UnlearnLog = serde_json::from_slice(
        &std::fs::read(lpath).with_context(|| format!("reading {}", lpath.display()))?,
    )
    .with_context(|| {
        format!(
            "{} is not an unlearning log (delete it to unlearn again)",
            lpath.display()
        )
    })?;
    let trained = models::load_weights(wpath, dev).with_context(|| {
        format!(
            "reading the unlearned model {} (delete it to unlearn again)",
            wpath.display()
        )
    })?;
    let mut w = original.clone();
    for (k, v) in trained {
        anyhow::ensure!(
            w.contains_key(&k),
            "{}: tensor `{k}` is not a parameter of the original model (delete the file to unlearn again)",
            wpath.display()
        );
        w.insert(k, v);
    }
    Ok(Some((w, log)))
}

/// One stream per image: its stable id mixed with the cell's seed.
fn image_rngs(ids: &[u64], seed: u64) -> Vec<rand_chacha::ChaCha8Rng> {
    ids.iter()
        .map(|&id| crate::util::rng("generate", crate::util::mix(&[id, seed])))
        .collect()
}

/// Generate a set in batches under the cell's mask and seed, with the experiment's batch size and
/// generation options (the evaluated model and the oracle alike).
fn generate(exp: &Experiment, cell: &Cell, model: &dyn I2IModel, set: &ImageSet) -> Result<Tensor> {
    let (mask, seed, batch, opts) = (cell.mask, cell.seed, exp.metrics.batch_size, &exp.generate);
    let grid = model.mask_grid();
    let mut outs = vec![];
    let mut start = 0;
    while start < set.len() {
        let b = batch.min(set.len() - start);
        let part = set.slice(start, b)?;
        let m = mask.batch(grid, &trainer::mask_keys(&part.ids, seed, None))?;
        let mut rngs = image_rngs(&part.ids, seed);
        outs.push(model.generate(&part.pixels, &m, &mut rngs, opts, &mut |_, _| {})?);
        start += b;
    }
    Ok(Tensor::cat(&outs, 0)?)
}

fn metric_is_audit(m: &str) -> bool {
    m == "mia_auc"
}

/// Which of the oracle's outputs a cell compares with: (set, evaluation mask, seed).
fn oracle_key(cell: &Cell, set_name: &str) -> (String, String, u64) {
    (set_name.to_string(), cell.mask.to_string(), cell.seed)
}

/// The oracle's outputs on a cell's inputs (same set, mask and seed) through the FID extractor,
/// generated once per (set, mask, seed) and kept in the group for the other cells.
fn oracle_features(
    exp: &Experiment,
    g: &Group,
    cell: &Cell,
    set_name: &str,
    set: &ImageSet,
    r: metrics::ExtractorRef,
    dev: &Device,
) -> Result<metrics::Extracted> {
    let key = oracle_key(cell, set_name);
    let mut cache = g.oracle_outputs.lock().expect("oracle cache lock");
    if let Some(e) = cache.get(&key) {
        return Ok(e.clone());
    }
    let weights = g.oracle.as_ref().context("no oracle")?;
    let oracle = models::build(&g.family, weights, false, dev)?;
    let out = generate(exp, cell, &*oracle, set)?;
    let e = metrics::extract(
        g.extractors[&r].as_ref(),
        &out,
        exp.metrics.batch_size,
        false,
    )?;
    cache.insert(key, e.clone());
    Ok(e)
}

fn evaluate_cell(
    exp: &Experiment,
    g: &Group,
    cell: &Cell,
    model: &dyn I2IModel,
    log: Option<trainer::UnlearnLog>,
    opts: &RunOptions,
    (i, n): (usize, usize),
) -> Result<CellRecord> {
    let p = &opts.progress;
    let dev = &opts.device;
    let alpha_s = cell.alpha.map(|a| format!(" α={a}")).unwrap_or_default();
    let title = format!(
        "[{i}/{n}] {}{alpha_s} {} seed {}",
        cell.label, cell.mask, cell.seed
    );
    let t = Instant::now();
    let bar = p.bar(2, &format!("evaluate {title}"));
    let dataset = &exp.datasets[cell.dataset_idx];
    let gen_protocol = model.describe_generation(&exp.generate);
    let row = |set: &str, v: metrics::MetricValue| Row {
        cell: cell.id.clone(),
        experiment: exp.name.clone(),
        dataset: dataset.name.clone(),
        model: cell.model.clone(),
        family: format!("{:?}", exp.models[cell.model_idx].family).to_lowercase(),
        method: cell.method.key(),
        label: cell.label.clone(),
        alpha: cell.alpha,
        mask: cell.mask.to_string(),
        seed: cell.seed,
        set: set.into(),
        metric: v.metric.clone(),
        value: v.value,
        n: v.n as u64,
        // The audit scores training losses, not generations.
        protocol: if metric_is_audit(&v.metric) {
            v.protocol
        } else {
            format!("{}; {gen_protocol}", v.protocol)
        },
        ci_low: v.ci.map(|c| c.0),
        ci_high: v.ci.map(|c| c.1),
    };
    let mut rows = vec![];
    let mut sheet_rows = vec![];
    let mut embeddings: std::collections::HashMap<String, Tensor> =
        std::collections::HashMap::new();
    let extractors = g.extractors();
    for (set_name, set) in [
        ("retain", &g.splits.retain_eval),
        ("forget", &g.splits.forget_eval),
    ] {
        let gen = generate(exp, cell, model, set)?;
        if opts.samples {
            // Spread the samples over the set (it is ordered by class).
            let k = SAMPLES_PER_ROW.min(set.len());
            let idx: Vec<usize> = (0..k).map(|i| i * set.len() / k).collect();
            let first = set.select(&idx)?;
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
            let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), k, dev)?;
            sheet_rows.push((first.pixels.clone(), masked, gen.index_select(&ids, 0)?));
        }
        // Embeddings of a class-spread subset, for the report's t-SNE figure.
        if let Some(r) = exp.metrics.clip {
            let k = TSNE_POINTS.min(set.len());
            let idx: Vec<usize> = (0..k).map(|i| i * set.len() / k).collect();
            let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), k, dev)?;
            let ex = extractors[&r];
            let generated = ex
                .features(&gen.index_select(&ids, 0)?)?
                .to_device(&Device::Cpu)?;
            let t = &g.truth[set_name][&r];
            let truth_rows: Vec<f32> = idx
                .iter()
                .flat_map(|&i| t.features[i * t.dim..(i + 1) * t.dim].iter().copied())
                .collect();
            embeddings.insert(format!("{set_name}_generated"), generated);
            embeddings.insert(
                format!("{set_name}_truth"),
                Tensor::from_vec(truth_rows, (k, t.dim), &Device::Cpu)?,
            );
        }
        let boot_seed = crate::util::mix(&[cell.seed, crate::util::fnv1a64(set_name.as_bytes())]);
        let (mut values, features) = metrics::evaluate_set(
            &exp.metrics,
            &extractors,
            &gen,
            &g.truth[set_name],
            boot_seed,
        )?;
        // The distance of this model's outputs to the oracle's on the same inputs. The oracle's
        // own cell leaves its outputs' features for the others, so they are generated once.
        let oracle_cell = cell.method.name == unlearn::MethodName::Retrain;
        if let (Some(r), true) = (exp.metrics.fid, g.oracle.is_some()) {
            if oracle_cell {
                g.oracle_outputs
                    .lock()
                    .expect("oracle cache lock")
                    .entry(oracle_key(cell, set_name))
                    .or_insert_with(|| features[&r].clone());
            }
        }
        if let (Some(r), true) = (exp.metrics.fid, g.oracle.is_some() && !oracle_cell) {
            let oracle = oracle_features(exp, g, cell, set_name, set, r, dev)?;
            values.push(metrics::fid_pair(
                "fid_oracle",
                "outputs-vs-retrain-oracle-outputs (same inputs, masks and seeds)",
                &features[&r],
                &oracle,
                &extractors[&r].protocol(),
                exp.metrics.bootstrap,
                crate::util::mix(&[boot_seed, crate::util::fnv1a64(b"fid_oracle")]),
            )?);
        }
        for v in values {
            rows.push(row(set_name, v));
        }
        bar.inc(1);
    }
    if let Some(audit) = &g.audit {
        for (set, v) in
            super::audit::evaluate(model, audit, cell.mask, cell.seed, exp.metrics.bootstrap)?
        {
            rows.push(row(set, v));
        }
    }
    bar.finish_and_clear();
    let out_dir = out_dir_of(opts, exp);
    if opts.samples {
        let path = out_dir.join("samples").join(format!("{}.png", cell.id));
        // Samples are for looking at; failing to write them must not lose the cell.
        let title = format!(
            "{}{} · {} · seed {}",
            cell.label,
            cell.alpha
                .map(|a| format!(" · α = {a}"))
                .unwrap_or_default(),
            cell.mask,
            cell.seed
        );
        if let Err(e) = labelled_sheet(&sheet_rows, SAMPLES_PER_ROW, &["D_R", "D_F"], &title)
            .and_then(|img| write_png(&img, &path))
        {
            p.note(&format!(
                "warning: could not write {}: {e:#}",
                path.display()
            ));
        }
    }
    if !embeddings.is_empty() {
        // Written before the cell's record, so a stored record always has its embeddings.
        let path = out_dir
            .join("embeddings")
            .join(format!("{}.safetensors", cell.id));
        crate::util::write_atomic_with(&path, |tmp| {
            Ok(candle_core::safetensors::save(&embeddings, tmp)?)
        })?;
    }
    let eval_s = t.elapsed().as_secs_f64();
    let show = |set: &str, m: &str| {
        rows.iter()
            .find(|r| r.set == set && r.metric == m)
            .map(|r| format!("{:.3}", r.value))
            .unwrap_or_else(|| "-".into())
    };
    p.note(&format!(
        "{title}: FID retain {} forget {} | eval {:.1} s",
        show("retain", "fid"),
        show("forget", "fid"),
        eval_s
    ));
    let unlearn_seconds = log.as_ref().map(|l| l.seconds).unwrap_or(0.0);
    Ok(CellRecord {
        cell: cell.clone(),
        experiment: exp.name.clone(),
        rows,
        unlearn: log,
        unlearn_seconds,
        eval_seconds: eval_s,
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
    })
}
