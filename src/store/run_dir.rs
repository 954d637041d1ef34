//! The results folder of a run and the cache folder, as one owner of every path in them: cell
//! records (`cells/`), unlearned models (`unlearned/`), sample sheets (`samples/`), t-SNE
//! embeddings (`embeddings/`), manifests, claims; and the claim-guarded "get or make" of cached
//! artefacts (pre-trained originals, domain extractors).

use super::claim::Claim;
use crate::config::grid::Cell;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// A results folder.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
}

impl RunDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
    /// A finished cell's record.
    pub fn cell(&self, id: &str) -> PathBuf {
        self.dir.join("cells").join(format!("{id}.json"))
    }
    pub fn cells(&self) -> PathBuf {
        self.dir.join("cells")
    }
    /// An unlearned model's parameters and its training log (written last).
    pub fn unlearned(&self, key: &str) -> (PathBuf, PathBuf) {
        let dir = self.dir.join("unlearned");
        (
            dir.join(format!("{key}.safetensors")),
            dir.join(format!("{key}.json")),
        )
    }
    /// The boundary solutions `controllable` computes once for every ε of a `boundary_key`.
    pub fn boundary(&self, key: &str) -> PathBuf {
        self.dir
            .join("unlearned")
            .join(format!("boundary-{key}.json"))
    }
    /// A cell's sample sheet, named for a person: `samples/<dataset>_<model>/<method>_<mask>_a<α>_s<seed>.png`.
    pub fn sample_sheet(&self, cell: &Cell) -> PathBuf {
        let alpha = cell.alpha.map(|a| format!("_a{a}")).unwrap_or_default();
        let name = format!(
            "{}_{}{alpha}_s{}.png",
            cell.method_key(),
            cell.mask,
            cell.seed
        );
        self.dir
            .join("samples")
            .join(readable(&format!("{}_{}", cell.dataset, cell.model)))
            .join(readable(&name))
    }
    /// A cell's images for the qualitative figure: `figure/<cell id>/<set>_<position>_<kind>.png`
    /// (`kind`: masked, output, truth).
    pub fn figure_image(&self, id: &str, set: &str, position: usize, kind: &str) -> PathBuf {
        self.figure_dir(id)
            .join(format!("{set}_{position}_{kind}.png"))
    }
    /// A cell's folder of figure images, with `rows.json` (each row's set, position, class).
    pub fn figure_dir(&self, id: &str) -> PathBuf {
        self.dir.join("figure").join(id)
    }
    /// A cell's embeddings for the t-SNE figure.
    pub fn embeddings(&self, id: &str) -> PathBuf {
        self.dir
            .join("embeddings")
            .join(format!("{id}.safetensors"))
    }
    /// A cache entry this folder's results depend on (a pre-training, a domain extractor),
    /// recorded as `uses/<file name>.sha256`: its SHA-256 and absolute path, for `verify`.
    pub fn uses(&self, file_name: &str) -> PathBuf {
        self.dir.join("uses").join(format!("{file_name}.sha256"))
    }
    /// The claims of workers sharing this folder (see [`super::claim`]).
    pub fn claims(&self) -> PathBuf {
        self.dir.join("claims")
    }
    /// The grid's cells (`report` uses the records of these only).
    pub fn grid(&self) -> PathBuf {
        self.dir.join("grid.json")
    }
    /// The resolved experiment.
    pub fn experiment(&self) -> PathBuf {
        self.dir.join("experiment.yaml")
    }
    /// The last run's summary and phase timings.
    pub fn last_run(&self) -> PathBuf {
        self.dir.join("last_run.json")
    }
    /// A dataset's manifest (classes and images requested, found, used, failed).
    pub fn data_manifest(&self, dataset: &str) -> PathBuf {
        self.dir.join(format!("data-{dataset}.json"))
    }
    /// The decoder probe of the original model of a (dataset, model).
    pub fn map_probe(&self, dataset: &str, model: &str) -> PathBuf {
        self.dir.join(format!("map-probe-{dataset}-{model}.json"))
    }
    /// The original model's quality gate of a (dataset, model).
    pub fn gate(&self, dataset: &str, model: &str) -> PathBuf {
        self.dir.join(format!("gate-{dataset}-{model}.json"))
    }
    /// Remove `claims/` once no worker holds a claim in it (a finished run leaves none).
    pub fn drop_claims_folder(&self) {
        std::fs::remove_dir(self.claims()).ok();
    }
}

/// `s` with the characters a file name should not hold (`:`, `+`, `/`, spaces …) as `-`.
fn readable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The cached artefact at `path`: read if it is there, else made by the one worker that holds
/// the claim `<claims>/<name>.claim` (others wait for it, saying so through `on_wait`, then
/// read what it made). `make` writes the file and returns the value. A stored file that `read`
/// finds [stale](super::sealed::Stale) is reported through `on_stale`, removed and made again.
pub fn get_or_make<T>(
    path: &Path,
    claims: &Path,
    name: &str,
    mut on_wait: impl FnMut(),
    on_stale: impl Fn(&str),
    read: impl Fn(&Path) -> Result<T>,
    make: impl FnOnce() -> Result<T>,
) -> Result<T> {
    let read_sound = |path: &Path| -> Result<Option<T>> {
        match read(path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if super::sealed::is_stale(&e) => {
                on_stale(&format!(
                    "{}; computing it again",
                    crate::error::one_line(&e)
                ));
                super::sealed::remove(path);
                Ok(None)
            }
            Err(e) => Err(e),
        }
    };
    if path.exists() {
        if let Some(v) = read_sound(path)? {
            return Ok(v);
        }
    }
    let _claim = Claim::wait_take(claims, name, &mut on_wait)?;
    if path.exists() {
        if let Some(v) = read_sound(path)? {
            return Ok(v);
        }
    }
    make()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_sheets_have_names_a_person_can_read() {
        let c = Cell {
            id: "0123abcd".into(),
            dataset: "tex".into(),
            model: "mae".into(),
            alpha: Some(0.25),
            epsilon: None,
            seed: 0,
            mask: "center:4".parse().unwrap(),
            method: crate::unlearn::MethodSpec {
                name: crate::names::MethodName::Ours,
                retain: crate::unlearn::RetainSource::Proxy,
                noise: Default::default(),
            },
            label: "Ours (proxy D_R)".into(),
            unlearn_key: String::new(),
            boundary_key: String::new(),
            dataset_idx: 0,
            model_idx: 0,
        };
        let p = RunDir::new(Path::new("out")).sample_sheet(&c);
        assert_eq!(
            p,
            Path::new("out/samples/tex_mae/ours-proxy_center-4_a0.25_s0.png")
        );
    }
}
