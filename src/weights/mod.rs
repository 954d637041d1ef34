//! Reading weights, for model families and metric networks alike (a leaf module: no model or
//! metric code in here).
//!
//! - [`checkpoint`]: hub ids and checkpoint folders resolved to local files; safetensors and
//!   torch pickles (zip or [`torch_legacy`] layout) read without executing pickle code.
//! - This file: weight files that live at a URL rather than on the hub (the FID Inception
//!   weights, torchvision's Inception): downloaded once into the hub cache folder, resumed if
//!   interrupted, verified against the SHA-256 prefix in their name (as `torch.hub` checks them),
//!   then used offline. `--weights` takes a local file instead.

pub mod bounds;
pub mod checkpoint;
pub mod file_ref;
pub mod shapes;
pub mod torch_legacy;

/// Named tensors, sorted by name (the form every reader here returns).
pub type Tensors = std::collections::BTreeMap<String, candle_core::Tensor>;

use crate::error::user;
use crate::hub::HubConfig;
use anyhow::{Context, Result};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// A file known by URL and the hash prefix its publisher put in its name.
#[derive(Clone, Copy, Debug)]
pub struct WeightsFile {
    pub name: &'static str,
    pub url: &'static str,
    pub sha256_prefix: &'static str,
}

/// pytorch-fid's FID Inception weights (the TF-Inception graph of 2015-12-05, ported to torch).
pub const FID_INCEPTION: WeightsFile = WeightsFile {
    name: "pt_inception-2015-12-05-6726825d.pth",
    url: "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
    sha256_prefix: "6726825d",
};

/// torchvision's ImageNet InceptionV3 (`Inception_V3_Weights.IMAGENET1K_V1`), used by the paper's
/// official Inception Score code.
pub const TORCHVISION_INCEPTION: WeightsFile = WeightsFile {
    name: "inception_v3_google-0cc3c7bd.pth",
    url: "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
    sha256_prefix: "0cc3c7bd",
};

/// Where downloaded weights are kept: `<hub cache>/i2i-unlearn-weights/`.
pub fn cache_dir(hub: &HubConfig) -> PathBuf {
    hub.cache_dir.join("i2i-unlearn-weights")
}

/// The local path of `file`: `explicit` if given (must exist), else the cached copy, else a
/// download (an error when offline).
pub fn resolve(file: &WeightsFile, explicit: Option<&Path>, hub: &HubConfig) -> Result<PathBuf> {
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(user(format!("--weights {}: no such file", p.display())));
        }
        return Ok(p.to_path_buf());
    }
    let dest = cache_dir(hub).join(file.name);
    if dest.is_file() {
        return Ok(dest);
    }
    if hub.offline {
        return Err(user(format!(
            "offline (HF_HUB_OFFLINE is set) and {} is not cached at {}: download it once ({}) or pass --weights FILE",
            file.name,
            dest.display(),
            file.url
        )));
    }
    download_verified(file.url, file.sha256_prefix, &dest)
        .with_context(|| format!("downloading {} (or pass --weights FILE)", file.url))?;
    Ok(dest)
}

/// A file known only by its URL (its publisher gives no hash): downloaded once into the weights
/// cache as `name`, its SHA-256 recorded beside it (`<name>.sha256`) on that first download and
/// checked on every later use ("pinned on first download"). `explicit` (a local file) wins.
/// Returns the path, its SHA-256 and, on the first download only, a warning to show the user.
pub fn resolve_first_pinned(
    url: &str,
    name: &str,
    explicit: Option<&Path>,
    hub: &HubConfig,
) -> Result<(PathBuf, String, Option<String>)> {
    if let Some(p) = explicit {
        if !p.is_file() {
            return Err(user(format!("weights file {}: no such file", p.display())));
        }
        return Ok((p.to_path_buf(), crate::util::sha256_file(p)?, None));
    }
    let dest = cache_dir(hub).join(name);
    let pin = PathBuf::from(format!("{}.sha256", dest.display()));
    if dest.is_file() {
        let sha = crate::util::sha256_file(&dest)?;
        let pinned = std::fs::read_to_string(&pin).unwrap_or_default();
        let pinned = pinned.split_whitespace().next().unwrap_or("");
        if !pinned.is_empty() && pinned != sha {
            return Err(user(format!(
                "{}: SHA-256 {sha} differs from {pinned}, pinned when it was first downloaded from {url}: delete both files to download it again",
                dest.display()
            )));
        }
        return Ok((dest, sha, None));
    }
    if hub.offline {
        return Err(user(format!(
            "offline (HF_HUB_OFFLINE is set) and {name} is not cached at {}: download it once ({url}) or give a local file",
            dest.display()
        )));
    }
    download_verified(url, "", &dest).with_context(|| format!("downloading {url}"))?;
    let sha = crate::util::sha256_file(&dest)?;
    crate::util::write_atomic(&pin, format!("{sha}  {name}\n").as_bytes())?;
    let warning = format!(
        "{name}: no published SHA-256 to check {url} against; pinned on first download as {sha} (in {}): later runs check this hash",
        pin.display()
    );
    Ok((dest, sha, Some(warning)))
}

/// Download `url` to `dest`: into `dest.part` (resuming a previous partial download with a Range
/// request), check that the SHA-256 starts with `sha256_prefix`, then rename.
pub fn download_verified(url: &str, sha256_prefix: &str, dest: &Path) -> Result<()> {
    download_checked(url, dest, |part| {
        let sha = crate::util::sha256_file(part)?;
        anyhow::ensure!(
            sha.starts_with(sha256_prefix),
            "{url}: SHA-256 {sha} does not start with the expected {sha256_prefix}; the file was removed"
        );
        Ok(())
    })
}

/// Download `url` to `dest`: into `dest.part` (resuming a previous partial download with a Range
/// request); `check(part)` then decides (an error removes the part), and the part is renamed.
pub fn download_checked(
    url: &str,
    dest: &Path,
    check: impl FnOnce(&Path) -> Result<()>,
) -> Result<()> {
    let dir = dest.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let part = PathBuf::from(format!("{}.part", dest.display()));
    // The size, from a one-byte range request, so a connection that ends early is noticed even
    // when the body is chunked.
    let size = remote_size(url);
    let mut last_err = None;
    let size_of = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    for _ in 0..3 {
        let (u, pt) = (url.to_string(), part.clone());
        let got = crate::net::watched_retried(
            url,
            "downloading",
            || size_of(&part),
            move || fetch_into(&u, &pt, size_of(&pt), size).map_err(|e| format!("{e:#}")),
        )
        .map_err(anyhow::Error::msg)?;
        match got.map_err(anyhow::Error::msg) {
            Ok(()) => {
                last_err = None;
                break;
            }
            Err(e) => last_err = Some(e),
        }
    }
    if let Some(e) = last_err {
        return Err(e.context(
            "the download failed three times (the partial file is kept for the next try)",
        ));
    }
    if let Err(e) = check(&part) {
        std::fs::remove_file(&part).ok();
        return Err(e);
    }
    std::fs::rename(&part, dest).with_context(|| format!("renaming into {}", dest.display()))?;
    Ok(())
}

/// `Content-Range: bytes 0-0/TOTAL` of a one-byte request, if the server supports ranges.
pub fn remote_size(url: &str) -> Option<u64> {
    let u = url.to_string();
    let resp = crate::net::watched(
        || 0,
        move || {
            ureq::Agent::new_with_defaults()
                .get(&u)
                .header("Range", "bytes=0-0")
                .call()
        },
    )?
    .ok()?;
    let r = resp
        .headers()
        .get("content-range")?
        .to_str()
        .ok()?
        .to_string();
    r.rsplit('/').next()?.trim().parse().ok()
}

fn fetch_into(url: &str, part: &Path, have: u64, size: Option<u64>) -> Result<()> {
    let agent = ureq::Agent::new_with_defaults();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", &format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let append = have > 0 && status == 206;
    let header = |k: &str| {
        resp.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    // The full size: from `Content-Range: bytes a-b/total` on a resumed request, else the length.
    let total: Option<u64> = size.or_else(|| {
        header("content-range")
            .and_then(|r| r.rsplit('/').next().and_then(|t| t.trim().parse().ok()))
            .or_else(|| {
                header("content-length")
                    .and_then(|l| l.trim().parse::<u64>().ok())
                    .map(|l| if append { l + have } else { l })
            })
    });
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(append)
        .write(true)
        .truncate(!append)
        .open(part)
        .with_context(|| format!("opening {}", part.display()))?;
    let (_, body) = resp.into_parts();
    let mut reader = body.into_reader();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader
            .read(&mut buf)
            .with_context(|| format!("reading {url}"))?;
        if n == 0 {
            break;
        }
        f.write_all(&buf[..n])?;
    }
    f.sync_all().ok();
    let got = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if let Some(t) = total {
        anyhow::ensure!(
            got >= t,
            "{url}: the connection ended at {got} of {t} bytes"
        );
    }
    Ok(())
}
