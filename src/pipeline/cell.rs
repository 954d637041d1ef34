//! One unlearned model and the cells it serves: unlearn it (or load it, stored by an earlier
//! run), then evaluate it under each cell's evaluation mask — generate the retain and forget
//! evaluation sets, compute the metrics, store the cell.
//!
//! The unlearned parameters are stored under `<output>/unlearned/<key>.safetensors` (only the
//! parameters the method trains) with the trainer's log beside them (`<key>.json`, written last),
//! so a run killed between two masks, or a grid whose mask list changed, reuses the unlearning.

use super::evaluate::evaluate_cell;
use super::group::Group;
use super::RunOptions;
use crate::config::grid::Cell;
use crate::config::Experiment;
use crate::models::{I2IModel, Weights};
use crate::names::MethodName;
use crate::store::Store;
use crate::unlearn::{self, controllable, trainer, Ctx, RetainSource};
use anyhow::{Context, Result};
use candle_core::Device;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

/// Counts the cells this run evaluates, for `[i/n]` in the progress lines.
pub struct CellCounter {
    done: AtomicUsize,
    pub total: usize,
}

impl CellCounter {
    pub fn new(total: usize) -> Self {
        Self {
            done: AtomicUsize::new(0),
            total,
        }
    }
    /// The number of the cell starting now (from 1).
    pub fn next(&self) -> usize {
        self.done.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// What one unlearned model's job took.
pub struct JobReport {
    pub unlearn_seconds: f64,
    pub eval_seconds: f64,
    /// Whether this run trained it (false: loaded, or the original model).
    pub unlearned: bool,
}

/// Unlearn (or load) the model of `cells` (one unlearn key) and evaluate each cell.
pub fn run_unlearned(
    exp: &Experiment,
    g: &Group,
    cells: &[&Cell],
    opts: &RunOptions,
    store: &Store,
    counter: &CellCounter,
) -> Result<JobReport> {
    let p = &opts.progress;
    let dev = &opts.device;
    let c0 = cells[0];
    let teacher = g.family.build(&g.original, false, dev)?;
    let alpha_s = c0.alpha.map(|a| format!(" α={a}")).unwrap_or_default();
    let what = format!("{}{alpha_s} seed {}", c0.label, c0.seed);
    let t = Instant::now();
    let mut report = JobReport {
        unlearn_seconds: 0.0,
        eval_seconds: 0.0,
        unlearned: false,
    };
    let (model, log): (Box<dyn I2IModel>, Option<trainer::UnlearnLog>) = if c0.method.name
        == MethodName::Retrain
    {
        let oracle = g
            .oracle
            .as_ref()
            .context("the retrain oracle was not pre-trained for this model")?;
        (g.family.build(oracle, false, dev)?, None)
    } else if !c0.method.name.trains() {
        (teacher, None)
    } else {
        let (wpath, lpath) = store.run_dir().unlearned(&c0.unlearn_key);
        let stored = load_unlearned(g, &c0.unlearn_key, (&wpath, &lpath), dev).or_else(|e| {
            if !crate::store::sealed::is_stale(&e) {
                return Err(e);
            }
            p.warn(&format!(
                "{what}: {}; unlearning again",
                crate::error::one_line(&e)
            ));
            crate::store::sealed::remove(&wpath);
            std::fs::remove_file(&lpath).ok();
            Ok(None)
        })?;
        if let Some((weights, log)) = stored {
            p.note(&format!(
                "{what}: unlearned model stored by an earlier run ({} steps) → {}",
                log.steps,
                wpath.display()
            ));
            (g.family.build(&weights, false, dev)?, Some(log))
        } else {
            let student = g.family.build(&g.original, true, dev)?;
            let bar = p.bar(exp.unlearn.steps as u64, &format!("unlearn {what}"));
            let mut log = train(exp, g, c0, (&*student, &*teacher), &bar, opts, store)
                .with_context(|| format!("unlearning {what} ({})", c0.unlearn_key))?;
            log.key = c0.unlearn_key.clone();
            log.original_sha256 = g.original_sha.clone();
            bar.finish_and_clear();
            // Only what the method trained is stored; the rest is the original model.
            let scope = unlearn::method(c0.method.name).scope();
            let trained: Weights = trainer::trainable(&*student, scope)
                .into_iter()
                .map(|(n, v, _)| (n, v.as_detached_tensor()))
                .collect();
            crate::store::sealed::save(&trained, &wpath)?;
            crate::util::write_atomic(&lpath, &serde_json::to_vec_pretty(&log)?)?;
            report.unlearned = true;
            p.note(&format!(
                "{what}: unlearned in {:.1} s ({} steps, {}, masks: {}) → {}",
                log.seconds,
                log.steps,
                log.movement(),
                log.masks,
                wpath.display()
            ));
            (student, Some(log))
        }
    };
    report.unlearn_seconds = t.elapsed().as_secs_f64();
    for cell in cells {
        let i = counter.next();
        let t = Instant::now();
        let rec = evaluate_cell(exp, g, cell, &*model, log.clone(), opts, (i, counter.total))?;
        store.put(&rec)?;
        report.eval_seconds += t.elapsed().as_secs_f64();
    }
    Ok(report)
}

/// Train `student` (a trainable copy of the original) with the cell's method.
fn train(
    exp: &Experiment,
    g: &Group,
    c0: &Cell,
    (student, teacher): (&dyn I2IModel, &dyn I2IModel),
    bar: &crate::progress::Bar,
    opts: &RunOptions,
    store: &Store,
) -> Result<trainer::UnlearnLog> {
    let retain = match c0.method.retain {
        RetainSource::Real => &g.splits.retain_train,
        RetainSource::Proxy => g.splits.proxy_train.as_ref().context("no proxy classes")?,
    };
    let ctx = Ctx {
        student,
        teacher,
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
    if c0.method.name == MethodName::Controllable {
        return train_controllable(exp, g, c0, &ctx, &job, bar, opts, store);
    }
    trainer::run(&*unlearn::method(c0.method.name), &ctx, &job, |_, l| {
        bar.inc(1);
        if let Ok(v) = l
            .total
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.to_scalar::<f32>())
        {
            bar.set_message(format!("loss {v:.4}"));
        }
    })
}

/// `controllable`: its boundary solutions (computed once for every ε of the cell's
/// `boundary_key`, by the worker that claims them), then its constrained phase on `ctx.student`.
#[allow(clippy::too_many_arguments)]
fn train_controllable(
    exp: &Experiment,
    g: &Group,
    c0: &Cell,
    ctx: &Ctx,
    job: &trainer::UnlearnJob,
    bar: &crate::progress::Bar,
    opts: &RunOptions,
    store: &Store,
) -> Result<trainer::UnlearnLog> {
    let spec = &exp.controllable;
    let dir = store.run_dir();
    let name = format!("boundary-{}", c0.boundary_key);
    let boundary = crate::store::get_or_make(
        &dir.boundary(&c0.boundary_key),
        &dir.claims(),
        &name,
        || {
            opts.progress.note(&format!(
                "{}: another worker computes its boundary; waiting",
                c0.label
            ))
        },
        |why| opts.progress.warn(why),
        |path| Ok(serde_json::from_slice(&std::fs::read(path)?)?),
        || {
            let student = g.family.build(&g.original, true, &opts.device)?;
            let b = controllable::boundary(
                &Ctx {
                    student: &*student,
                    ..*ctx
                },
                job,
                spec,
            )?;
            crate::util::write_atomic(
                &dir.boundary(&c0.boundary_key),
                &serde_json::to_vec_pretty(&b)?,
            )?;
            opts.progress.note(&format!(
                "{}: boundary solutions: retain {:.3e} (original) .. {:.3e} (forget-optimal, forget {:.3e})",
                c0.method.label(),
                b.original.retain,
                b.forget_optimal.retain,
                b.forget_optimal.forget
            ));
            Ok(b)
        },
    )?;
    let epsilon = c0.epsilon.context("a controllable cell without ε")?;
    controllable::constrained(ctx, job, spec, epsilon, boundary, &mut |_, [r, _, l]| {
        bar.inc(1);
        bar.set_message(format!("retain {r:.3e} λ {l:.2}"));
    })
}

/// The original weights with a stored unlearning's parameters on top, and its log; `None` when
/// nothing (or only a part, from a killed write) is stored. A stored model whose log names
/// another key or another original model, or whose file no longer matches its seal, is a
/// [stale](crate::store::sealed::Stale) error.
fn load_unlearned(
    g: &Group,
    key: &str,
    (wpath, lpath): (&Path, &Path),
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
    let stale = |why: String| Err(anyhow::Error::new(crate::store::sealed::Stale(why)));
    if !log.key.is_empty() && log.key != key {
        return stale(format!(
            "{} holds the unlearned model {}, not {key}",
            lpath.display(),
            log.key
        ));
    }
    if !log.original_sha256.is_empty() && log.original_sha256 != g.original_sha {
        return stale(format!(
            "{} was unlearned from another original model (SHA-256 {}…, now {}…)",
            wpath.display(),
            &log.original_sha256[..12.min(log.original_sha256.len())],
            &g.original_sha[..12.min(g.original_sha.len())]
        ));
    }
    let (trained, _) = crate::store::sealed::load(wpath, dev).with_context(|| {
        format!(
            "reading the unlearned model {} (delete it to unlearn again)",
            wpath.display()
        )
    })?;
    let original = &g.original;
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
