//! Checkpoints: a hub id (`facebook/vit-mae-large`, optionally `@revision`) or a local folder with
//! `config.json` and `model.safetensors` (or `pytorch_model.bin`), plus an optional
//! `preprocessor_config.json`. `.bin` files are read with candle's pickle reader, which only
//! rebuilds tensors (no pickle code is executed).

use crate::error::user;
use crate::hub::{Hub, HubError, RepoRef};
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

pub use super::file_ref::{url_cache_path, url_file_name, FileRef, FIRST_DOWNLOAD};

/// The files of a checkpoint, resolved to local paths.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// `facebook/vit-mae-large` or the folder, for messages and provenance.
    pub origin: String,
    pub config: PathBuf,
    pub weights: PathBuf,
    pub preprocessor: Option<PathBuf>,
    /// A second weights file of composite models (MAGE's VQ tokenizer), if the layout has one
    /// and it was found.
    pub companion: Option<PathBuf>,
}

impl Checkpoint {
    /// SHA-256 of the weights: of the weights file, or, with a companion file, of the two
    /// files' hashes joined (`sha256(sha_weights + sha_companion)`), so one string pins both.
    pub fn sha256(&self) -> Result<String> {
        let main = crate::util::sha256_file(&self.weights)?;
        match &self.companion {
            None => Ok(main),
            Some(c) => {
                use sha2::Digest;
                let joined = format!("{main}{}", crate::util::sha256_file(c)?);
                Ok(crate::util::hex(&sha2::Sha256::digest(joined.as_bytes())))
            }
        }
    }
}

/// The checkpoint of a file list (composite models): the model file and, optionally, a
/// companion; the architecture comes from the experiment's `config:` (`config` is empty).
pub fn from_files(
    model: &FileRef,
    companion: Option<&FileRef>,
    hub: Option<&Hub>,
    hub_cfg: &crate::hub::HubConfig,
) -> Result<Checkpoint> {
    let weights = model.fetch(hub, hub_cfg)?;
    let companion = companion.map(|c| c.fetch(hub, hub_cfg)).transpose()?;
    Ok(Checkpoint {
        origin: match companion {
            Some(_) => format!("files {model} + companion"),
            None => format!("file {model}"),
        },
        config: PathBuf::new(),
        weights,
        preprocessor: None,
        companion,
    })
}

/// The file names a family's checkpoints use. A name may hold one `*` (any text) when it is
/// looked up in a local folder; hub lookups use only the names without `*`.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The weights file, first match wins.
    pub weights: &'static [&'static str],
    /// An optional second weights file.
    pub companion: &'static [&'static str],
}

/// transformers' layout.
pub const HF_LAYOUT: Layout = Layout {
    weights: &WEIGHT_FILES,
    companion: &[],
};

const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Whether file name `name` matches `pattern` (at most one `*`).
fn matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
    }
}

/// The first file of `dir` matching one of `patterns` (patterns in order, names sorted).
fn find_in(dir: &Path, patterns: &[&str]) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    names.sort();
    patterns
        .iter()
        .find_map(|p| names.iter().find(|n| matches(p, n)))
        .map(|n| dir.join(n))
}

/// Resolve `spec` (a local folder, else a hub id) to local files, downloading what is missing.
pub fn resolve(spec: &str, hub: Option<&Hub>) -> Result<Checkpoint> {
    resolve_layout(spec, hub, &HF_LAYOUT)
}

/// [`resolve`] for a family whose checkpoints use `layout`'s file names.
pub fn resolve_layout(spec: &str, hub: Option<&Hub>, layout: &Layout) -> Result<Checkpoint> {
    let dir = Path::new(spec);
    if dir.is_dir() {
        let config = dir.join("config.json");
        let weights = find_in(dir, layout.weights);
        return match (config.is_file(), weights) {
            (true, Some(weights)) => Ok(Checkpoint {
                origin: dir.display().to_string(),
                config,
                weights,
                preprocessor: Some(dir.join("preprocessor_config.json")).filter(|p| p.is_file()),
                companion: find_in(dir, layout.companion),
            }),
            (c, w) => {
                let mut missing = vec![];
                if !c {
                    missing.push("config.json".to_string());
                }
                if w.is_none() {
                    missing.push(layout.weights.join(" or "));
                }
                Err(user(format!(
                    "model folder {} lacks {}",
                    dir.display(),
                    missing.join(" and ")
                )))
            }
        };
    }
    if !RepoRef::looks_like_id(spec) {
        return Err(user(format!(
            "model `{spec}` is neither a folder nor a hub id like `facebook/vit-mae-base`"
        )));
    }
    let hub = hub.context("no hub client")?;
    let repo = RepoRef::model(spec);
    if hub.cfg.offline {
        // Name everything that is missing at once.
        let config = hub.cached(&repo, "config.json");
        let weights = exact(layout.weights).find_map(|f| hub.cached(&repo, f));
        if config.is_none() || weights.is_none() {
            let mut missing = vec![];
            if config.is_none() {
                missing.push("config.json");
            }
            if weights.is_none() {
                missing.push(exact(layout.weights).next().unwrap_or("weights"));
            }
            return Err(crate::hub::to_anyhow(hub.offline_error(&repo, &missing)));
        }
        return Ok(Checkpoint {
            origin: repo.to_string(),
            config: config.expect("checked"),
            weights: weights.expect("checked"),
            preprocessor: hub.cached(&repo, "preprocessor_config.json"),
            companion: exact(layout.companion).find_map(|f| hub.cached(&repo, f)),
        });
    }
    let config = hub
        .file(&repo, "config.json")
        .map_err(crate::hub::to_anyhow)?;
    let mut weights = None;
    for f in exact(layout.weights) {
        match hub.optional_file(&repo, f) {
            Ok(Some(p)) => {
                weights = Some(p);
                break;
            }
            Ok(None) => continue,
            Err(e) => return Err(crate::hub::to_anyhow(e)),
        }
    }
    let weights = weights.ok_or_else(|| {
        crate::hub::to_anyhow(HubError::NotFound {
            repo: repo.to_string(),
            file: exact(layout.weights).collect::<Vec<_>>().join(" or "),
        })
    })?;
    let preprocessor = hub
        .optional_file(&repo, "preprocessor_config.json")
        .map_err(crate::hub::to_anyhow)?;
    let mut companion = None;
    for f in exact(layout.companion) {
        if let Some(p) = hub.optional_file(&repo, f).map_err(crate::hub::to_anyhow)? {
            companion = Some(p);
            break;
        }
    }
    Ok(Checkpoint {
        origin: repo.to_string(),
        config,
        weights,
        preprocessor,
        companion,
    })
}

/// The names of a list without a `*` (what can be asked of the hub).
fn exact<'a>(names: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    names.iter().copied().filter(|n| !n.contains('*'))
}

/// Every tensor of a safetensors file or a torch file (`.bin`, `.pth`; zip or legacy layout), as
/// f32 (integer tensors such as `num_batches_tracked` are kept as they are).
pub fn load_tensors(path: &Path, device: &Device) -> Result<super::Tensors> {
    to_f32(read_tensors(path, device)?, device)
}

/// Float tensors as f32 on `device`; integer tensors kept as they are.
fn to_f32(raw: Vec<(String, candle_core::Tensor)>, device: &Device) -> Result<super::Tensors> {
    raw.into_iter()
        .map(|(k, v)| {
            let v = if v.dtype().is_float() {
                v.to_dtype(DType::F32)?
            } else {
                v
            };
            Ok((k, v.to_device(device)?))
        })
        .collect()
}

/// The state dict of an official container: `{"model": ...}` (MAGE), `{"state_dict": ...}`
/// (taming), or a plain dict (Palette's `16_Network.pth`) / safetensors file. No pickle code is
/// executed.
pub fn read_container(path: &Path, device: &Device) -> Result<super::Tensors> {
    for key in ["model", "state_dict"] {
        let declared = candle_core::pickle::read_pth_tensor_info(path, false, Some(key));
        if let Some(infos) = declared.ok().filter(|t| !t.is_empty()) {
            super::bounds::check_declared(path, &infos)?;
            if let Ok(t) = candle_core::pickle::read_all_with_key(path, Some(key)) {
                return to_f32(t, device);
            }
        }
    }
    load_tensors(path, device)
}

/// The file name of `p`, for notes (empty when it has none).
pub fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Every tensor of a weights file in its stored dtype, the format sniffed from the content.
pub fn read_tensors(path: &Path, device: &Device) -> Result<Vec<(String, candle_core::Tensor)>> {
    let mut head = [0u8; 16];
    let n = std::io::Read::read(
        &mut std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        &mut head,
    )?;
    let head = &head[..n];
    if head.starts_with(b"PK") {
        super::bounds::check_zip(path, None)?;
        candle_core::pickle::read_all(path)
            .with_context(|| format!("reading torch checkpoint {}", path.display()))
    } else if super::torch_legacy::is_legacy(head) {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        super::torch_legacy::read(&bytes, device)
            .with_context(|| format!("reading legacy torch file {}", path.display()))
    } else {
        let what = || {
            format!(
                "reading {} (neither safetensors nor a torch file)",
                path.display()
            )
        };
        // SAFETY: the map lives until every tensor is copied out of it below; the file changing
        // under it meanwhile is the one risk memmap2 names, as for any reader of a file in use.
        let st =
            unsafe { candle_core::safetensors::MmapedSafetensors::new(path) }.with_context(what)?;
        st.tensors()
            .into_iter()
            .map(|(name, view)| {
                use candle_core::safetensors::Load;
                Ok((name, view.load(device).with_context(what)?))
            })
            .collect()
    }
}

/// `image_mean` / `image_std` of a `preprocessor_config.json`, if present.
pub fn normalisation(pre: Option<&Path>) -> Result<Option<([f64; 3], [f64; 3])>> {
    let Some(p) = pre else { return Ok(None) };
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p)?)
        .with_context(|| format!("parsing {}", p.display()))?;
    let three = |k: &str| -> Option<[f64; 3]> {
        let a = v.get(k)?.as_array()?;
        (a.len() == 3).then(|| {
            [
                a[0].as_f64().unwrap_or(0.0),
                a[1].as_f64().unwrap_or(0.0),
                a[2].as_f64().unwrap_or(0.0),
            ]
        })
    };
    Ok(three("image_mean").zip(three("image_std")))
}
