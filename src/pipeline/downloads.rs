//! What a grid would download, listed without downloading it (`check`, `fetch --dry-run`): each
//! checkpoint, dataset and extractor file with its source, its size where the server says it, and
//! whether it is already cached. Nothing here writes to the caches.

use crate::config::Experiment;
use crate::data::SourceSpec;
use crate::metrics::ExtractorRef;
use crate::models::spec::WeightsSource;
use crate::weights::checkpoint::FileRef;

/// Where a listed file stands.
#[derive(Clone, Debug, PartialEq)]
pub enum State {
    /// Already on this machine (cached download or local file).
    Here(String),
    /// To be downloaded.
    Missing,
    /// A local path that does not exist.
    Absent,
    /// Nothing to download (trained or built in here).
    Nothing,
}

/// One listed download.
#[derive(Clone, Debug)]
pub struct Download {
    /// What needs it: `model mage-vitb (model file)`, `dataset imagenet1k`, `extractor clip`.
    pub what: String,
    /// Where it comes from: a URL, `hub:repo/file`, a path.
    pub source: String,
    /// Bytes, where known (asked of the server with `probe`).
    pub size: Option<u64>,
    pub state: State,
    /// A remark: the pin, what could not be reached, what happens at run time.
    pub note: String,
}

/// Every download of `exp`. With `probe`, the size of each missing URL is asked of its server
/// (a failure is noted, not an error); without, nothing touches the network.
pub fn list(exp: &Experiment, probe: bool) -> Vec<Download> {
    let hub_cfg = crate::hub::HubConfig::from_env();
    let hub = crate::hub::Hub::new(hub_cfg.clone()).ok();
    let probe = probe && !hub_cfg.offline;
    let mut out = vec![];
    for m in &exp.models {
        let what = |part: &str| format!("model {} ({part})", m.name);
        let committed = m.pretrained.clone().unwrap_or_default();
        match &m.weights {
            None => {
                match &committed.original {
                    Some(f) => out.push(file_ref(
                        what("committed original"),
                        f,
                        hub.as_ref(),
                        &hub_cfg,
                        probe,
                    )),
                    None => out.push(nothing(
                        what("original"),
                        "pre-trained by `run` (cached by content)",
                    )),
                }
                if let Some(f) = &committed.oracle {
                    out.push(file_ref(
                        what("committed oracle"),
                        f,
                        hub.as_ref(),
                        &hub_cfg,
                        probe,
                    ));
                }
            }
            Some(WeightsSource::Checkpoint(id)) => {
                if std::path::Path::new(id).is_dir() {
                    out.push(here(what("checkpoint"), id, id));
                    continue;
                }
                let layout = m.family.layout();
                for file in std::iter::once("config.json").chain(
                    layout
                        .weights
                        .iter()
                        .copied()
                        .filter(|f| !f.contains('*'))
                        .take(1),
                ) {
                    out.push(hub_file(
                        what(file),
                        id,
                        &[file],
                        hub.as_ref(),
                        &hub_cfg,
                        probe,
                    ));
                }
            }
            Some(WeightsSource::Files(f)) => {
                out.push(file_ref(
                    what("model file"),
                    &f.model,
                    hub.as_ref(),
                    &hub_cfg,
                    probe,
                ));
                if let Some(t) = &f.tokenizer {
                    out.push(file_ref(
                        what("tokenizer file"),
                        t,
                        hub.as_ref(),
                        &hub_cfg,
                        probe,
                    ));
                }
            }
        }
    }
    for d in &exp.datasets {
        match d.effective_source() {
            SourceSpec::Places365(c) => out.extend(places365(&d.name, c, &hub_cfg, probe)),
            _ => out.push(dataset(d)),
        }
    }
    for r in exp.metrics.extractors() {
        out.push(extractor(r, exp, hub.as_ref(), &hub_cfg, probe));
    }
    out
}

fn nothing(what: String, note: &str) -> Download {
    Download {
        what,
        source: "-".into(),
        size: None,
        state: State::Nothing,
        note: note.into(),
    }
}

fn here(what: String, source: &str, path: &str) -> Download {
    Download {
        what,
        source: source.into(),
        size: std::fs::metadata(path)
            .ok()
            .filter(|m| m.is_file())
            .map(|m| m.len()),
        state: State::Here(path.into()),
        note: String::new(),
    }
}

/// A URL: cached or not; its size asked of the server when `probe`.
fn url(what: String, url: &str, cached: std::path::PathBuf, probe: bool, note: String) -> Download {
    if cached.is_file() {
        return here(what, url, &cached.display().to_string());
    }
    let (size, note) = if probe {
        match crate::weights::remote_size(url) {
            Some(s) => (Some(s), note),
            None => (
                None,
                format!(
                    "{note}{}size not reported (server unreachable or no range support)",
                    if note.is_empty() { "" } else { "; " }
                ),
            ),
        }
    } else {
        (None, note)
    };
    Download {
        what,
        source: url.into(),
        size,
        state: State::Missing,
        note,
    }
}

fn file_ref(
    what: String,
    f: &FileRef,
    hub: Option<&crate::hub::Hub>,
    hub_cfg: &crate::hub::HubConfig,
    probe: bool,
) -> Download {
    match f {
        FileRef::Pinned { path, sha256 } if path.is_file() => {
            let mut d = here(
                what,
                &path.display().to_string(),
                &path.display().to_string(),
            );
            d.note = format!("pinned sha256 {}… (checked when loaded)", &sha256[..16]);
            d
        }
        FileRef::Pinned { path, .. } => Download {
            what,
            source: path.display().to_string(),
            size: None,
            state: State::Absent,
            note: "no such file: give the path of your copy".into(),
        },
        FileRef::Path(p) if p.is_file() => {
            here(what, &p.display().to_string(), &p.display().to_string())
        }
        FileRef::Path(p) => Download {
            what,
            source: p.display().to_string(),
            size: None,
            state: State::Absent,
            note: "no such file: give the path of your copy".into(),
        },
        FileRef::Url { url: u, sha256 } => {
            let cached = crate::weights::checkpoint::url_cache_path(u, sha256.as_deref(), hub_cfg);
            let note = match sha256 {
                Some(s) => format!("pinned sha256 {}…", &s[..16]),
                None => "no published hash: pinned on first download".into(),
            };
            url(what, u, cached, probe, note)
        }
        FileRef::Hub { repo, file } => hub_file(what, repo, &[file], hub, hub_cfg, probe),
    }
}

/// A file of a hub model repository (the first of `files` the repository has): cached or not;
/// with `probe`, its size asked of the hub (gated repositories answer only with a token, so
/// their size may stay unknown).
fn hub_file(
    what: String,
    repo: &str,
    files: &[&str],
    hub: Option<&crate::hub::Hub>,
    hub_cfg: &crate::hub::HubConfig,
    probe: bool,
) -> Download {
    let r = crate::hub::RepoRef::model(repo);
    let source = format!("hub:{repo}/{}", files.join(" or "));
    if let Some(p) = files.iter().find_map(|f| hub.and_then(|h| h.cached(&r, f))) {
        return here(what, &source, &p.display().to_string());
    }
    let size = if probe {
        files.iter().find_map(|f| {
            let u = format!(
                "{}/{}/resolve/{}/{f}",
                hub_cfg.endpoint.trim_end_matches('/'),
                r.id,
                r.revision
            );
            crate::weights::remote_size(&u)
        })
    } else {
        None
    };
    Download {
        what,
        source,
        size,
        state: State::Missing,
        note: String::new(),
    }
}

fn dataset(d: &crate::data::spec::DatasetSpec) -> Download {
    let what = format!("dataset {}", d.name);
    let src = d.effective_source();
    match src {
        SourceSpec::Embedded(_) => nothing(what, "built into the binary"),
        SourceSpec::ImageFolder(c) => {
            let root = c.root.display().to_string();
            if c.root.is_dir() {
                here(what, &root, &root)
            } else {
                Download {
                    what,
                    source: root,
                    size: None,
                    state: State::Absent,
                    note: "no such folder".into(),
                }
            }
        }
        #[cfg(feature = "parquet")]
        SourceSpec::HubParquet(c) => hub_dataset(what, &c.repo, d),
        SourceSpec::HubTar(c) => hub_dataset(what, &c.repo, d),
        SourceSpec::Places365(_) => unreachable!("listed by places365()"),
    }
}

/// The three official Places-365 files, by URL or in a local folder.
fn places365(
    name: &str,
    c: &crate::data::places365::Places365Config,
    hub_cfg: &crate::hub::HubConfig,
    probe: bool,
) -> Vec<Download> {
    let cache = c.cache_dir(hub_cfg).join("archives");
    c.files()
        .iter()
        .map(|(role, file, md5)| {
            let what = format!("dataset {name} ({role})");
            let check = match md5 {
                Some(h) => format!("published MD5 {h} checked"),
                None => "no published hash: pinned on first download".into(),
            };
            let published = crate::data::places365::PUBLISHED_SIZE
                .iter()
                .find(|(f, _)| f == file)
                .map(|(_, s)| format!("{s} as published; "))
                .unwrap_or_default();
            let note =
                format!("{published}{check}; only the classes a run draws from are extracted");
            if c.is_remote() {
                let u = format!("{}/{file}", c.base.trim_end_matches('/'));
                url(what, &u, cache.join(file), probe, note)
            } else {
                let p = std::path::Path::new(&c.base).join(file);
                let shown = p.display().to_string();
                if p.is_file() {
                    here(what, &shown, &shown)
                } else {
                    Download {
                        what,
                        source: shown,
                        size: None,
                        state: State::Absent,
                        note: "no such file in the source's `base` folder".into(),
                    }
                }
            }
        })
        .collect()
}

fn hub_dataset(what: String, repo: &str, d: &crate::data::spec::DatasetSpec) -> Download {
    let local = d
        .local
        .as_ref()
        .map(|l| match l {
            SourceSpec::ImageFolder(c) => {
                format!("; `local:` {} is not on this machine", c.root.display())
            }
            _ => String::new(),
        })
        .unwrap_or_default();
    Download {
        what,
        source: format!("hub dataset {repo}"),
        size: None,
        state: State::Missing,
        note: format!(
            "only the shards holding the needed classes' draws are downloaded; the shard list needs the hub (`fetch` lists it){local}"
        ),
    }
}

fn extractor(
    r: ExtractorRef,
    exp: &Experiment,
    hub: Option<&crate::hub::Hub>,
    hub_cfg: &crate::hub::HubConfig,
    probe: bool,
) -> Download {
    let spec = &exp.metrics;
    let what = format!("extractor {}", r.as_str());
    let weights_file =
        |file: &crate::weights::WeightsFile, local: Option<&std::path::Path>| match local {
            Some(p) => file_ref(
                what.clone(),
                &FileRef::Path(p.to_path_buf()),
                hub,
                hub_cfg,
                probe,
            ),
            None => url(
                what.clone(),
                file.url,
                crate::weights::cache_dir(hub_cfg).join(file.name),
                probe,
                format!("sha256 prefix {} checked", file.sha256_prefix),
            ),
        };
    match r {
        ExtractorRef::Domain => {
            nothing(what, "trained by `run` on the evaluation classes (cached)")
        }
        ExtractorRef::InceptionV3 => weights_file(
            &crate::weights::FID_INCEPTION,
            spec.inception.weights.as_deref(),
        ),
        ExtractorRef::InceptionPaper => weights_file(
            &crate::weights::TORCHVISION_INCEPTION,
            spec.inception.paper_weights.as_deref(),
        ),
        ExtractorRef::Places365 => match &spec.places365_weights {
            Some(p) => file_ref(what, &FileRef::Path(p.clone()), hub, hub_cfg, probe),
            None => url(
                what,
                crate::metrics::places365::WEIGHTS_URL,
                crate::weights::cache_dir(hub_cfg).join(crate::metrics::places365::WEIGHTS_NAME),
                probe,
                "no published hash: pinned on first download".into(),
            ),
        },
        ExtractorRef::Clip => {
            let id = &spec.clip_model;
            if std::path::Path::new(id).is_dir() {
                return here(what, id, id);
            }
            let mut d = hub_file(
                what,
                id,
                &["open_clip_model.safetensors", "model.safetensors"],
                hub,
                hub_cfg,
                probe,
            );
            d.note = "with its config.json".into();
            d
        }
    }
}

/// The listing as lines: one per file, then a summary.
pub fn render(list: &[Download]) -> Vec<String> {
    let mut lines = vec!["downloads:".to_string()];
    let (mut missing, mut bytes, mut unknown) = (0, 0u64, 0);
    for d in list {
        let state = match &d.state {
            State::Here(p) => format!("here ({p})"),
            State::Missing => {
                missing += 1;
                match d.size {
                    Some(s) => bytes += s,
                    None => unknown += 1,
                }
                "to download".into()
            }
            State::Absent => "MISSING (local path)".into(),
            State::Nothing => "nothing to download".into(),
        };
        let size = d
            .size
            .map(crate::util::human_bytes)
            .unwrap_or_else(|| "size ?".into());
        let note = if d.note.is_empty() {
            String::new()
        } else {
            format!(" — {}", d.note)
        };
        lines.push(format!(
            "  {:<34} {state}; {size}; {}{note}",
            d.what, d.source
        ));
    }
    lines.push(format!(
        "  {missing} to download: {} known{}",
        crate::util::human_bytes(bytes),
        if unknown > 0 {
            format!(" + {unknown} of unknown size")
        } else {
            String::new()
        }
    ));
    lines
}
