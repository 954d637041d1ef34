//! One weights file named directly in an experiment file (`weights: {model: ..., tokenizer:
//! ...}`): a local path (optionally pinned by SHA-256), a URL with its SHA-256 (or pinned on first
//! download), or a hub file; and where a URL's file is cached.

use crate::error::user;
use crate::hub::{Hub, RepoRef};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// One weights file named directly: a local path (`path#sha256=<64 hex>` checks it on every
/// use: committed weights), `https://…#sha256=<64 hex>` (downloaded once
/// into the weights cache and verified), `https://…#sha256=first-download` for an official file
/// whose publisher gives no hash (pinned on its first download, checked after; a warning says so),
/// or `hub:owner/name/path/in/repo[@revision]` (a model
/// repository's file, through the hub client and its cache).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRef {
    Path(PathBuf),
    /// `path#sha256=<hex>`: a local file checked against its SHA-256 on every use (committed
    /// weights).
    Pinned {
        path: PathBuf,
        sha256: String,
    },
    /// `sha256: None`: pinned on first download.
    Url {
        url: String,
        sha256: Option<String>,
    },
    Hub {
        repo: String,
        file: String,
    },
}

impl std::str::FromStr for FileRef {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s.starts_with("http://") || s.starts_with("https://") {
            let (url, frag) = s.split_once("#sha256=").ok_or_else(|| {
                format!("`{s}`: a URL needs its SHA-256 pinned: `{s}#sha256=<64 hex digits>` (or `#sha256=first-download` when no hash is published)")
            })?;
            if frag == FIRST_DOWNLOAD {
                return Ok(FileRef::Url {
                    url: url.to_string(),
                    sha256: None,
                });
            }
            let sha = frag.to_ascii_lowercase();
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "`{s}`: the SHA-256 after `#sha256=` must be 64 hex digits"
                ));
            }
            return Ok(FileRef::Url {
                url: url.to_string(),
                sha256: Some(sha),
            });
        }
        if let Some(rest) = s.strip_prefix("hub:") {
            let parts: Vec<&str> = rest.splitn(3, '/').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.is_empty()) {
                return Err(format!(
                    "`{s}`: expected `hub:owner/name/file` (optionally `@revision` after the name)"
                ));
            }
            return Ok(FileRef::Hub {
                repo: format!("{}/{}", parts[0], parts[1]),
                file: parts[2].to_string(),
            });
        }
        if s.is_empty() {
            return Err("an empty file name".into());
        }
        if let Some((path, frag)) = s.split_once("#sha256=") {
            let sha = frag.to_ascii_lowercase();
            if sha.len() != 64 || !sha.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!(
                    "`{s}`: the SHA-256 after `#sha256=` must be 64 hex digits"
                ));
            }
            return Ok(FileRef::Pinned {
                path: PathBuf::from(path),
                sha256: sha,
            });
        }
        Ok(FileRef::Path(PathBuf::from(s)))
    }
}

impl std::fmt::Display for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileRef::Path(p) => write!(f, "{}", p.display()),
            FileRef::Pinned { path, sha256 } => write!(f, "{}#sha256={sha256}", path.display()),
            FileRef::Url { url, sha256 } => write!(
                f,
                "{url}#sha256={}",
                sha256.as_deref().unwrap_or(FIRST_DOWNLOAD)
            ),
            FileRef::Hub { repo, file } => write!(f, "hub:{repo}/{file}"),
        }
    }
}

impl serde::Serialize for FileRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for FileRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl FileRef {
    /// A relative path resolved against `base` (the experiment file's folder).
    pub fn resolve_relative(&mut self, base: &Path) {
        if let FileRef::Path(p) | FileRef::Pinned { path: p, .. } = self {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }

    /// The local file: the path itself, the cached / downloaded URL (verified against its full
    /// SHA-256), or the hub file.
    pub fn fetch(&self, hub: Option<&Hub>, hub_cfg: &crate::hub::HubConfig) -> Result<PathBuf> {
        match self {
            FileRef::Path(p) => {
                if p.is_file() {
                    Ok(p.clone())
                } else {
                    Err(user(format!("weights file {}: no such file", p.display())))
                }
            }
            FileRef::Pinned { path, sha256 } => {
                if !path.is_file() {
                    return Err(user(format!(
                        "weights file {}: no such file",
                        path.display()
                    )));
                }
                let got = crate::util::sha256_file(path)?;
                if &got != sha256 {
                    return Err(user(format!(
                        "weights file {}: SHA-256 {got} differs from the pinned {sha256} (the file changed; restore it, or pin the new hash)",
                        path.display()
                    )));
                }
                Ok(path.clone())
            }
            FileRef::Url { url, sha256 } => {
                let dest = url_cache_path(url, sha256.as_deref(), hub_cfg);
                let Some(sha256) = sha256 else {
                    let name = dest
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let (path, _, warning) =
                        super::resolve_first_pinned(url, &name, None, hub_cfg)?;
                    if let Some(w) = warning {
                        eprintln!("warning: {w}");
                    }
                    return Ok(path);
                };
                if dest.is_file() {
                    return Ok(dest);
                }
                if hub_cfg.offline {
                    return Err(user(format!(
                        "offline (HF_HUB_OFFLINE is set) and {url} is not cached at {}: run `i2i-unlearn fetch` online first",
                        dest.display()
                    )));
                }
                super::download_verified(url, sha256, &dest)
                    .with_context(|| format!("downloading {url}"))?;
                Ok(dest)
            }
            FileRef::Hub { repo, file } => {
                let hub = hub.context("no hub client")?;
                let r = RepoRef::model(repo);
                if hub.cfg.offline {
                    return hub.cached(&r, file).ok_or_else(|| {
                        crate::hub::to_anyhow(hub.offline_error(&r, &[file.as_str()]))
                    });
                }
                hub.file(&r, file).map_err(crate::hub::to_anyhow)
            }
        }
    }
}

/// Where a URL's file is cached: `<sha256[..16]>-<name>` when pinned, else
/// `first-download-<sha256(url)[..12]>-<name>` (its pin lies beside it).
pub fn url_cache_path(url: &str, sha256: Option<&str>, hub_cfg: &crate::hub::HubConfig) -> PathBuf {
    let name = url_file_name(url);
    super::cache_dir(hub_cfg).join(match sha256 {
        Some(s) => format!("{}-{name}", &s[..16]),
        None => format!(
            "first-download-{}-{name}",
            &crate::util::sha256_hex(url.as_bytes())[..12]
        ),
    })
}

/// `#sha256=first-download`: the URL's file is pinned when first downloaded.
pub const FIRST_DOWNLOAD: &str = "first-download";

/// The last path segment of a URL without its query (`weights` when there is none), a file name
/// for the cache.
pub fn url_file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or("");
    let clean: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    if clean.is_empty() {
        "weights".into()
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_local_file_is_checked_on_use() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("w.safetensors");
        std::fs::write(&p, b"weights").unwrap();
        let sha = crate::util::sha256_hex(b"weights");
        let cfg = crate::hub::HubConfig::from_lookup(|_| None);
        let good: FileRef = format!("{}#sha256={sha}", p.display()).parse().unwrap();
        assert_eq!(good.fetch(None, &cfg).unwrap(), p);
        assert_eq!(good.to_string(), format!("{}#sha256={sha}", p.display()));
        std::fs::write(&p, b"changed").unwrap();
        let e = good.fetch(None, &cfg).unwrap_err();
        assert!(
            format!("{e:#}").contains("differs from the pinned"),
            "{e:#}"
        );
        let bad = format!("{}#sha256=abc", p.display()).parse::<FileRef>();
        assert!(bad.unwrap_err().contains("64 hex digits"));
    }
}
