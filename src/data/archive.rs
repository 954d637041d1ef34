//! Official dataset archives known by URL (Places-365's tar files): downloaded once into the
//! cache (resumed when interrupted, progress on stderr), checked against the MD5 their publisher
//! gives or, where none is published, pinned by SHA-256 on the first download; then streamed
//! member by member so that only what a run needs is extracted. The hash is checked again on
//! every pass, as the bytes stream by: an archive changed on disk fails before anything it held
//! is marked complete.

use crate::error::user;
use anyhow::{Context, Result};
use sha2::Digest;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How an archive's bytes are checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// The publisher's MD5.
    Md5(String),
    /// The SHA-256 recorded on the first download.
    Sha256(String),
    /// A local file the user named: taken as it is.
    Unchecked,
}

impl Expected {
    /// For logs and manifests.
    pub fn describe(&self) -> String {
        match self {
            Expected::Md5(h) => format!("MD5 {h} (published) checked"),
            Expected::Sha256(h) if h.is_empty() => {
                "no published hash: pinned on its first download (not downloaded yet)".into()
            }
            Expected::Sha256(h) => format!(
                "no published hash: SHA-256 {}… pinned on first download and checked",
                &h[..16.min(h.len())]
            ),
            Expected::Unchecked => "a local file, not checked".into(),
        }
    }
}

/// An archive on this machine and how it is checked.
#[derive(Clone, Debug)]
pub struct Local {
    pub path: PathBuf,
    pub expected: Expected,
    /// Set on the first download of a file with no published hash: say so to the user.
    pub warning: Option<String>,
}

enum Hasher {
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    None,
}

impl Hasher {
    fn new(e: &Expected) -> Self {
        match e {
            Expected::Md5(_) => Hasher::Md5(md5::Md5::new()),
            Expected::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            Expected::Unchecked => Hasher::None,
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Md5(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
            Hasher::None => {}
        }
    }
    fn hex(self) -> Option<String> {
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        match self {
            Hasher::Md5(h) => Some(hex(&h.finalize())),
            Hasher::Sha256(h) => Some(hex(&h.finalize())),
            Hasher::None => None,
        }
    }
}

fn hash_file(path: &Path, e: &Expected) -> Result<Option<String>> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Hasher::new(e);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

/// Prints `what: X of Y` on stderr every 10 s while `size()` grows, until dropped.
struct Ticker {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Ticker {
    fn start(what: String, total: Option<u64>, size: impl Fn() -> u64 + Send + 'static) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(10) {
                    last = Instant::now();
                    let of = total
                        .map(|t| format!(" of {}", crate::util::human_bytes(t)))
                        .unwrap_or_default();
                    eprintln!("{what}: {}{of}", crate::util::human_bytes(size()));
                }
            }
        });
        Self { stop }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn is_url(base: &str) -> bool {
    base.starts_with("http://") || base.starts_with("https://")
}

/// How the archive `name` of `base` is (or will be) checked: the published MD5 where there is
/// one; else, for a URL, the SHA-256 pinned on its first download (empty before it); else
/// nothing (a local file the user named).
pub fn expected(base: &str, name: &str, md5: Option<&str>, cache: &Path) -> Expected {
    if let Some(h) = md5 {
        return Expected::Md5(h.into());
    }
    if !is_url(base) {
        return Expected::Unchecked;
    }
    let pin = PathBuf::from(format!("{}.sha256", cache.join(name).display()));
    Expected::Sha256(
        std::fs::read_to_string(pin)
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string(),
    )
}

/// The archive `name` of `base` (a URL folder, or a folder on this machine when `base` does not
/// start with `http://` or `https://`): a local file as it is; a URL's file from `cache`, else
/// downloaded into it (an error when `offline`). `md5` is the publisher's hash, if any.
pub fn resolve(
    base: &str,
    name: &str,
    md5: Option<&str>,
    cache: &Path,
    offline: bool,
) -> Result<Local> {
    if !is_url(base) {
        let path = Path::new(base).join(name);
        if !path.is_file() {
            return Err(user(format!(
                "{}: no such file (the source's `base` is a folder on this machine)",
                path.display()
            )));
        }
        return Ok(Local {
            path,
            expected: expected(base, name, md5, cache),
            warning: None,
        });
    }
    let url = format!("{}/{name}", base.trim_end_matches('/'));
    let dest = cache.join(name);
    if dest.is_file() {
        return Ok(Local {
            path: dest,
            expected: expected(base, name, md5, cache),
            warning: None,
        });
    }
    if offline {
        return Err(user(format!(
            "offline (HF_HUB_OFFLINE is set) and {name} is not cached at {}: run `i2i-unlearn fetch` online once, or set the source's `base` to a folder holding the official files",
            dest.display()
        )));
    }
    let total = crate::weights::remote_size(&url);
    let part = PathBuf::from(format!("{}.part", dest.display()));
    let size_of = move || std::fs::metadata(&part).map_or(0, |m| m.len());
    let ticker = Ticker::start(format!("downloading {url}"), total, size_of);
    let mut sha = None;
    crate::weights::download_checked(&url, &dest, |part| {
        match md5 {
            Some(h) => {
                let got = hash_file(part, &Expected::Md5(h.into()))?.unwrap_or_default();
                anyhow::ensure!(
                    got == h,
                    "{url}: MD5 {got} differs from the published {h}; the file was removed"
                );
            }
            None => sha = Some(crate::util::sha256_file(part)?),
        }
        Ok(())
    })
    .with_context(|| format!("downloading {url}"))?;
    drop(ticker);
    let pin = PathBuf::from(format!("{}.sha256", dest.display()));
    let warning = match sha {
        Some(s) => {
            crate::util::write_atomic(&pin, format!("{s}  {name}\n").as_bytes())?;
            Some(format!(
                "{name}: no published hash to check {url} against; pinned on first download as SHA-256 {s} (in {}): later passes check it",
                pin.display()
            ))
        }
        None => None,
    };
    Ok(Local {
        path: dest,
        expected: expected(base, name, md5, cache),
        warning,
    })
}

/// A reader that hashes what passes through it and counts the bytes.
struct Tee<R> {
    inner: R,
    hasher: Hasher,
    read: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

/// Called for each regular-file member of a tar stream: its path (without a leading `./`) and
/// its bytes when they were asked for.
pub type MemberFn<'a> = dyn FnMut(&str, Option<Vec<u8>>) -> Result<()> + 'a;

/// Walk the tar stream `r`: `f(path, bytes)` for each regular-file member, in archive order.
/// Only members `want(path)` accepts are read into memory.
pub fn walk_members(
    r: impl Read,
    want: &mut dyn FnMut(&str) -> bool,
    f: &mut MemberFn<'_>,
) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    for e in ar.entries().context("reading the tar archive")? {
        let mut e = e.context("reading a tar member")?;
        if !e.header().entry_type().is_file() {
            continue;
        }
        let name = e
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        let bytes = if want(&name) {
            let mut b = Vec::with_capacity(e.size() as usize);
            e.read_to_end(&mut b)
                .with_context(|| format!("reading member {name}"))?;
            Some(b)
        } else {
            None
        };
        f(&name, bytes)?;
    }
    Ok(())
}

/// One pass over the archive `a` ([`walk_members`]), progress on stderr, then its hash checked
/// over every byte (the tar padding after the end marker included), when it has one: an error
/// then means nothing the pass read may be trusted.
fn pass(a: &Local, want: &mut dyn FnMut(&str) -> bool, f: &mut MemberFn<'_>) -> Result<()> {
    let file =
        std::fs::File::open(&a.path).with_context(|| format!("opening {}", a.path.display()))?;
    let total = file.metadata().map(|m| m.len()).ok();
    let read = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let r2 = read.clone();
    let _ticker = Ticker::start(format!("reading {}", a.path.display()), total, move || {
        r2.load(std::sync::atomic::Ordering::Relaxed)
    });
    let mut tee = Tee {
        inner: std::io::BufReader::with_capacity(1 << 20, file),
        hasher: Hasher::new(&a.expected),
        read,
    };
    walk_members(&mut tee, want, f)
        .with_context(|| format!("reading the tar archive {}", a.path.display()))?;
    std::io::copy(&mut tee, &mut std::io::sink())?;
    check_hash(a, tee.hasher.hex())
}

/// Stream the tar archive `a`: each regular member whose path `dest` maps to a file is written
/// there (through a temporary sibling, so a killed pass leaves no partial file under the final
/// name). The archive's hash is checked at the end, when it has one; an error then means nothing
/// extracted may be trusted. Returns the number written.
pub fn extract(a: &Local, dest: &mut dyn FnMut(&str) -> Option<PathBuf>) -> Result<usize> {
    let next = std::cell::Cell::new(None::<PathBuf>);
    let mut written = 0;
    pass(
        a,
        &mut |name| {
            let to = dest(name);
            let hit = to.is_some();
            next.set(to);
            hit
        },
        &mut |_, bytes| {
            let (Some(to), Some(bytes)) = (next.take(), bytes) else {
                return Ok(());
            };
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            let tmp = crate::util::temp_sibling(&to, "");
            std::fs::write(&tmp, &bytes).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &to)
                .with_context(|| format!("renaming into {}", to.display()))?;
            written += 1;
            Ok(())
        },
    )?;
    Ok(written)
}

fn check_hash(a: &Local, got: Option<String>) -> Result<()> {
    let want = match &a.expected {
        Expected::Md5(h) | Expected::Sha256(h) if !h.is_empty() => h,
        _ => return Ok(()),
    };
    let got = got.unwrap_or_default();
    if &got != want {
        return Err(user(format!(
            "{}: hash {got} differs from the expected {want} ({}): the file is damaged or not the official one; delete it to download it again",
            a.path.display(),
            a.expected.describe()
        )));
    }
    Ok(())
}

/// The members of a small tar archive whose file names (last path component) are in `names`,
/// as text.
pub fn read_text_members(a: &Local, names: &[&str]) -> Result<Vec<(String, String)>> {
    let base = |p: &str| p.rsplit('/').next().unwrap_or(p).to_string();
    let mut out = vec![];
    pass(
        a,
        &mut |p| names.contains(&base(p).as_str()),
        &mut |p, bytes| {
            if let Some(b) = bytes {
                let text =
                    String::from_utf8(b).with_context(|| format!("reading member {p} as text"))?;
                out.push((base(p), text));
            }
            Ok(())
        },
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(members: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (p, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extracts_what_is_asked_and_checks_the_hash() {
        let d = tempfile::tempdir().unwrap();
        let bytes = tar_of(&[
            ("top/a.txt", b"alpha"),
            ("top/b.txt", b"beta"),
            ("l.txt", b"x 1\n"),
        ]);
        std::fs::write(d.path().join("t.tar"), &bytes).unwrap();
        let md5 = hash_file(&d.path().join("t.tar"), &Expected::Md5(String::new()))
            .unwrap()
            .unwrap();
        let a = resolve(
            d.path().to_str().unwrap(),
            "t.tar",
            Some(&md5),
            d.path(),
            true,
        )
        .unwrap();
        let out = d.path().join("out");
        let n = extract(&a, &mut |m| (m == "top/b.txt").then(|| out.join("b"))).unwrap();
        assert_eq!(n, 1);
        assert_eq!(std::fs::read(out.join("b")).unwrap(), b"beta");
        assert!(!out.join("a").exists());
        let t = read_text_members(&a, &["l.txt"]).unwrap();
        assert_eq!(t, [("l.txt".to_string(), "x 1\n".to_string())]);
        // A wrong hash is found on the pass.
        let bad = Local {
            expected: Expected::Md5("0".repeat(32)),
            ..a
        };
        let e = extract(&bad, &mut |_| None).unwrap_err();
        assert!(
            format!("{e:#}").contains("differs from the expected"),
            "{e:#}"
        );
        // A local base without the file names it.
        let e = resolve(d.path().to_str().unwrap(), "nope.tar", None, d.path(), true).unwrap_err();
        assert!(format!("{e:#}").contains("nope.tar: no such file"), "{e:#}");
    }
}
