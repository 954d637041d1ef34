//! Small shared helpers: stable hashing, deterministic random numbers, atomic file writes.

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::Path;

/// The largest absolute element-wise difference of two tensors of the same shape (compared in
/// f32): what parity checks and tests measure.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> candle_core::Result<f32> {
    use candle_core::DType;
    if a.dims() != b.dims() {
        candle_core::bail!("shapes differ: {:?} vs {:?}", a.dims(), b.dims());
    }
    (a.to_dtype(DType::F32)? - b.to_dtype(DType::F32)?)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()
}

/// [`max_abs_diff`] relative to the largest |`reference`| element, which is floored at `floor`.
pub fn max_rel_diff(
    ours: &candle_core::Tensor,
    reference: &candle_core::Tensor,
    floor: f32,
) -> candle_core::Result<f32> {
    let scale = reference
        .to_dtype(candle_core::DType::F32)?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?
        .max(floor);
    Ok(max_abs_diff(ours, reference)? / scale)
}

/// SplitMix64 finaliser: a cheap, well-mixed, platform-independent 64-bit hash.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a, 64 bit.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Mix several values into one seed.
pub fn mix(parts: &[u64]) -> u64 {
    parts.iter().fold(0x1234_5678_9abc_def0u64, |acc, &p| {
        splitmix64(acc ^ splitmix64(p))
    })
}

/// A deterministic RNG for a named purpose (`"pretrain"`, `"unlearn"` …) and seed.
pub fn rng(purpose: &str, seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(mix(&[fnv1a64(purpose.as_bytes()), seed]))
}

/// Standard normal samples (Box–Muller), deterministic for the RNG state.
pub fn normal_vec(rng: &mut impl Rng, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n + 1);
    while out.len() < n {
        let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        out.push((r * t.cos()) as f32);
        out.push((r * t.sin()) as f32);
    }
    out.truncate(n);
    out
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(bytes);
    hex(&h.finalize())
}

/// Hex SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Content hash of a serialisable value: SHA-256 of its canonical JSON (object keys sorted).
pub fn content_hash<T: serde::Serialize>(value: &T) -> String {
    let v = serde_json::to_value(value).expect("serialisable");
    sha256_hex(serde_json::to_string(&v).expect("json").as_bytes())
}

/// The temporary sibling an atomic write of `path` fills: `.<name>.tmp<pid>-<n><suffix>`, hidden,
/// unique to this process and call (`suffix`: an extension a writer needs, such as `.png`). The
/// one place the name is made; [`clean_stale_temps`] recognises it.
pub fn temp_sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    dir.join(format!(
        ".{}.tmp{}-{}{suffix}",
        path.file_name().and_then(|s| s.to_str()).unwrap_or("file"),
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// Remove the temporary files of atomic writes (`.<name>.tmp<pid>-<n>…`) left in `dir` (not
/// below it) by a killed process: those last modified more than `age` ago (a live writer
/// touches its file within moments, whichever host it runs on). Returns how many were removed.
pub fn clean_stale_temps(dir: &Path, age: std::time::Duration) -> usize {
    let is_temp = |name: &str| {
        name.starts_with('.')
            && name.find(".tmp").is_some_and(|i| {
                let rest = &name[i + 4..];
                let (pid, tail) = rest.split_once('-').unwrap_or(("", ""));
                !pid.is_empty()
                    && pid.chars().all(|c| c.is_ascii_digit())
                    && tail.chars().next().is_some_and(|c| c.is_ascii_digit())
            })
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let old = e
            .metadata()
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| m.modified().ok())
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|d| d > age);
        if is_temp(&name) && old && std::fs::remove_file(e.path()).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// How old a temporary file must be before [`clean_stale_temps`] removes it.
pub const STALE_TEMP_AGE: std::time::Duration = std::time::Duration::from_secs(600);

/// Write a file atomically: `write` fills a temporary sibling (hidden, unique to this process and
/// call), which is synced and renamed over `path`; a crash leaves either the old file or the new
/// one, never a part. The one place every writer of results, caches and weights goes through.
pub fn write_atomic_with(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = temp_sibling(path, "");
    // The permissions a plain File::create gets here (0666 less the umask): some writers (the
    // safetensors crate) create 0600 files, which breaks caches shared by a group.
    let perms = std::fs::File::create(&tmp)
        .and_then(|f| f.metadata())
        .map(|m| m.permissions())
        .ok();
    std::fs::remove_file(&tmp).ok();
    if let Err(e) = write(&tmp) {
        std::fs::remove_file(&tmp).ok();
        return Err(e);
    }
    if let Some(p) = perms {
        std::fs::set_permissions(&tmp, p).ok();
    }
    if let Ok(f) = std::fs::File::open(&tmp) {
        f.sync_all().ok();
    }
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        d.sync_all().ok();
    }
    Ok(())
}

/// [`write_atomic_with`] for bytes in memory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |tmp| {
        let mut f =
            std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(bytes)
            .with_context(|| format!("writing {}", tmp.display()))?;
        Ok(())
    })
}

/// Bytes for a person: `812 B`, `95.6 MB`, `1.20 GB` (powers of 1000, as download pages state
/// sizes).
pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2} GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1} MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1} kB", f / 1e3)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files written through the atomic helper get the umask's permissions even when the writer
    /// creates them private (as the safetensors crate does), so a group can share a cache.
    #[cfg(unix)]
    #[test]
    fn atomic_writes_respect_the_umask() {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let d = tempfile::tempdir().unwrap();
        let plain = d.path().join("plain");
        std::fs::File::create(&plain).unwrap();
        let want = std::fs::metadata(&plain).unwrap().permissions().mode() & 0o777;
        let target = d.path().join("out.bin");
        write_atomic_with(&target, |tmp| {
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(tmp)?;
            Ok(())
        })
        .unwrap();
        let got = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, want);
    }

    #[test]
    fn splitmix_matches_reference_values() {
        // Reference: the first outputs of the SplitMix64 generator seeded with 0 are the finaliser
        // applied to 0x9E3779B97F4A7C15 * k; the finaliser of 0 is 0xE220A8397B1DCDAF.
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
    }

    #[test]
    fn content_hash_ignores_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(content_hash(&a), content_hash(&b));
    }

    #[test]
    fn atomic_write_replaces_whole_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x/y.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }
}
