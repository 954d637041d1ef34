//! The Hugging Face hub: one place that turns a repo file into a local path.
//!
//! Uses the `hf-hub` crate (pinned) with the cache layout Python tools share
//! (`models--org--name/{blobs,refs,snapshots}`). Honours `HF_HOME`, `HF_HUB_CACHE`, `HF_ENDPOINT`,
//! `HF_TOKEN` and `HF_HUB_OFFLINE`. Offline means the cache only: a missing file is an error that
//! lists what is missing and how to fetch it. Every download is verified (size, and SHA-256 when
//! the hub's ETag is one, as it is for LFS files); a short download is resumed, a corrupt one
//! removed.

use crate::error::user;
use anyhow::{Context, Result};
use hf_hub::api::sync::{Api, ApiBuilder};
use hf_hub::{Cache, Repo, RepoType};
use std::path::{Path, PathBuf};

pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Where the hub is and how to talk to it.
#[derive(Clone, Debug, PartialEq)]
pub struct HubConfig {
    /// The hub cache folder (the one with `models--…` inside).
    pub cache_dir: PathBuf,
    pub endpoint: String,
    pub token: Option<String>,
    pub offline: bool,
}

fn truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "1" | "true" | "yes" | "on"
    )
}

impl HubConfig {
    /// From the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    /// From any variable lookup (tests pass their own).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let home = get("HF_HOME").map(PathBuf::from).unwrap_or_else(|| {
            get("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| get("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"))
                .join("huggingface")
        });
        let cache_dir = get("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join("hub"));
        let token = get("HF_TOKEN")
            .or_else(|| get("HUGGING_FACE_HUB_TOKEN"))
            .or_else(|| {
                std::fs::read_to_string(home.join("token"))
                    .ok()
                    .map(|t| t.trim().to_string())
            })
            .filter(|t| !t.is_empty());
        Self {
            cache_dir,
            endpoint: get("HF_ENDPOINT")
                .unwrap_or_else(|| DEFAULT_ENDPOINT.into())
                .trim_end_matches('/')
                .to_string(),
            token,
            offline: get("HF_HUB_OFFLINE").map(|v| truthy(&v)).unwrap_or(false),
        }
    }
}

/// A repository on the hub: `org/name`, optionally `@revision`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub id: String,
    pub dataset: bool,
    pub revision: String,
}

impl RepoRef {
    pub fn model(spec: &str) -> Self {
        let (id, rev) = spec.split_once('@').unwrap_or((spec, "main"));
        Self {
            id: id.to_string(),
            dataset: false,
            revision: rev.to_string(),
        }
    }
    pub fn dataset(id: &str, revision: &str) -> Self {
        Self {
            id: id.to_string(),
            dataset: true,
            revision: revision.to_string(),
        }
    }
    fn repo(&self) -> Repo {
        let t = if self.dataset {
            RepoType::Dataset
        } else {
            RepoType::Model
        };
        Repo::with_revision(self.id.clone(), t, self.revision.clone())
    }
    /// Whether a string looks like a hub id (`org/name`) rather than a local path.
    pub fn looks_like_id(s: &str) -> bool {
        let base = s.split('@').next().unwrap_or(s);
        let parts: Vec<&str> = base.split('/').collect();
        parts.len() == 2
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            })
            && !Path::new(base).exists()
    }
}

impl std::fmt::Display for RepoRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}{}",
            if self.dataset { "datasets/" } else { "" },
            self.id
        )?;
        if self.revision != "main" {
            write!(f, "@{}", self.revision)?;
        }
        Ok(())
    }
}

/// How a file request ended, when it did not give a path.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{repo} has no file `{file}`")]
    NotFound { repo: String, file: String },
    #[error(
        "offline (HF_HUB_OFFLINE is set) and {repo} is not in the hub cache {cache}: missing {missing}; \
         fetch it once with network access (`i2i-unlearn fetch EXPERIMENT.yaml`, or \
         `huggingface-cli download {id} {files}`), or point at a local folder"
    )]
    Offline {
        repo: String,
        id: String,
        cache: String,
        missing: String,
        files: String,
    },
    #[error("downloading `{file}` of {repo}: {msg}")]
    Download {
        repo: String,
        file: String,
        msg: String,
    },
}

pub struct Hub {
    pub cfg: HubConfig,
    api: Api,
    cache: Cache,
}

impl Hub {
    pub fn new(cfg: HubConfig) -> Result<Self> {
        let cache = Cache::new(cfg.cache_dir.clone());
        let api = ApiBuilder::from_cache(cache.clone())
            .with_endpoint(cfg.endpoint.clone())
            .with_token(cfg.token.clone())
            // A bar per file on a terminal: dataset shards and checkpoints are large.
            .with_progress(crate::progress::bars_enabled())
            .build()
            .context("setting up the hub client")?;
        Ok(Self { cfg, api, cache })
    }

    pub fn from_env() -> Result<Self> {
        Self::new(HubConfig::from_env())
    }

    /// The cached copy of a file, if any.
    pub fn cached(&self, repo: &RepoRef, file: &str) -> Option<PathBuf> {
        self.cache.repo(repo.repo()).get(file)
    }

    /// A file: from the cache, else downloaded and verified (an error when offline). A file the
    /// hub said does not exist is remembered as Python does (`.no_exist/<commit>/<file>`), so a
    /// cached repo makes no request.
    pub fn file(&self, repo: &RepoRef, file: &str) -> Result<PathBuf, HubError> {
        if let Some(p) = self.cached(repo, file) {
            return Ok(p);
        }
        let not_found = || HubError::NotFound {
            repo: repo.to_string(),
            file: file.to_string(),
        };
        let marker = self.no_exist_marker(repo, file);
        if marker.as_ref().is_some_and(|m| m.exists()) {
            return Err(not_found());
        }
        if self.cfg.offline {
            return Err(self.offline_error(repo, &[file]));
        }
        let r = self.download(repo, file);
        if let (Err(HubError::NotFound { .. }), Some(m)) = (&r, self.no_exist_marker(repo, file)) {
            if let Some(parent) = m.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            let _ = std::fs::write(m, b"");
        }
        r
    }

    /// Python's negative-cache entry for a file at the revision's cached commit.
    fn no_exist_marker(&self, repo: &RepoRef, file: &str) -> Option<PathBuf> {
        let dir = self.cfg.cache_dir.join(repo.repo().folder_name());
        let commit = std::fs::read_to_string(dir.join("refs").join(&repo.revision)).ok()?;
        Some(dir.join(".no_exist").join(commit.trim()).join(file))
    }

    /// Like [`Hub::file`], but `Ok(None)` when the hub says the file does not exist.
    pub fn optional_file(&self, repo: &RepoRef, file: &str) -> Result<Option<PathBuf>, HubError> {
        match self.file(repo, file) {
            Ok(p) => Ok(Some(p)),
            Err(HubError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The repository's files (at its revision): from the hub's API, or offline from the cached
    /// snapshot.
    pub fn list_files(&self, repo: &RepoRef) -> Result<Vec<String>, HubError> {
        if self.cfg.offline {
            let dir = self.cfg.cache_dir.join(repo.repo().folder_name());
            let commit = std::fs::read_to_string(dir.join("refs").join(&repo.revision))
                .map_err(|_| self.offline_error(repo, &["(the file list: nothing is cached)"]))?;
            let snap = dir.join("snapshots").join(commit.trim());
            let mut out = vec![];
            let mut stack = vec![snap.clone()];
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else if let Ok(rel) = p.strip_prefix(&snap) {
                        out.push(rel.to_string_lossy().to_string());
                    }
                }
            }
            out.sort();
            return Ok(out);
        }
        let (api, r) = (self.api.clone(), repo.repo());
        let url = format!("{}/api/{}", self.cfg.endpoint, repo.id);
        let info = crate::net::watched_retried(
            &url,
            "listing the repository's files",
            || 0,
            move || api.repo(r.clone()).info(),
        )
        .map_err(|msg| HubError::Download {
            repo: repo.to_string(),
            file: "(file list)".into(),
            msg,
        })?
        .map_err(|e| {
            if is_status(&e, 404) {
                HubError::NotFound {
                    repo: repo.to_string(),
                    file: "(the repository)".into(),
                }
            } else {
                HubError::Download {
                    repo: repo.to_string(),
                    file: "(file list)".into(),
                    msg: e.to_string(),
                }
            }
        })?;
        let mut out: Vec<String> = info.siblings.into_iter().map(|s| s.rfilename).collect();
        out.sort();
        Ok(out)
    }

    /// The error for files missing from the cache while offline.
    pub fn offline_error(&self, repo: &RepoRef, files: &[&str]) -> HubError {
        HubError::Offline {
            repo: repo.to_string(),
            id: repo.id.clone(),
            cache: self.cfg.cache_dir.display().to_string(),
            missing: files.join(", "),
            files: files.join(" "),
        }
    }

    fn download(&self, repo: &RepoRef, file: &str) -> Result<PathBuf, HubError> {
        let err = |msg: String| HubError::Download {
            repo: repo.to_string(),
            file: file.to_string(),
            msg,
        };
        let api_repo = self.api.repo(repo.repo());
        let url = api_repo.url(file);
        let (api, u) = (self.api.clone(), url.clone());
        let meta = crate::net::watched_retried(
            &url,
            "asking for the file's size",
            || 0,
            move || api.metadata(&u),
        )
        .map_err(err)?;
        let meta = match meta {
            Ok(m) => m,
            Err(e) => {
                if is_status(&e, 404) {
                    return Err(HubError::NotFound {
                        repo: repo.to_string(),
                        file: file.to_string(),
                    });
                }
                if is_status(&e, 401) || is_status(&e, 403) {
                    return Err(err(format!(
                        "access denied ({e}); this repository may be gated: accept its terms on the hub and set HF_TOKEN"
                    )));
                }
                return Err(err(format!("{e} (endpoint {})", self.cfg.endpoint)));
            }
        };
        // Up to three attempts. A download cut short (an error mid-stream, or a short file) leaves
        // the bytes it got as hf-hub's partial file, so the next attempt resumes with a Range
        // request where the connection dropped.
        let blob = self
            .cfg
            .cache_dir
            .join(repo.repo().folder_name())
            .join("blobs")
            .join(meta.etag());
        let mut part = blob.clone();
        part.set_extension("part");
        let mut last = String::new();
        let size_of = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let (b, pt) = (blob.clone(), part.clone());
        let progress = move || size_of(&b) + size_of(&pt);
        for _ in 0..3 {
            let (api, r, f) = (self.api.clone(), repo.repo(), file.to_string());
            let got = crate::net::watched_retried(&url, "downloading", &progress, move || {
                api.repo(r.clone()).download(&f)
            })
            .map_err(err)?;
            let path = match got {
                Ok(p) => p,
                Err(e) if part.exists() => {
                    last = e.to_string();
                    continue;
                }
                Err(e) => return Err(err(e.to_string())),
            };
            match verify(&path, meta.size(), meta.etag()) {
                Ok(()) => return Ok(path),
                Err(Short(have)) => {
                    last = format!("got {have} of {} bytes", meta.size());
                    let _ = std::fs::remove_file(&path);
                    std::fs::rename(&blob, &part)
                        .map_err(|e| err(format!("keeping the partial download: {e}")))?;
                }
                Err(Corrupt(why)) => {
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(&blob);
                    return Err(err(format!(
                        "the downloaded file is corrupt ({why}); it was removed"
                    )));
                }
            }
        }
        Err(err(format!("the download did not verify: {last}")))
    }
}

enum Bad {
    Short(u64),
    Corrupt(String),
}
use Bad::{Corrupt, Short};

fn verify(path: &Path, size: usize, etag: &str) -> std::result::Result<(), Bad> {
    let have = std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|e| Corrupt(e.to_string()))?;
    if have < size as u64 {
        return Err(Short(have));
    }
    if have > size as u64 {
        return Err(Corrupt(format!("{have} bytes, expected {size}")));
    }
    if etag.len() == 64 && etag.chars().all(|c| c.is_ascii_hexdigit()) {
        let sha = crate::util::sha256_file(path).map_err(|e| Corrupt(e.to_string()))?;
        if !sha.eq_ignore_ascii_case(etag) {
            return Err(Corrupt(format!(
                "SHA-256 {sha} differs from the hub's {etag}"
            )));
        }
    }
    Ok(())
}

fn is_status(e: &hf_hub::api::sync::ApiError, code: u16) -> bool {
    match e {
        hf_hub::api::sync::ApiError::RequestError(r) => {
            matches!(**r, ureq::Error::StatusCode(c) if c == code)
        }
        _ => false,
    }
}

/// A hub error as a user error when it is about the user's input or environment.
pub fn to_anyhow(e: HubError) -> anyhow::Error {
    match e {
        HubError::NotFound { .. } | HubError::Offline { .. } => user(e.to_string()),
        HubError::Download { .. } => anyhow::Error::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_environment_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(a, _)| *a == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let c = HubConfig::from_lookup(env(&[("HOME", "/h")]));
        assert_eq!(c.cache_dir, PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(c.endpoint, DEFAULT_ENDPOINT);
        assert!(!c.offline && c.token.is_none());
        let c = HubConfig::from_lookup(env(&[
            ("HF_HOME", "/x"),
            ("HF_ENDPOINT", "http://127.0.0.1:9/"),
            ("HF_TOKEN", "hf_abc"),
            ("HF_HUB_OFFLINE", "1"),
        ]));
        assert_eq!(c.cache_dir, PathBuf::from("/x/hub"));
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.token.as_deref(), Some("hf_abc"));
        assert!(c.offline);
        let c = HubConfig::from_lookup(env(&[("HF_HOME", "/x"), ("HF_HUB_CACHE", "/y")]));
        assert_eq!(c.cache_dir, PathBuf::from("/y"));
    }

    #[test]
    fn repo_ids_and_revisions() {
        let r = RepoRef::model("facebook/vit-mae-large@abc123");
        assert_eq!(
            (r.id.as_str(), r.revision.as_str()),
            ("facebook/vit-mae-large", "abc123")
        );
        assert!(RepoRef::looks_like_id("facebook/vit-mae-base"));
        assert!(!RepoRef::looks_like_id("./models/mae"));
        assert!(!RepoRef::looks_like_id("/abs/path"));
        assert_eq!(
            RepoRef::dataset("ilsvrc/imagenet-1k", "main").to_string(),
            "datasets/ilsvrc/imagenet-1k"
        );
    }
}
