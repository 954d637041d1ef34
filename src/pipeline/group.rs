//! What the cells of one (dataset, model) pair share: the data splits, the original model
//! (pre-trained here and cached, or loaded through the family registry), the extractors and the
//! ground truth's features.

use super::{out_dir_of, Phases, RunOptions};
use crate::config::grid::{self, Fingerprints};
use crate::config::Experiment;
use crate::data::split::Splits;
use crate::data::ImageSet;
use crate::metrics::domain::DomainCnn;
use crate::metrics::{self, Extracted, Extractor, ExtractorRef};
use crate::models::{FamilyConfig, Weights};
use crate::names::MethodName;
use crate::store::{get_or_make, RunDir};
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::time::Instant;

/// Everything shared by the cells of one (dataset, model) pair.
pub struct Group {
    pub splits: Splits,
    pub family: FamilyConfig,
    pub original: Weights,
    pub original_sha: String,
    /// The retrain oracle (pre-trained here without the forget classes), when the grid has it.
    pub oracle: Option<Weights>,
    /// The membership audit's images, when the audit is on.
    pub audit: Option<crate::data::split::Audit>,
    /// The oracle's outputs per (set, evaluation mask, seed), computed once for the group's cells
    /// (set by the run before the cells start; read-only after).
    pub oracle_outputs: super::oracle::OracleOutputs,
    /// The extractors the metrics use, each loaded (or trained) once.
    pub extractors: BTreeMap<ExtractorRef, Box<dyn Extractor>>,
    /// Ground-truth features per set and extractor.
    pub truth: BTreeMap<&'static str, BTreeMap<ExtractorRef, Extracted>>,
}

impl Group {
    /// The two evaluation sets, in the order their rows are stored.
    pub fn eval_sets(&self) -> [(&'static str, &ImageSet); 2] {
        [
            ("retain", &self.splits.retain_eval),
            ("forget", &self.splits.forget_eval),
        ]
    }

    /// The extractors in use, by name.
    pub fn extractors(&self) -> metrics::Extractors<'_> {
        self.extractors
            .iter()
            .map(|(r, e)| (*r, &**e as &dyn Extractor))
            .collect()
    }
}

pub use super::identity::Resolved;

/// Everything the cells of (dataset `di`, model `mi`) share, loaded, pre-trained or trained once.
pub fn prepare_group(
    exp: &Experiment,
    (di, mi): (usize, usize),
    (family, checkpoint): &Resolved,
    fp: &Fingerprints,
    opts: &RunOptions,
    phases: &mut Phases,
) -> Result<Group> {
    let d = &exp.datasets[di];
    let size = family.image_size();
    let t = Instant::now();
    let mut splits = load_splits(d, size, opts)?;
    phases.data += t.elapsed().as_secs_f64();

    let t = Instant::now();
    let (original, original_sha) =
        original_model(exp, (di, mi), family, checkpoint.as_ref(), fp, opts)?;
    // The original's checks before any unlearning (built once for both).
    if exp.quality_gate.is_some() || exp.map_probe.is_some() {
        let model = family.build(&original, false, &opts.device)?;
        let of = (&*model, original_sha.as_str());
        super::gate::check_original(exp, (di, mi), of, &splits, opts)?;
        super::map_probe::probe_original(exp, (di, mi), of, &splits, opts)?;
    }
    // The oracle, where the grid asks for it (its cells, and every cell's distance to it).
    let oracle =
        if checkpoint.is_none() && exp.methods.iter().any(|x| x.name == MethodName::Retrain) {
            Some(pretrained(exp, (di, mi), family, &splits.forget, fp, opts)?.0)
        } else {
            None
        };
    phases.pretrain += t.elapsed().as_secs_f64();
    let audit = splits.audit(d, checkpoint.is_none(), size, &opts.device)?;
    if let Some(a) = &audit {
        opts.progress.note(&format!(
            "membership audit: {} + {} forget and {} + {} retain images (members + non-members)",
            a.forget.members.len(),
            a.forget.nonmembers.len(),
            a.retain.members.len(),
            a.retain.nonmembers.len()
        ));
    }
    crate::util::write_atomic(
        &RunDir::new(&out_dir_of(opts, exp)).data_manifest(&d.name),
        &serde_json::to_vec_pretty(&splits.manifest)?,
    )?;

    let t = Instant::now();
    let extractors = open_extractors(exp, (d, fp.data(di)), &splits, size, opts)?;
    let mut truth = BTreeMap::new();
    for (name, set) in [
        ("forget", &splits.forget_eval),
        ("retain", &splits.retain_eval),
    ] {
        let mut per = BTreeMap::new();
        for (r, ex) in &extractors {
            per.insert(
                *r,
                metrics::extract(&**ex, &set.pixels, exp.metrics.batch_size, false)?,
            );
        }
        truth.insert(name, per);
    }
    phases.extractor += t.elapsed().as_secs_f64();
    Ok(Group {
        splits,
        family: family.clone(),
        original,
        original_sha,
        oracle,
        audit,
        oracle_outputs: Default::default(),
        extractors,
        truth,
    })
}

/// The dataset's splits, with what was noted while reading them.
fn load_splits(d: &crate::data::DatasetSpec, size: usize, opts: &RunOptions) -> Result<Splits> {
    let p = &opts.progress;
    if let Some(path) = d
        .local
        .as_ref()
        .filter(|l| !l.is_present())
        .and_then(|l| l.local_path())
    {
        p.note(&format!(
            "dataset `{}`: the local copy {} is not there; reading `source:` instead",
            d.name,
            path.display()
        ));
    }
    let splits = Splits::build(d, size, &opts.device)
        .with_context(|| format!("loading dataset `{}`", d.name))?;
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
    Ok(splits)
}

/// The original model and the SHA-256 of its weights file: the checkpoint's, or pre-trained here
/// (cached by the content hash of everything it depends on).
fn original_model(
    exp: &Experiment,
    (di, mi): (usize, usize),
    family: &FamilyConfig,
    checkpoint: Option<&crate::weights::checkpoint::Checkpoint>,
    fp: &Fingerprints,
    opts: &RunOptions,
) -> Result<(Weights, String)> {
    match checkpoint {
        Some(ck) => {
            let (w, layout) = family.load_checkpoint(ck, &opts.device)?;
            opts.progress.note(&format!(
                "original model `{}`: checkpoint {} ({}, {layout})",
                exp.models[mi].name,
                ck.origin,
                ck.weights.display()
            ));
            let sha = match fp.weights(mi) {
                Some(s) => s.to_string(),
                None => ck.sha256()?,
            };
            Ok((w, sha))
        }
        None => pretrained(exp, (di, mi), family, &[], fp, opts),
    }
}

/// The extractors the metrics use, each opened (or, for the domain extractor, trained) once.
fn open_extractors(
    exp: &Experiment,
    (d, data_fp): (&crate::data::DatasetSpec, Option<&str>),
    splits: &Splits,
    size: usize,
    opts: &RunOptions,
) -> Result<BTreeMap<ExtractorRef, Box<dyn Extractor>>> {
    let mut extractors: BTreeMap<ExtractorRef, Box<dyn Extractor>> = BTreeMap::new();
    for r in exp.metrics.extractors() {
        let ex: Box<dyn Extractor> = match metrics::open::open(r, &exp.metrics, &opts.device)? {
            Some(ex) => ex,
            None => Box::new(domain_extractor(exp, (d, data_fp), splits, size, opts)?),
        };
        if r != ExtractorRef::Domain {
            opts.progress.note(&format!("extractor: {}", ex.protocol()));
        }
        extractors.insert(r, ex);
    }
    Ok(extractors)
}

/// A model pre-trained here on every class of the dataset but `exclude` (nothing: the original
/// model; the forget classes: the retrain oracle), cached by the content hash of everything it
/// depends on and sealed with its SHA-256; returns the weights and that hash.
fn pretrained(
    exp: &Experiment,
    (di, mi): (usize, usize),
    family: &FamilyConfig,
    exclude: &[usize],
    fp: &Fingerprints,
    opts: &RunOptions,
) -> Result<(Weights, String)> {
    let (d, m) = (&exp.datasets[di], &exp.models[mi]);
    let (p, dev) = (&opts.progress, &opts.device);
    let t = Instant::now();
    let what = if exclude.is_empty() {
        format!("original model `{}`", m.name)
    } else {
        format!("retrain oracle of `{}`", m.name)
    };
    let committed = m.pretrained.as_ref().and_then(|c| {
        if exclude.is_empty() {
            c.original.as_ref()
        } else {
            c.oracle.as_ref()
        }
    });
    if let Some(f) = committed {
        let path = f.fetch(None, &crate::hub::HubConfig::from_env())?;
        // A pinned file was just hashed against its pin by `fetch`.
        let sha = match f {
            crate::weights::checkpoint::FileRef::Pinned { sha256, .. } => sha256.clone(),
            _ => crate::util::sha256_file(&path)?,
        };
        let w = crate::models::load_weights(&path, dev)?;
        p.note(&format!(
            "{what}: committed pre-training {} (SHA-256 {}…)",
            path.display(),
            &sha[..16]
        ));
        return Ok((w, sha));
    }
    let key = super::identity::pretrain_key(exp, (di, mi), family, exclude, fp);
    let path = crate::pretrain::cache_path(&opts.cache_dir, &key);
    // One worker pre-trains it; others pointed at the same cache wait for the file.
    let (w, sha) = get_or_make(
        &path,
        &opts.cache_dir.join("pretrain"),
        &key,
        || {
            p.note(&format!(
                "{what}: another worker is pre-training it; waiting"
            ))
        },
        |why| p.warn(&format!("{what}: {why}")),
        |path| {
            p.note(&format!("{what}: cached pre-training {}", path.display()));
            crate::pretrain::load_cached(path, dev)
        },
        || {
            let size = family.image_size();
            let data = Splits::pretrain_set(d, exclude, size, dev)?;
            let bar = p.bar(
                crate::pretrain::total_steps(family, &m.pretrain) as u64,
                &format!(
                    "pre-train {}{} on {}",
                    m.name,
                    if exclude.is_empty() { "" } else { " (oracle)" },
                    d.name
                ),
            );
            let resume = crate::pretrain::Resume::beside(&path);
            if let Some(done) = crate::pretrain::resume::saved_steps(&resume.path) {
                p.note(&format!(
                    "{what}: resuming the pre-training after step {done} from its checkpoint {}",
                    resume.path.display()
                ));
                bar.skip(done as u64);
            }
            let done = crate::pretrain::pretrain(
                family,
                &m.pretrain,
                &data,
                dev,
                Some(&resume),
                |_, l| {
                    bar.inc(1);
                    bar.set_message(format!("loss {l:.4}"));
                },
            )?;
            let (w, loss) = (done.weights, done.last);
            bar.finish_and_clear();
            let sha = crate::store::sealed::save(&w, &path)?;
            crate::pretrain::resume::remove(&resume.path)?;
            p.note(&format!(
                "{what}: pre-trained {} steps on {} images{} in {:.0} s (final loss {loss:.4}) → {}",
                m.pretrain.steps,
                data.len(),
                if exclude.is_empty() {
                    String::new()
                } else {
                    format!(" (the {} forget classes left out)", exclude.len())
                },
                t.elapsed().as_secs_f64(),
                path.display()
            ));
            Ok((w, sha))
        },
    )?;
    record_use(exp, opts, &path, &sha)?;
    Ok((w, sha))
}

/// Record in the results folder that its results depend on the cache entry `path`.
fn record_use(
    exp: &Experiment,
    opts: &RunOptions,
    path: &std::path::Path,
    sha: &str,
) -> Result<()> {
    let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let name = crate::weights::checkpoint::file_name(path);
    crate::util::write_atomic(
        &RunDir::new(&out_dir_of(opts, exp)).uses(&name),
        format!("{sha}  {}\n", abs.display()).as_bytes(),
    )
}

/// The domain extractor, trained on the evaluation classes and cached by content hash.
fn domain_extractor(
    exp: &Experiment,
    (d, data_fp): (&crate::data::DatasetSpec, Option<&str>),
    splits: &Splits,
    size: usize,
    opts: &RunOptions,
) -> Result<DomainCnn> {
    let (p, dev) = (&opts.progress, &opts.device);
    let spec = &exp.metrics.domain;
    let mut desc = serde_json::json!({
        "what": "domain-extractor", "v": grid::PROTOCOL_VERSION, "source": d.effective_source(),
        "classes": splits.eval_classes(), "per_class": d.train_per_class, "sample_seed": d.sample_seed,
        "size": size, "spec": spec,
    });
    if let Some(f) = data_fp {
        desc["data_content"] = serde_json::json!(f);
    }
    let ekey = crate::util::content_hash(&desc)[..16].to_string();
    let epath = opts
        .cache_dir
        .join("extractors")
        .join(format!("domain-{ekey}.safetensors"));
    // One worker trains it; others pointed at the same cache wait for the file.
    let (mut extractor, esha) = get_or_make(
        &epath,
        &opts.cache_dir.join("extractors"),
        &format!("domain-{ekey}"),
        || p.note("domain extractor: another worker is training it; waiting"),
        |why| p.warn(&format!("domain extractor: {why}")),
        |path| {
            let (w, sha) = crate::store::sealed::load(path, dev)?;
            Ok((DomainCnn::from_weights(w, size)?, sha))
        },
        || {
            let train = splits.relabel(&ImageSet::concat(&[
                &splits.forget_train,
                &splits.retain_train,
            ])?)?;
            let bar = p.bar(
                spec.steps as u64,
                &format!("train domain extractor on {}", d.name),
            );
            let ex = DomainCnn::train(spec, &train, splits.eval_classes().len(), size, &bar)?;
            bar.finish_and_clear();
            let sha = crate::store::sealed::save(ex.weights(), &epath)?;
            Ok((ex, sha))
        },
    )?;
    record_use(exp, opts, &epath, &esha)?;
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
