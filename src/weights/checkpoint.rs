//! Checkpoints: a hub id (`facebook/vit-mae-large`, optionally `@revision`) or a local folder with
//! `config.json` and `model.safetensors` (or `pytorch_model.bin`), plus an optional
//! `preprocessor_config.json`. `.bin` files are read with candle's pickle reader, which only
//! rebuilds tensors (no pickle code is executed).

use crate::error::user;
use crate::hub::{Hub, HubError, RepoRef};
use anyhow::{Context, Result};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

/// The files of a checkpoint, resolved to local paths.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// `facebook/vit-mae-large` or the folder, for messages and provenance.
    pub origin: String,
    pub config: PathBuf,
    pub weights: PathBuf,
    pub preprocessor: Option<PathBuf>,
}

const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Resolve `spec` (a local folder, else a hub id) to local files, downloading what is missing.
pub fn resolve(spec: &str, hub: Option<&Hub>) -> Result<Checkpoint> {
    let dir = Path::new(spec);
    if dir.is_dir() {
        let config = dir.join("config.json");
        let weights = WEIGHT_FILES
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.is_file());
        return match (config.is_file(), weights) {
            (true, Some(weights)) => Ok(Checkpoint {
                origin: dir.display().to_string(),
                config,
                weights,
                preprocessor: Some(dir.join("preprocessor_config.json")).filter(|p| p.is_file()),
            }),
            (c, w) => {
                let mut missing = vec![];
                if !c {
                    missing.push("config.json".to_string());
                }
                if w.is_none() {
                    missing.push("model.safetensors (or pytorch_model.bin)".to_string());
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
        let weights = WEIGHT_FILES.iter().find_map(|f| hub.cached(&repo, f));
        if config.is_none() || weights.is_none() {
            let mut missing = vec![];
            if config.is_none() {
                missing.push("config.json");
            }
            if weights.is_none() {
                missing.push("model.safetensors");
            }
            return Err(crate::hub::to_anyhow(hub.offline_error(&repo, &missing)));
        }
        return Ok(Checkpoint {
            origin: repo.to_string(),
            config: config.expect("checked"),
            weights: weights.expect("checked"),
            preprocessor: hub.cached(&repo, "preprocessor_config.json"),
        });
    }
    let config = hub
        .file(&repo, "config.json")
        .map_err(crate::hub::to_anyhow)?;
    let mut weights = None;
    for f in WEIGHT_FILES {
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
            file: "model.safetensors or pytorch_model.bin".into(),
        })
    })?;
    let preprocessor = hub
        .optional_file(&repo, "preprocessor_config.json")
        .map_err(crate::hub::to_anyhow)?;
    Ok(Checkpoint {
        origin: repo.to_string(),
        config,
        weights,
        preprocessor,
    })
}

/// Every tensor of a safetensors file or a torch file (`.bin`, `.pth`; zip or legacy layout), as
/// f32 (integer tensors such as `num_batches_tracked` are kept as they are).
pub fn load_tensors(path: &Path, device: &Device) -> Result<super::Tensors> {
    let raw = read_tensors(path, device)?;
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

/// Every tensor of a weights file in its stored dtype, the format sniffed from the content.
pub fn read_tensors(path: &Path, device: &Device) -> Result<Vec<(String, candle_core::Tensor)>> {
    let mut head = [0u8; 16];
    let n = std::io::Read::read(
        &mut std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        &mut head,
    )?;
    let head = &head[..n];
    if head.starts_with(b"PK") {
        candle_core::pickle::read_all(path)
            .with_context(|| format!("reading torch checkpoint {}", path.display()))
    } else if super::torch_legacy::is_legacy(head) {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        super::torch_legacy::read(&bytes, device)
            .with_context(|| format!("reading legacy torch file {}", path.display()))
    } else {
        Ok(candle_core::safetensors::load(path, device)
            .with_context(|| {
                format!(
                    "reading {} (neither safetensors nor a torch file)",
                    path.display()
                )
            })?
            .into_iter()
            .collect())
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
