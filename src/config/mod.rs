//! The experiment file: serde types, validation with file:line errors, and grid expansion
//! ([`grid`]).
//!
//! Everything a run needs is validated before anything is written: a bad field, an unknown name or
//! an impossible combination is one line `FILE:LINE:COL: what is wrong; valid choices`, exit code 2.

pub mod figure;
pub mod gate;
pub mod grid;
use crate::locate;

use crate::data::DatasetSpec;
use crate::masks::MaskSpec;
use crate::metrics::MetricsSpec;
use crate::models::ModelSpec;
use crate::unlearn::{MethodSpec, UnlearnSpec};
use anyhow::Result;
pub use figure::FigureSpec;
pub use gate::{GateSpec, MapProbeSpec};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One experiment: a grid of datasets × models × methods × masks × α × seeds.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Short name; results go to `results/<name>` unless `output` says otherwise.
    pub name: String,
    /// Output folder (a relative path is relative to the experiment file's folder; without it,
    /// `results/<name>` in the working directory).
    #[serde(default)]
    pub output: Option<PathBuf>,
    /// Seeds of the unlearning runs (data order, noise, random masks); one cell per seed.
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
    pub datasets: Vec<DatasetSpec>,
    pub models: Vec<ModelSpec>,
    #[serde(default)]
    pub unlearn: UnlearnSpec,
    pub methods: Vec<MethodSpec>,
    /// Forget-term weights; methods without a forget weight (`original`) ignore them.
    #[serde(default = "default_alphas")]
    pub alphas: Vec<f64>,
    /// Retain budgets of `controllable`, one cell each: positions in the valid range between
    /// its two boundary solutions (0 = the original model's retain loss, 1 = the forget-optimal
    /// model's), or absolute retain losses with `controllable.budget: absolute`.
    #[serde(
        default = "default_epsilons",
        skip_serializing_if = "is_default_epsilons"
    )]
    pub epsilons: Vec<f64>,
    /// Settings of `controllable` (docs/methods.md).
    #[serde(
        default,
        skip_serializing_if = "crate::unlearn::ControllableSpec::is_default"
    )]
    pub controllable: crate::unlearn::ControllableSpec,
    /// Evaluation masks. Each unlearned model is evaluated under every one of them (it is
    /// unlearned once unless `unlearn.mask` is `task`).
    pub masks: Vec<MaskSpec>,
    /// How outputs are generated: compositing and, for families with steps, the sampling steps.
    #[serde(default)]
    pub generate: crate::models::GenerateOptions,
    #[serde(default)]
    pub metrics: MetricsSpec,
    /// Reproduce the official code's per-sample `(1 ± l)` weighting of the mixed batch: the
    /// baselines' forget samples weigh 0 in both terms (Random Encoder, Retain Label), and every
    /// term is averaged over the whole batch. Off by default: the intended losses are used.
    #[serde(default)]
    pub paper_compat: bool,
    /// The qualitative figure (the paper's Figures 1 and 3): the evaluation images whose masked
    /// input, output and ground truth every cell saves for `report --layout paper`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figure: Option<FigureSpec>,
    /// The original model's quality gate, measured on held-out images before any unlearning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality_gate: Option<GateSpec>,
    /// The decoder probe of the original model (Palette), before any unlearning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map_probe: Option<MapProbeSpec>,
}

fn default_seeds() -> Vec<u64> {
    vec![0]
}
/// The sweeps: α for the methods weighted by it, the retain budgets of `controllable`, and its
/// settings.
fn validate_sweeps(exp: &Experiment) -> std::result::Result<(), Invalid> {
    if exp.methods.iter().any(|m| m.name.uses_alpha()) && exp.alphas.is_empty() {
        return Err(at(
            &[Key("alphas")],
            "must list at least one α for the methods that train",
        ));
    }
    if exp.methods.iter().any(|m| m.name.uses_epsilon()) {
        if exp.epsilons.is_empty() {
            return Err(at(
                &[Key("epsilons")],
                "must list at least one retain budget for `controllable`",
            ));
        }
        let relative = exp.controllable.budget == crate::unlearn::Budget::Relative;
        for (i, e) in exp.epsilons.iter().enumerate() {
            let ok = e.is_finite() && *e >= 0.0 && (!relative || *e <= 1.0);
            if !ok {
                return Err(at(
                    &[Key("epsilons"), Idx(i)],
                    if relative {
                        format!("a relative retain budget is in [0, 1] (0 = the original model, 1 = the forget-optimal one), got {e}")
                    } else {
                        format!("an absolute retain budget is a finite number ≥ 0, got {e}")
                    },
                ));
            }
        }
    }
    if let Err((k, m)) = exp.controllable.validate() {
        return Err(at(&[Key("controllable"), Key(k)], m));
    }
    for (i, a) in exp.alphas.iter().enumerate() {
        if !(a.is_finite() && *a >= 0.0) {
            return Err(at(
                &[Key("alphas"), Idx(i)],
                format!("α must be a finite number ≥ 0, got {a}"),
            ));
        }
    }
    Ok(())
}

fn default_epsilons() -> Vec<f64> {
    vec![0.5]
}

/// `experiment.yaml` leaves the default out, so files written before ε existed read the same.
fn is_default_epsilons(v: &[f64]) -> bool {
    v == default_epsilons().as_slice()
}

fn default_alphas() -> Vec<f64> {
    vec![0.25]
}

/// Read and validate an experiment file. Errors are user errors naming `FILE:LINE:COL`.
pub fn load(path: &Path) -> Result<Experiment> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        crate::error::user(format!(
            "cannot read experiment file {}: {e}",
            path.display()
        ))
    })?;
    // Editors on some systems start UTF-8 files with a byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let base = path.parent().unwrap_or_else(|| Path::new(""));
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    parse_in(text, &path.display().to_string(), Some(base))
}

/// Parse and validate experiment text; `origin` names it in errors. Relative paths stay relative
/// to the working directory (see [`parse_in`]).
pub fn parse(text: &str, origin: &str) -> Result<Experiment> {
    parse_in(text, origin, None)
}

/// As [`parse`], with relative paths in the file (local data folders, local class lists,
/// `output`) made relative to `base`, the experiment file's folder: the same file then means the
/// same data from any working directory.
pub fn parse_in(text: &str, origin: &str, base: Option<&Path>) -> Result<Experiment> {
    let mut exp: Experiment = serde_yaml::from_str(text).map_err(|e| {
        let msg = strip_location(&e.to_string());
        match e.location() {
            Some(l) => crate::error::user(format!("{origin}:{}:{}: {msg}", l.line(), l.column())),
            None => crate::error::user(format!("{origin}: {msg}")),
        }
    })?;
    apply_metric_protocol(&mut exp, text);
    if let Some(base) = base {
        for d in &mut exp.datasets {
            d.source.resolve_relative(base);
            if let Some(l) = d.local.as_mut() {
                l.resolve_relative(base);
            }
        }
        for m in &mut exp.models {
            m.resolve_relative(base);
        }
        if let Some(o) = exp.output.as_mut() {
            if o.is_relative() {
                *o = base.join(&*o);
            }
        }
    }
    validate(&exp).map_err(|(path, msg)| {
        let (line, col) = locate::locate(text, &path).unwrap_or((1, 1));
        let path_s = locate::path_string(&path);
        crate::error::user(format!("{origin}:{line}:{col}: {path_s}: {msg}"))
    })?;
    Ok(exp)
}

/// Fill the `metrics.protocol` profile's choices the file left out (see
/// [`MetricsSpec::apply_protocol`]); the keys the file gives are read from its text.
fn apply_metric_protocol(exp: &mut Experiment, text: &str) {
    let raw: serde_yaml::Value = serde_yaml::from_str(text).unwrap_or(serde_yaml::Value::Null);
    let metrics = &raw["metrics"];
    let given = |key: &str| match key.split_once('.') {
        Some((a, b)) => !metrics[a][b].is_null(),
        None => metrics.get(key).is_some(),
    };
    let places = !exp.datasets.is_empty()
        && exp
            .datasets
            .iter()
            .all(|d| d.preset.as_deref() == Some("places365-paper"));
    exp.metrics.apply_protocol(given, places);
}

/// serde_yaml appends " at line L column C"; we print the location up front instead.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// A semantic error: the YAML path of the culprit and what is wrong with it.
pub type Invalid = (Vec<locate::Seg>, String);

pub(crate) fn at(path: &[locate::Seg], msg: impl Into<String>) -> Invalid {
    (path.to_vec(), msg.into())
}

use locate::Seg::{Idx, Key};

/// Whether a name can become part of a file name: letters, digits, '-', '_', '.', not starting
/// with '.' (so never `..`, a hidden file or a path).
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

const NAME_RULE: &str =
    "use letters, digits, '-', '_' or '.' only, not starting with '.' (names become file names)";

fn validate(exp: &Experiment) -> std::result::Result<(), Invalid> {
    if let Some(f) = &exp.figure {
        f.validate()?;
    }
    if let Some(g) = &exp.quality_gate {
        g.validate()?;
    }
    if !is_safe_name(&exp.name) {
        return Err(at(&[Key("name")], NAME_RULE));
    }
    for (key, names) in [
        (
            "datasets",
            exp.datasets
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
        ),
        (
            "models",
            exp.models.iter().map(|m| m.name.as_str()).collect(),
        ),
    ] {
        for (i, n) in names.iter().enumerate() {
            if !is_safe_name(n) {
                return Err(at(&[Key(key), Idx(i), Key("name")], NAME_RULE));
            }
        }
    }
    for (i, s) in exp.seeds.iter().enumerate() {
        if exp.seeds[..i].contains(s) {
            return Err(at(
                &[Key("seeds"), Idx(i)],
                format!("seed {s} is listed twice (its cells would be computed twice)"),
            ));
        }
    }
    for (key, empty) in [
        ("datasets", exp.datasets.is_empty()),
        ("models", exp.models.is_empty()),
        ("methods", exp.methods.is_empty()),
        ("masks", exp.masks.is_empty()),
        ("seeds", exp.seeds.is_empty()),
    ] {
        if empty {
            return Err(at(&[Key(key)], "must list at least one entry"));
        }
    }
    validate_sweeps(exp)?;
    check_unique(exp.datasets.iter().map(|d| d.name.as_str()), "datasets")?;
    check_unique(exp.models.iter().map(|m| m.name.as_str()), "models")?;
    let mut seen = std::collections::HashSet::new();
    for (i, m) in exp.methods.iter().enumerate() {
        if !seen.insert(m.key()) {
            return Err(at(
                &[Key("methods"), Idx(i)],
                format!("method `{}` is listed twice", m.label()),
            ));
        }
    }
    for (i, d) in exp.datasets.iter().enumerate() {
        validate_dataset(d, i, exp)?;
    }
    let u = &exp.unlearn;
    let p = |k: &'static str| vec![Key("unlearn"), Key(k)];
    if exp.methods.iter().any(|m| m.name.trains()) {
        if u.steps == 0 {
            return Err(at(&p("steps"), "must be at least 1"));
        }
        if u.retain_batch == 0 || u.forget_batch == 0 {
            return Err(at(
                &p("retain_batch"),
                "retain_batch and forget_batch must be at least 1",
            ));
        }
    }
    if u.grad_accum == 0 {
        return Err(at(&p("grad_accum"), "must be at least 1"));
    }
    u.validate_optim().map_err(|(k, msg)| at(&p(k), msg))?;
    if let Some(a) = &u.augment {
        a.validate()
            .map_err(|(k, msg)| at(&[Key("unlearn"), Key("augment"), Key(k)], msg))?;
    }
    for (i, m) in exp.models.iter().enumerate() {
        let path = [Key("models"), Idx(i)];
        let family = m
            .family_config()
            .map_err(|(sub, msg)| (path.iter().cloned().chain(sub).collect(), msg))?;
        // A checkpoint's architecture is checked against the masks when it is resolved.
        if let Some(family) = family {
            check_masks(exp, &family, &m.name)?;
        }
        m.pretrain
            .validate()
            .map_err(|(k, msg)| at(&[Key("models"), Idx(i), Key("pretrain"), Key(k)], msg))?;
    }
    exp.metrics
        .validate()
        .map_err(|(sub, msg)| (std::iter::once(Key("metrics")).chain(sub).collect(), msg))?;
    Ok(())
}

/// Every mask (evaluation, unlearning, pre-training task) must fit the model's mask grid.
pub fn check_masks(
    exp: &Experiment,
    family: &crate::models::FamilyConfig,
    model: &str,
) -> std::result::Result<(), Invalid> {
    let grid = family.mask_grid();
    for (j, mask) in exp.masks.iter().enumerate() {
        mask.check_grid(grid)
            .map_err(|e| at(&[Key("masks"), Idx(j)], format!("{e} (model `{model}`)")))?;
    }
    if let crate::unlearn::UnlearnMask::Fixed(m) = exp.unlearn.mask {
        m.check_grid(grid).map_err(|e| {
            at(
                &[Key("unlearn"), Key("mask")],
                format!("{e} (model `{model}`)"),
            )
        })?;
    }
    for (i, m) in exp.models.iter().enumerate() {
        if m.name != model {
            continue;
        }
        for (j, mask) in m.pretrain.task_masks.iter().enumerate() {
            mask.check_grid(grid).map_err(|e| {
                at(
                    &[
                        Key("models"),
                        Idx(i),
                        Key("pretrain"),
                        Key("task_masks"),
                        Idx(j),
                    ],
                    e,
                )
            })?;
        }
    }
    Ok(())
}

fn check_unique<'a>(
    names: impl Iterator<Item = &'a str>,
    key: &'static str,
) -> std::result::Result<(), Invalid> {
    let mut seen = std::collections::HashSet::new();
    for (i, n) in names.enumerate() {
        if !seen.insert(n.to_string()) {
            return Err(at(
                &[Key(key), Idx(i), Key("name")],
                format!("name `{n}` is used twice"),
            ));
        }
    }
    Ok(())
}

fn validate_dataset(
    d: &DatasetSpec,
    i: usize,
    exp: &Experiment,
) -> std::result::Result<(), Invalid> {
    let base = [Key("datasets"), Idx(i)];
    let path =
        |k: &'static str| -> Vec<locate::Seg> { base.iter().cloned().chain([Key(k)]).collect() };
    if let Some(p) = &d.preset {
        if crate::data::presets::preset(p).is_none() {
            return Err(at(
                &path("preset"),
                format!(
                    "unknown preset `{p}`; valid: {}",
                    crate::data::presets::PRESETS
                ),
            ));
        }
    }
    if d.train_per_class == 0 {
        return Err(at(&path("train_per_class"), "must be at least 1"));
    }
    if d.eval_per_class < 2 {
        return Err(at(
            &path("eval_per_class"),
            "must be at least 2 (FID needs a covariance)",
        ));
    }
    // The Inception Score splits each set; with explicit class lists the sizes are known now.
    if exp.metrics.is.is_some() && !d.forget_classes.is_empty() && !d.retain_classes.is_empty() {
        let smallest = d.eval_per_class * d.forget_classes.len().min(d.retain_classes.len());
        if smallest < exp.metrics.is_splits {
            return Err(at(
                &path("eval_per_class"),
                format!(
                    "the smallest evaluation set has {smallest} images, fewer than metrics.is_splits = {} (one image per split at least)",
                    exp.metrics.is_splits
                ),
            ));
        }
    }
    // Classes can be checked now when the source is on this machine; hub sources are checked
    // when the run resolves them, before anything is written.
    let src = d.effective_source();
    if let (false, Some(folder)) = (src.is_present(), src.local_path()) {
        return Err(at(
            &path("source"),
            format!(
                "folder {} does not exist (relative paths are relative to the experiment file's folder)",
                folder.display()
            ),
        ));
    }
    if src.is_present() {
        let source = crate::data::open_dataset(d).map_err(|e| {
            let key = if d.local.as_ref().is_some_and(|l| l.is_present()) {
                "local"
            } else {
                "source"
            };
            at(&path(key), format!("{e:#}"))
        })?;
        let wants_proxy = exp
            .methods
            .iter()
            .any(|m| m.retain == crate::unlearn::RetainSource::Proxy);
        crate::data::split::resolve_classes(d, &source.classes(), wants_proxy)
            .map_err(|(sub, msg)| (base.iter().cloned().chain(sub).collect(), msg))?;
    }
    Ok(())
}

impl Experiment {
    /// The output folder: `output`, or `results/<name>`.
    pub fn output_dir(&self) -> PathBuf {
        self.output
            .clone()
            .unwrap_or_else(|| PathBuf::from("results").join(&self.name))
    }
}
