//! Stored weights sealed with their hash: every weights file the harness stores (pre-trained
//! originals and oracles and domain extractors in the cache, unlearned models in a results
//! folder) gets a `<file>.sha256` beside it, in `sha256sum`'s format, written after the file.
//! Loading re-hashes the file and compares: a file changed or corrupted since it was written is
//! [`Stale`] (its callers warn, remove it and compute it again), never used.

use crate::models::Weights;
use anyhow::{Context, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};

/// A stored artefact that no longer matches what was recorded about it (its hash, its key, the
/// original model it came from). The message says what differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale(pub String);

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stale {}

/// Whether an error says a stored artefact is stale.
pub fn is_stale(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<Stale>().is_some())
}

/// The seal of `path`: `<path>.sha256`.
pub fn seal_path(path: &Path) -> PathBuf {
    PathBuf::from(format!("{}.sha256", path.display()))
}

/// The SHA-256 recorded for `path`, if it has a seal.
pub fn recorded(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(seal_path(path)).ok()?;
    let hex = text.split_whitespace().next()?.to_ascii_lowercase();
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Write `weights` to `path` (atomically), then its seal; returns the SHA-256.
pub fn save(weights: &Weights, path: &Path) -> Result<String> {
    crate::models::save_weights(weights, path)?;
    seal(path)
}

/// Hash `path` and write its seal; returns the SHA-256.
pub fn seal(path: &Path) -> Result<String> {
    let sha = crate::util::sha256_file(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    crate::util::write_atomic(&seal_path(path), format!("{sha}  {name}\n").as_bytes())?;
    Ok(sha)
}

/// `Ok(sha)` when `path` matches its seal (or has none yet: sealed now, as it is trusted on
/// first use), a [`Stale`] error when it does not.
pub fn check(path: &Path) -> Result<String> {
    let Some(want) = recorded(path) else {
        return seal(path);
    };
    let got = crate::util::sha256_file(path)?;
    if got != want {
        return Err(anyhow::Error::new(Stale(format!(
            "{} changed since it was written (SHA-256 {}… where {}… was recorded)",
            path.display(),
            &got[..12],
            &want[..12]
        ))));
    }
    Ok(got)
}

/// Load weights stored by [`save`], checked against their seal first; with their SHA-256.
pub fn load(path: &Path, device: &Device) -> Result<(Weights, String)> {
    let sha = check(path)?;
    Ok((crate::models::load_weights(path, device)?, sha))
}

/// Remove a stale artefact and its seal.
pub fn remove(path: &Path) {
    std::fs::remove_file(path).ok();
    std::fs::remove_file(seal_path(path)).ok();
}

/// [`check`] for `verify`: `None` when sound, else what is wrong (a missing seal counts).
pub fn verify(path: &Path) -> Option<String> {
    let Some(want) = recorded(path) else {
        return Some(format!(
            "{}: no seal ({}.sha256)",
            path.display(),
            path.display()
        ));
    };
    match crate::util::sha256_file(path).context("hashing") {
        Ok(got) if got == want => None,
        Ok(got) => Some(format!(
            "{}: SHA-256 {}… differs from the recorded {}…",
            path.display(),
            &got[..12],
            &want[..12]
        )),
        Err(e) => Some(format!("{}: {e:#}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_file_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.safetensors");
        let w: Weights = [(
            "a".to_string(),
            candle_core::Tensor::new(&[1f32, 2.0], &Device::Cpu).unwrap(),
        )]
        .into_iter()
        .collect();
        let sha = save(&w, &p).unwrap();
        assert_eq!(check(&p).unwrap(), sha);
        assert!(verify(&p).is_none());
        let mut bytes = std::fs::read(&p).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&p, bytes).unwrap();
        let e = load(&p, &Device::Cpu).map(|_| ()).unwrap_err();
        assert!(is_stale(&e), "{e:#}");
        assert!(verify(&p).is_some());
        remove(&p);
        assert!(!p.exists() && !seal_path(&p).exists());
    }
}
