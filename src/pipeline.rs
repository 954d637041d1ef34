//! `run`: the whole experiment, one way through: config → grid → data → original model →
//! extractor → for each unfinished cell: unlearn → generate → metrics → store; then the report.

use crate::config::grid::{self, Cell, Shard};
use crate::config::Experiment;
use crate::data::split::Splits;
use crate::data::ImageSet;
use crate::masks::MaskSpec;
use crate::metrics::domain::DomainCnn;
use crate::metrics::{self, Extracted, Extractor, ExtractorRef};
use crate::models::{self, FamilyConfig, I2IModel, Weights};
use crate::progress::Progress;
use crate::store::{self, CellRecord, GridManifest, Provenance, Row, Store};
use crate::unlearn::{self, trainer, Ctx, RetainSource};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

pub struct RunOptions {
    pub shard: Option<Shard>,
    pub device: Device,
    pub cache_dir: PathBuf,
    /// Overrides the experiment's output folder.
    pub output: Option<PathBuf>,
    pub progress: Progress,
    /// Write inpainting samples (PNG) per cell.
    pub samples: bool,
    /// Cells run at the same time.
    pub jobs: usize,
}

/// Wall time per phase, in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Phases {
    pub data: f64,
    pub pretrain: f64,
    pub extractor: f64,
    /// Summed over cells (cells may run in parallel).
    pub unlearn: f64,
    /// Summed over cells.
    pub evaluate: f64,
    /// Wall time of all cells (unlearning and evaluation, in parallel).
    pub cells_wall: f64,
    pub report: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    pub output: PathBuf,
    pub cells_in_grid: usize,
    pub cells_in_shard: usize,
    pub cells_run: usize,
    pub cells_skipped: usize,
    pub phases: Phases,
}

/// Everything shared by the cells of one (dataset, model) pair.
struct Group {
    splits: Splits,
    family: FamilyConfig,
    original: Weights,
    original_sha: String,
    domain: Option<DomainCnn>,
    inception: Option<crate::metrics::inception::InceptionExtractor>,
    clip: Option<crate::metrics::clip::ClipExtractor>,
    /// Ground-truth features per set and extractor.
    truth: BTreeMap<&'static str, BTreeMap<ExtractorRef, Extracted>>,
}

const SAMPLES_PER_ROW: usize = 8;
/// Points per group (generated / truth × forget / retain) kept for the t-SNE figure, as the paper.
const TSNE_POINTS: usize = 50;

fn out_dir_of(opts: &RunOptions, exp: &Experiment) -> PathBuf {
    opts.output.clone().unwrap_or_else(|| exp.output_dir())
}

pub fn run(exp: &Experiment, opts: &RunOptions) -> Result<RunSummary> {
    let out_dir = out_dir_of(opts, exp);
    // Resolve checkpoints (downloading config files if needed) and check them against the masks
    // before anything is written.
    let hub = if exp.models.iter().any(|m| m.weights.is_some()) {
        Some(crate::hub::Hub::from_env()?)
    } else {
        None
    };
    let mut resolved = vec![];
    for m in &exp.models {
        let (family, ck) = m.resolve_config(hub.as_ref())?;
        crate::config::check_masks(exp, &family, &m.name).map_err(|(path, msg)| {
            crate::error::user(format!(
                "{}: {msg}",
                crate::config::locate::path_string(&path)
            ))
        })?;
        resolved.push((family, ck));
    }
    let all = grid::expand(exp);
    let cells = match opts.shard {
        Some(s) => s.select(all.clone()),
        None => all.clone(),
    };
    let store = Store::new(&out_dir);
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    store::write_grid(
        &out_dir,
        &GridManifest {
            experiment: exp.name.clone(),
            cells: all.clone(),
        },
    )?;
    crate::util::write_atomic(
        &out_dir.join("experiment.yaml"),
        serde_yaml::to_string(exp)?.as_bytes(),
    )?;
    let mut summary = RunSummary {
        output: out_dir.clone(),
        cells_in_grid: all.len(),
        cells_in_shard: cells.len(),
        ..Default::default()
    };
    let pending: Vec<&Cell> = cells.iter().filter(|c| !store.is_done(&c.id)).collect();
    summary.cells_skipped = cells.len() - pending.len();
    let p = &opts.progress;
    p.note(&format!(
        "{}: {} cells in the grid{}, {} already done, {} to run → {}",
        exp.name,
        all.len(),
        opts.shard
            .map(|s| format!(" ({} in shard {}/{})", cells.len(), s.k, s.n))
            .unwrap_or_default(),
        summary.cells_skipped,
        pending.len(),
        out_dir.display()
    ));
    let mut groups: BTreeMap<(usize, usize), Vec<&Cell>> = BTreeMap::new();
    for c in &pending {
        groups
            .entry((c.dataset_idx, c.model_idx))
            .or_default()
            .push(c);
    }
    let total = pending.len();
    let done = std::sync::atomic::AtomicUsize::new(0);
    for ((di, mi), cells) in groups {
        let group = prepare_group(exp, di, mi, &resolved[mi], opts, &mut summary.phases)?;
        // Cells are independent: run as many at once as there are rayon threads. On small models
        // this beats splitting each op over threads (measured 1.45× more steps per second on
        // 2 cores); candle's ops inside then share the same pool.
        let t = Instant::now();
        let phases = std::sync::Mutex::new((0.0f64, 0.0f64));
        let run_one = |cell: &&Cell| -> Result<()> {
            let i = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let rec = run_cell(exp, &group, cell, opts, (i, total))?;
            store.put(&rec)?;
            let mut ph = phases.lock().expect("phase lock");
            ph.0 += rec.unlearn_seconds;
            ph.1 += rec.eval_seconds;
            Ok(())
        };
        let res = if opts.jobs > 1 {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(opts.jobs)
                .build()?;
            pool.install(|| cells.par_iter().try_for_each(run_one))
        } else {
            cells.iter().try_for_each(run_one)
        };
        let (u, e) = *phases.lock().expect("phase lock");
        summary.phases.unlearn += u;
        summary.phases.evaluate += e;
        summary.phases.cells_wall += t.elapsed().as_secs_f64();
        summary.cells_run += cells.len();
        res?;
    }
    let t = Instant::now();
    crate::report::build(std::slice::from_ref(&out_dir), &out_dir, p)?;
    summary.phases.report = t.elapsed().as_secs_f64();
    crate::util::write_atomic(
        &out_dir.join("last_run.json"),
        &serde_json::to_vec_pretty(&summary)?,
    )?;
    Ok(summary)
}

/// `i2i-unlearn fetch`: download everything `run` would read from the network (dataset shards,
/// checkpoints, extractor weights) into the caches, so that a later run works offline
/// (HF_HUB_OFFLINE=1). Each item is reported through `p`; returns how many items were resolved.
pub fn fetch(exp: &Experiment, p: &crate::progress::Progress) -> Result<usize> {
    let mut items = 0;
    let mut hub_cell: Option<crate::hub::Hub> = None;
    fn hub(cell: &mut Option<crate::hub::Hub>) -> Result<&crate::hub::Hub> {
        if cell.is_none() {
            *cell = Some(crate::hub::Hub::from_env()?);
        }
        Ok(cell.as_ref().expect("hub"))
    }
    let mut pretrained = false;
    for m in &exp.models {
        if m.weights.is_some() {
            let (_, ck) = m.resolve_config(Some(hub(&mut hub_cell)?))?;
            if let Some(ck) = ck {
                p.note(&format!(
                    "model `{}`: checkpoint {} → {}",
                    m.name,
                    ck.origin,
                    ck.weights.display()
                ));
            }
        } else {
            pretrained = true;
            p.note(&format!(
                "model `{}`: pre-trained by `run` (nothing to download)",
                m.name
            ));
        }
        items += 1;
    }
    for d in &exp.datasets {
        let t = Instant::now();
        let (source, needs) = Splits::fetch(d, pretrained)
            .with_context(|| format!("fetching dataset `{}`", d.name))?;
        if d.effective_source().is_present() {
            p.note(&format!(
                "dataset `{}`: {source}: on this machine, nothing to download",
                d.name
            ));
        } else {
            p.note(&format!(
                "dataset `{}`: {source}: {needs} (class, split) draws available offline ({:.1} s)",
                d.name,
                t.elapsed().as_secs_f64()
            ));
        }
        items += 1;
    }
    let wanted = exp.metrics.extractors();
    if wanted.contains(&ExtractorRef::InceptionV3) {
        let path = crate::weights::resolve(
            &crate::weights::FID_INCEPTION,
            exp.metrics.inception.weights.as_deref(),
            &crate::hub::HubConfig::from_env(),
        )?;
        p.note(&format!("extractor inception: {}", path.display()));
        items += 1;
    }
    if wanted.contains(&ExtractorRef::Clip) {
        let ck = models::checkpoint::resolve(&exp.metrics.clip_model, Some(hub(&mut hub_cell)?))?;
        p.note(&format!(
            "extractor clip: {} → {}",
            ck.origin,
            ck.weights.display()
        ));
        items += 1;
    }
    if wanted.contains(&ExtractorRef::Domain) {
        p.note("extractor domain: trained by `run` (nothing to download)");
    }
    Ok(items)
}

fn prepare_group(
    exp: &Experiment,
    di: usize,
    mi: usize,
    (family, checkpoint): &(FamilyConfig, Option<models::checkpoint::Checkpoint>),
    opts: &RunOptions,
    phases: &mut Phases,
) -> Result<Group> {
    let d = &exp.datasets[di];
    let m = &exp.models[mi];
    let p = &opts.progress;
    let dev = &opts.device;
    let family = family.clone();
    let size = family
        .image_size()
        .context("model without a fixed resolution")?;

    let t = Instant::now();
    let splits =
        Splits::build(d, size, dev).with_context(|| format!("loading dataset `{}`", d.name))?;
    crate::util::write_atomic(
        &out_dir_of(opts, exp).join(format!("data-{}.json", d.name)),
        &serde_json::to_vec_pretty(&splits.manifest)?,
    )?;
    for n in &splits.manifest.notes {
        p.note(&format!("dataset `{}`: {n}", d.name));
    }
    for w in splits.manifest.warnings() {
        p.note(&format!("dataset `{}`: {w}", d.name));
    }
    p.note(&format!(
        "dataset `{}`: {}; {} forget, {} retain, {} proxy classes; {} + {} training and {} + {} evaluation images (forget + retain)",
        d.name,
        splits.manifest.source,
        splits.forget.len(),
        splits.retain.len(),
        splits.proxy.len(),
        splits.forget_train.len(),
        splits.retain_train.len(),
        splits.forget_eval.len(),
        splits.retain_eval.len()
    ));
    phases.data += t.elapsed().as_secs_f64();

    // The original model: pre-trained here, cached by the content hash of everything it depends on.
    let t = Instant::now();
    let key = crate::util::content_hash(&serde_json::json!({
        "what": "pretrain", "v": grid::PROTOCOL_VERSION, "source": d.effective_source(),
        "per_class": d.pretrain_per_class.unwrap_or(d.train_per_class), "sample_seed": d.sample_seed,
        "family": m.family, "config": family, "pretrain": m.pretrain,
        "task_masks": if m.pretrain.task_mask_share > 0.0 { serde_json::to_value(&exp.masks)? } else { serde_json::Value::Null },
    }))[..16]
        .to_string();
    let cached = crate::pretrain::cache_path(&opts.cache_dir, &key);
    let path = checkpoint
        .as_ref()
        .map(|c| c.weights.clone())
        .unwrap_or(cached.clone());
    let original = if let Some(ck) = checkpoint {
        let w = match &family {
            FamilyConfig::Mae(_) => models::mae::load_checkpoint(ck, dev)?.1,
        };
        p.note(&format!(
            "original model `{}`: checkpoint {} ({})",
            m.name,
            ck.origin,
            ck.weights.display()
        ));
        w
    } else {
        let path = &cached;
        match crate::pretrain::load_cached(path, dev)? {
            Some(w) => {
                p.note(&format!(
                    "original model `{}`: cached pre-training {}",
                    m.name,
                    path.display()
                ));
                w
            }
            None => {
                let data = Splits::pretrain_set(d, size, dev)?;
                let bar = p.bar(
                    m.pretrain.steps as u64,
                    &format!("pre-train {} on {}", m.name, d.name),
                );
                let (w, loss) = crate::pretrain::pretrain(
                    &family,
                    &m.pretrain,
                    &data,
                    &exp.masks,
                    dev,
                    |_, l| {
                        bar.inc(1);
                        bar.set_message(format!("loss {l:.4}"));
                    },
                )?;
                bar.finish_and_clear();
                models::save_weights(&w, path)?;
                p.note(&format!(
                "original model `{}`: pre-trained {} steps on {} images in {:.0} s (final loss {loss:.4}) → {}",
                m.name,
                m.pretrain.steps,
                data.len(),
                t.elapsed().as_secs_f64(),
                path.display()
            ));
                w
            }
        }
    };
    let original_sha = crate::util::sha256_file(&path)?;
    phases.pretrain += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let wanted = exp.metrics.extractors();
    let domain = if wanted.contains(&ExtractorRef::Domain) {
        Some(domain_extractor(exp, d, &splits, size, opts)?)
    } else {
        None
    };
    let inception = if wanted.contains(&ExtractorRef::InceptionV3) {
        let spec = &exp.metrics.inception;
        let path = crate::weights::resolve(
            &crate::weights::FID_INCEPTION,
            spec.weights.as_deref(),
            &crate::hub::HubConfig::from_env(),
        )?;
        let ex = crate::metrics::inception::InceptionExtractor::load(
            &path,
            crate::metrics::inception::Variant::Fid,
            spec.mode,
            spec.dims,
            dev,
        )?;
        p.note(&format!("extractor: {}", ex.protocol()));
        Some(ex)
    } else {
        None
    };
    let clip = if wanted.contains(&ExtractorRef::Clip) {
        let ex = crate::metrics::clip::ClipExtractor::load(&exp.metrics.clip_model, dev)?;
        p.note(&format!("extractor: {}", ex.protocol()));
        Some(ex)
    } else {
        None
    };
    let mut truth = BTreeMap::new();
    for (name, set) in [
        ("forget", &splits.forget_eval),
        ("retain", &splits.retain_eval),
    ] {
        let mut per = BTreeMap::new();
        let all: [(ExtractorRef, Option<&dyn Extractor>); 3] = [
            (
                ExtractorRef::Domain,
                domain.as_ref().map(|e| e as &dyn Extractor),
            ),
            (
                ExtractorRef::InceptionV3,
                inception.as_ref().map(|e| e as &dyn Extractor),
            ),
            (
                ExtractorRef::Clip,
                clip.as_ref().map(|e| e as &dyn Extractor),
            ),
        ];
        for (r, ex) in all {
            if let Some(ex) = ex {
                per.insert(
                    r,
                    metrics::extract(ex, &set.pixels, exp.metrics.batch_size, false)?,
                );
            }
        }
        truth.insert(name, per);
    }
    phases.extractor += t.elapsed().as_secs_f64();
    Ok(Group {
        splits,
        family,
        original,
        original_sha,
        domain,
        inception,
        clip,
        truth,
    })
}

/// The domain extractor, trained on the evaluation classes and cached by content hash.
fn domain_extractor(
    exp: &Experiment,
    d: &crate::config::DatasetSpec,
    splits: &Splits,
    size: usize,
    opts: &RunOptions,
) -> Result<DomainCnn> {
    let (p, dev) = (&opts.progress, &opts.device);
    let spec = &exp.metrics.domain;
    let ekey = crate::util::content_hash(&serde_json::json!({
        "what": "domain-extractor", "v": grid::PROTOCOL_VERSION, "source": d.effective_source(),
        "classes": splits.eval_classes(), "per_class": d.train_per_class, "sample_seed": d.sample_seed,
        "size": size, "spec": spec,
    }))[..16]
        .to_string();
    let epath = opts
        .cache_dir
        .join("extractors")
        .join(format!("domain-{ekey}.safetensors"));
    let mut extractor = if epath.exists() {
        DomainCnn::from_weights(models::load_weights(&epath, dev)?, size)?
    } else {
        let train = splits.relabel(&ImageSet::concat(&[
            &splits.forget_train,
            &splits.retain_train,
        ])?)?;
        let bar = p.bar(
            spec.steps as u64,
            &format!("train domain extractor on {}", d.name),
        );
        let ex = DomainCnn::train(spec, &train, splits.eval_classes().len(), size, bar.bar())?;
        bar.finish_and_clear();
        models::save_weights(ex.weights(), &epath)?;
        ex
    };
    let heldout = splits.relabel(&ImageSet::concat(&[
        &splits.forget_eval,
        &splits.retain_eval,
    ])?)?;
    let acc = extractor.accuracy(&heldout, exp.metrics.batch_size)?;
    extractor.val_accuracy = Some(acc);
    p.note(&format!(
        "domain extractor: {:.1}% top-1 on the {} held-out evaluation images ({})",
        acc * 100.0,
        heldout.len(),
        extractor.protocol()
    ));
    Ok(extractor)
}

/// Inpaint a set in batches with the cell's masks.
fn generate(
    model: &dyn I2IModel,
    set: &ImageSet,
    mask: MaskSpec,
    seed: u64,
    batch: usize,
) -> Result<Tensor> {
    let grid = model.config().grid();
    let mut outs = vec![];
    let mut start = 0;
    while start < set.len() {
        let b = batch.min(set.len() - start);
        let part = set.slice(start, b)?;
        let m = mask.batch(grid, &trainer::mask_keys(&part.ids, seed, None))?;
        outs.push(model.generate(&part.pixels, &m)?);
        start += b;
    }
    Ok(Tensor::cat(&outs, 0)?)
}

fn run_cell(
    exp: &Experiment,
    g: &Group,
    cell: &Cell,
    opts: &RunOptions,
    (i, n): (usize, usize),
) -> Result<CellRecord> {
    let p = &opts.progress;
    let dev = &opts.device;
    let method = unlearn::method(cell.method.name);
    let teacher = models::build(&g.family, &g.original, false, dev)?;
    let alpha_s = cell.alpha.map(|a| format!(" α={a}")).unwrap_or_default();
    let title = format!(
        "[{i}/{n}] {}{alpha_s} {} seed {}",
        cell.label, cell.mask, cell.seed
    );

    let t = Instant::now();
    let (model, log): (Box<dyn I2IModel>, Option<trainer::UnlearnLog>) =
        if cell.method.name.trains() {
            let student = models::build(&g.family, &g.original, true, dev)?;
            let retain = match cell.method.retain {
                RetainSource::Real => &g.splits.retain_train,
                RetainSource::Proxy => g.splits.proxy_train.as_ref().context("no proxy classes")?,
            };
            let ctx = Ctx {
                student: &*student,
                teacher: &*teacher,
                alpha: cell.alpha.unwrap_or(0.0),
                noise: cell.method.noise,
                paper_compat: exp.paper_compat,
            };
            let job = trainer::UnlearnJob {
                spec: &exp.unlearn,
                retain,
                forget: &g.splits.forget_train,
                mask: cell.mask,
                seed: cell.seed,
            };
            let bar = p.bar(exp.unlearn.steps as u64, &format!("unlearn {title}"));
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
            .with_context(|| format!("unlearning cell {} ({})", cell.id, cell.label))?;
            bar.finish_and_clear();
            (student, Some(log))
        } else {
            (teacher, None)
        };
    let unlearn_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let bar = p.bar(2, &format!("evaluate {title}"));
    let dataset = &exp.datasets[cell.dataset_idx];
    let mut rows = vec![];
    let mut sheet_rows = vec![];
    let mut embeddings: std::collections::HashMap<String, Tensor> =
        std::collections::HashMap::new();
    for (set_name, set) in [
        ("retain", &g.splits.retain_eval),
        ("forget", &g.splits.forget_eval),
    ] {
        let gen = generate(&*model, set, cell.mask, cell.seed, exp.metrics.batch_size)?;
        if opts.samples {
            // Spread the samples over the set (it is ordered by class).
            let k = SAMPLES_PER_ROW.min(set.len());
            let idx: Vec<usize> = (0..k).map(|i| i * set.len() / k).collect();
            let first = set.select(&idx)?;
            let m = cell.mask.batch(
                model.config().grid(),
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
        let mut extractors: metrics::Extractors = BTreeMap::new();
        if let Some(ex) = &g.domain {
            extractors.insert(ExtractorRef::Domain, ex);
        }
        if let Some(ex) = &g.inception {
            extractors.insert(ExtractorRef::InceptionV3, ex);
        }
        if let Some(ex) = &g.clip {
            extractors.insert(ExtractorRef::Clip, ex);
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
        for v in metrics::evaluate_set(&exp.metrics, &extractors, &gen, &g.truth[set_name])? {
            rows.push(Row {
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
                set: set_name.into(),
                metric: v.metric,
                value: v.value,
                n: v.n as u64,
                protocol: v.protocol,
            });
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if opts.samples {
        let path = out_dir_of(opts, exp)
            .join("samples")
            .join(format!("{}.png", cell.id));
        // Samples are for looking at; failing to write them must not lose the cell.
        if let Err(e) =
            sample_sheet(&sheet_rows, SAMPLES_PER_ROW).and_then(|img| write_png(&img, &path))
        {
            p.note(&format!(
                "warning: could not write {}: {e:#}",
                path.display()
            ));
        }
    }
    if !embeddings.is_empty() {
        // Written before the cell's record, so a stored record always has its embeddings.
        let path = out_dir_of(opts, exp)
            .join("embeddings")
            .join(format!("{}.safetensors", cell.id));
        std::fs::create_dir_all(path.parent().expect("has a parent"))?;
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&embeddings, &tmp)?;
        std::fs::rename(&tmp, &path)?;
    }
    let eval_s = t.elapsed().as_secs_f64();
    let show = |set: &str, m: &str| {
        rows.iter()
            .find(|r| r.set == set && r.metric == m)
            .map(|r| format!("{:.3}", r.value))
            .unwrap_or_else(|| "-".into())
    };
    p.note(&format!(
        "{title}: FID retain {} forget {} | unlearn {:.1} s, eval {:.1} s",
        show("retain", "fid"),
        show("forget", "fid"),
        unlearn_s,
        eval_s
    ));
    Ok(CellRecord {
        cell: cell.clone(),
        experiment: exp.name.clone(),
        rows,
        unlearn: log,
        unlearn_seconds: unlearn_s,
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

/// Sample sheet of a cell: for the first images of each set, rows of truth, masked input (hidden
/// pixels grey) and output, each image scaled ×2 (nearest).
fn sample_sheet(rows: &[(Tensor, Tensor, Tensor)], per_row: usize) -> Result<image::RgbImage> {
    let (_, _, h, w) = rows[0].0.dims4()?;
    let scale = if h <= 64 { 2 } else { 1 };
    let (cw, ch) = (w * scale, h * scale);
    let mut sheet = image::RgbImage::from_pixel(
        (per_row * cw) as u32,
        (rows.len() * 3 * ch) as u32,
        image::Rgb([255, 255, 255]),
    );
    for (ri, (truth, masked, out)) in rows.iter().enumerate() {
        for (k, t) in [truth, masked, out].iter().enumerate() {
            let n = t.dim(0)?.min(per_row);
            for i in 0..n {
                let img = crate::data::tensor_to_rgb(&t.get(i)?)?;
                let img = image::imageops::resize(
                    &img,
                    cw as u32,
                    ch as u32,
                    image::imageops::FilterType::Nearest,
                );
                image::imageops::replace(
                    &mut sheet,
                    &img,
                    (i * cw) as i64,
                    ((ri * 3 + k) * ch) as i64,
                );
            }
        }
    }
    Ok(sheet)
}

fn write_png(img: &image::RgbImage, path: &std::path::Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    crate::util::write_atomic(path, bytes.get_ref())
}
