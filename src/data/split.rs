//! An experiment's class split made concrete: forget / retain / proxy training images for
//! unlearning, held-out forget / retain images for evaluation, and the pre-training set.

pub use super::classes::{resolve_classes, ResolvedClasses};
use super::DatasetSpec;
use super::{open_dataset, DataSource, ImageSet, Split};
use anyhow::Result;
use candle_core::Device;
use serde::Serialize;

/// One class's draw from one split, for the manifest.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClassCount {
    pub class: String,
    pub role: String,
    pub split: String,
    pub requested: usize,
    pub used: usize,
    /// How many the source has (None for generated data).
    pub available: Option<usize>,
    /// Files that could not be decoded, with the reason.
    pub failed: Vec<(String, String)>,
}

/// What a run's data were: the source, notes, and per class and split how many images were asked
/// for, used, available and unreadable (written to `<output>/data-<dataset>.json`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Manifest {
    pub source: String,
    pub notes: Vec<String>,
    pub counts: Vec<ClassCount>,
    /// The membership audit's images, when it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditManifest>,
}

/// Which images the membership audit used (ids as in the rest of the manifest).
#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditManifest {
    /// Where members and non-members come from.
    pub rule: String,
    pub per_class: usize,
    pub classes: Vec<AuditClass>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AuditClass {
    pub class: String,
    /// `forget` or `retain`.
    pub role: String,
    pub members: Vec<u64>,
    pub nonmembers: Vec<u64>,
}

/// The membership audit's images of one role.
pub struct AuditPair {
    /// Images the original model was trained on.
    pub members: ImageSet,
    /// Held-out images of the same classes, never trained on and never evaluated.
    pub nonmembers: ImageSet,
}

/// The membership audit's images: forget classes (the test) and retain classes (the control).
pub struct Audit {
    pub forget: AuditPair,
    pub retain: AuditPair,
}

impl Manifest {
    /// One-line warnings: short classes and unreadable files.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = vec![];
        let short: Vec<&ClassCount> = self
            .counts
            .iter()
            .filter(|c| c.used < c.requested)
            .collect();
        if !short.is_empty() {
            let shown: Vec<String> = short
                .iter()
                .take(4)
                .map(|c| format!("{} {} {}/{}", c.class, c.split, c.used, c.requested))
                .collect();
            w.push(format!(
                "warning: {} class draws got fewer images than asked ({}{})",
                short.len(),
                shown.join(", "),
                if short.len() > 4 { ", …" } else { "" }
            ));
        }
        let failed: Vec<&(String, String)> =
            self.counts.iter().flat_map(|c| c.failed.iter()).collect();
        if !failed.is_empty() {
            let shown: Vec<String> = failed
                .iter()
                .take(3)
                .map(|(n, e)| format!("{n} ({e})"))
                .collect();
            w.push(format!(
                "warning: skipped {} unreadable images: {}{}",
                failed.len(),
                shown.join("; "),
                if failed.len() > 3 { "; …" } else { "" }
            ));
        }
        w
    }
}

pub struct Splits {
    /// The source's class identifiers, in label order.
    pub classes: Vec<String>,
    pub forget: Vec<usize>,
    pub retain: Vec<usize>,
    pub proxy: Vec<usize>,
    pub forget_train: ImageSet,
    pub retain_train: ImageSet,
    pub proxy_train: Option<ImageSet>,
    pub forget_eval: ImageSet,
    pub retain_eval: ImageSet,
    pub manifest: Manifest,
}

/// Draws per-class images from a source at one resolution, recording counts in a manifest.
struct Gather<'a> {
    src: &'a dyn DataSource,
    names: Vec<String>,
    seed: u64,
    size: usize,
    min: usize,
    device: &'a Device,
    manifest: Manifest,
}

impl Gather<'_> {
    fn take(&mut self, classes: &[usize], split: Split, n: usize, role: &str) -> Result<ImageSet> {
        let mut raw = vec![];
        for &c in classes {
            let d = self.src.draw(c, split, n, self.seed)?;
            let split_name = format!("{split:?}").to_lowercase();
            if d.images.len() < self.min {
                return Err(crate::error::user(format!(
                    "class `{}` has {} readable {split_name} images, below min_per_class = {} ({} available, {} unreadable)",
                    self.names[c],
                    d.images.len(),
                    self.min,
                    d.available,
                    d.failed.len()
                )));
            }
            self.manifest.counts.push(ClassCount {
                class: self.names[c].clone(),
                role: role.to_string(),
                split: split_name,
                requested: n,
                used: d.images.len(),
                available: (d.available != usize::MAX).then_some(d.available),
                failed: d.failed,
            });
            raw.extend(d.images);
        }
        ImageSet::from_raw(&raw, self.size, self.device)
    }
}

/// [`resolve_classes`] with its error as one user-facing line naming the dataset and field.
fn resolve_or_explain(spec: &DatasetSpec, classes: &[String]) -> Result<ResolvedClasses> {
    resolve_classes(spec, classes, false).map_err(|(path, msg)| {
        crate::error::user(format!(
            "dataset `{}`: {}: {msg}",
            spec.name,
            crate::locate::path_string(&path)
        ))
    })
}

/// The (class, split, n) draws of a split: train images of every forget / retain / proxy class,
/// evaluation images of the forget and retain classes.
fn split_needs(spec: &DatasetSpec, r: &ResolvedClasses) -> Vec<(usize, Split, usize)> {
    let (nt, ne) = (spec.train_per_class, spec.eval_per_class);
    let train = r.forget.iter().chain(&r.retain).chain(&r.proxy);
    let val = r.forget.iter().chain(&r.retain);
    train
        .map(|&c| (c, Split::Train, nt))
        .chain(val.map(|&c| (c, Split::Val, ne)))
        .collect()
}

/// The draws of the membership audit (see [`Splits::audit`]).
fn audit_needs(
    spec: &DatasetSpec,
    forget: &[usize],
    retain: &[usize],
    pretrained_here: bool,
) -> Vec<(usize, Split, usize)> {
    let na = spec.audit_count();
    if na == 0 {
        return vec![];
    }
    let npre = spec.pretrain_per_class.unwrap_or(spec.train_per_class);
    let ne = spec.eval_per_class;
    forget
        .iter()
        .chain(retain)
        .flat_map(|&c| {
            if pretrained_here {
                vec![
                    (c, Split::Train, npre),
                    (c, Split::Train, npre + na),
                    (c, Split::Val, ne + na),
                ]
            } else {
                vec![(c, Split::Train, na), (c, Split::Val, ne + na)]
            }
        })
        .collect()
}

/// The ids of `set`'s images of class `c`.
fn ids_of_class(set: &ImageSet, c: usize) -> std::collections::HashSet<u64> {
    set.ids
        .iter()
        .zip(&set.labels)
        .filter(|(_, &l)| l == c)
        .map(|(&id, _)| id)
        .collect()
}

impl Splits {
    /// Build all sets at the model's resolution `size`.
    pub fn build(spec: &DatasetSpec, size: usize, device: &Device) -> Result<Self> {
        let src = open_dataset(spec)?;
        let classes = src.classes();
        let r = resolve_or_explain(spec, &classes)?;
        let mut g = Gather {
            src: &*src,
            names: classes.clone(),
            seed: spec.sample_seed,
            size,
            min: spec.min_per_class.unwrap_or(1),
            device,
            manifest: Manifest {
                source: src.describe(),
                notes: r.notes.clone(),
                counts: vec![],
                audit: None,
            },
        };
        let (nt, ne) = (spec.train_per_class, spec.eval_per_class);
        // Tell the source everything at once (a remote source fetches only what this needs).
        src.prepare(&split_needs(spec, &r), spec.sample_seed)?;
        let forget_train = g.take(&r.forget, Split::Train, nt, "forget")?;
        let retain_train = g.take(&r.retain, Split::Train, nt, "retain")?;
        let proxy_train = if r.proxy.is_empty() {
            None
        } else {
            Some(g.take(&r.proxy, Split::Train, nt, "proxy")?)
        };
        let forget_eval = g.take(&r.forget, Split::Val, ne, "forget")?;
        let retain_eval = g.take(&r.retain, Split::Val, ne, "retain")?;
        let manifest = g.manifest;
        Ok(Self {
            classes,
            forget: r.forget,
            retain: r.retain,
            proxy: r.proxy,
            forget_train,
            retain_train,
            proxy_train,
            forget_eval,
            retain_eval,
            manifest,
        })
    }

    /// Make every image that [`Splits::build`] (and, with `pretrain`, [`Splits::pretrain_set`])
    /// reads available offline: a hub source downloads the shards that hold them into the hub
    /// cache; local sources have nothing to do. Nothing is read into memory or decoded. Returns
    /// the source's description and the number of (class, split) requests.
    pub fn fetch(spec: &DatasetSpec, pretrain: bool) -> Result<(String, usize)> {
        let src = open_dataset(spec)?;
        let classes = src.classes();
        let r = resolve_or_explain(spec, &classes)?;
        let mut needs = split_needs(spec, &r);
        if pretrain {
            let n = spec.pretrain_per_class.unwrap_or(spec.train_per_class);
            needs.extend((0..classes.len()).map(|c| (c, Split::Train, n)));
        }
        needs.extend(audit_needs(spec, &r.forget, &r.retain, pretrain));
        src.download(&needs)?;
        Ok((src.describe(), needs.len()))
    }

    /// Training images of every class of the source but `exclude`, for pre-training the
    /// original model (nothing excluded) or the retrain oracle (the forget classes excluded).
    pub fn pretrain_set(
        spec: &DatasetSpec,
        exclude: &[usize],
        size: usize,
        device: &Device,
    ) -> Result<ImageSet> {
        let src = open_dataset(spec)?;
        let n = spec.pretrain_per_class.unwrap_or(spec.train_per_class);
        let names = src.classes();
        let all: Vec<usize> = (0..names.len()).filter(|c| !exclude.contains(c)).collect();
        let needs: Vec<(usize, Split, usize)> = all.iter().map(|&c| (c, Split::Train, n)).collect();
        src.prepare(&needs, spec.sample_seed)?;
        let mut g = Gather {
            src: &*src,
            names,
            seed: spec.sample_seed,
            size,
            min: 0,
            device,
            manifest: Manifest::default(),
        };
        g.take(&all, Split::Train, n, "pretrain")
    }

    /// The membership audit's images (`audit_per_class` per forget and retain class), recorded
    /// in the manifest; `None` when the audit is off.
    ///
    /// Members are a seeded choice among the class's pre-training images. Non-members: for a
    /// model pre-trained here (`pretrained_here`), further training-split images beyond the
    /// pre-training draw (so members and non-members come from one distribution); for a
    /// checkpoint, whose training data are taken to be the source's whole training split,
    /// validation images beyond the evaluation ones.
    pub fn audit(
        &mut self,
        spec: &DatasetSpec,
        pretrained_here: bool,
        size: usize,
        device: &Device,
    ) -> Result<Option<Audit>> {
        use rand::seq::SliceRandom;
        use std::collections::HashSet;
        let na = spec.audit_count();
        if na == 0 {
            return Ok(None);
        }
        let src = open_dataset(spec)?;
        let seed = spec.sample_seed;
        src.prepare(
            &audit_needs(spec, &self.forget, &self.retain, pretrained_here),
            seed,
        )?;
        let npre = spec.pretrain_per_class.unwrap_or(spec.train_per_class);
        let ne = spec.eval_per_class;
        let mut record = AuditManifest {
            rule: if pretrained_here {
                format!("members: {na} per class chosen (seeded) among the {npre} pre-training images of the class; non-members: training-split images beyond the pre-training draw, topped up with validation images beyond the {ne} evaluation images where the training split has too few")
            } else {
                format!("members: {na} training-split images per class (the checkpoint is taken to have been trained on the source's training split); non-members: validation images beyond the {ne} evaluation images")
            },
            per_class: na,
            classes: vec![],
        };
        let mut pairs = vec![];
        for (role, classes, eval) in [
            ("forget", self.forget.clone(), &self.forget_eval),
            ("retain", self.retain.clone(), &self.retain_eval),
        ] {
            let (mut members, mut nonmembers) = (vec![], vec![]);
            for c in classes {
                let (m, n) = if pretrained_here {
                    let mut pool = src.images(c, Split::Train, npre, seed)?;
                    let seen: HashSet<u64> = pool.iter().map(|r| r.id).collect();
                    pool.shuffle(&mut crate::util::rng(
                        "audit-members",
                        crate::util::mix(&[seed, c as u64]),
                    ));
                    pool.truncate(na);
                    let more = src.images(c, Split::Train, npre + na, seed)?;
                    let mut fresh: Vec<_> = more
                        .into_iter()
                        .filter(|r| !seen.contains(&r.id))
                        .take(na)
                        .collect();
                    if fresh.len() < na {
                        // Every training image was pre-trained on (a local copy holding only
                        // the pre-training draw): held-out validation images beyond the
                        // evaluation images are non-members too.
                        let evaluated = ids_of_class(eval, c);
                        let val = src.images(c, Split::Val, ne + na, seed)?;
                        let need = na - fresh.len();
                        fresh.extend(
                            val.into_iter()
                                .filter(|r| !evaluated.contains(&r.id))
                                .take(need),
                        );
                    }
                    (pool, fresh)
                } else {
                    let evaluated = ids_of_class(eval, c);
                    let m = src.images(c, Split::Train, na, seed)?;
                    let more = src.images(c, Split::Val, ne + na, seed)?;
                    let fresh: Vec<_> = more
                        .into_iter()
                        .filter(|r| !evaluated.contains(&r.id))
                        .take(na)
                        .collect();
                    (m, fresh)
                };
                record.classes.push(AuditClass {
                    class: self.classes[c].clone(),
                    role: role.into(),
                    members: m.iter().map(|r| r.id).collect(),
                    nonmembers: n.iter().map(|r| r.id).collect(),
                });
                members.extend(m);
                nonmembers.extend(n);
            }
            if members.is_empty() || nonmembers.is_empty() {
                self.manifest.notes.push(format!(
                    "membership audit off: the {role} classes have {} member and {} non-member images",
                    members.len(),
                    nonmembers.len()
                ));
                return Ok(None);
            }
            pairs.push(AuditPair {
                members: ImageSet::from_raw(&members, size, device)?,
                nonmembers: ImageSet::from_raw(&nonmembers, size, device)?,
            });
        }
        let short: usize = record
            .classes
            .iter()
            .filter(|c| c.members.len() < na || c.nonmembers.len() < na)
            .count();
        if short > 0 {
            self.manifest.notes.push(format!(
                "membership audit: {short} classes have fewer than {na} member or non-member images"
            ));
        }
        self.manifest.audit = Some(record);
        let retain = pairs.pop().expect("two roles");
        let forget = pairs.pop().expect("two roles");
        Ok(Some(Audit { forget, retain }))
    }

    /// The evaluation classes (forget then retain) relabelled 0..k, for the domain extractor.
    pub fn eval_classes(&self) -> Vec<usize> {
        self.forget.iter().chain(&self.retain).copied().collect()
    }

    /// `set` with labels mapped to positions in [`Splits::eval_classes`].
    pub fn relabel(&self, set: &ImageSet) -> Result<ImageSet> {
        let order = self.eval_classes();
        let labels = set
            .labels
            .iter()
            .map(|l| {
                order
                    .iter()
                    .position(|c| c == l)
                    .ok_or_else(|| anyhow::anyhow!("class {l} is not an evaluation class"))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ImageSet {
            pixels: set.pixels.clone(),
            labels,
            ids: set.ids.clone(),
        })
    }
}
