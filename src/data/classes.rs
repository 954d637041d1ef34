//! An experiment's forget / retain / proxy classes resolved against a source's class list:
//! explicit lists (indices or identifiers) or a preset, checked for overlaps and repeats.

use super::{resolve_class, ClassRef, DatasetSpec};
use crate::locate::Seg::{self, Idx, Key};

/// An experiment's classes, resolved against a source's class list.
#[derive(Clone, Debug, Default)]
pub struct ResolvedClasses {
    pub forget: Vec<usize>,
    pub retain: Vec<usize>,
    pub proxy: Vec<usize>,
    /// Notes for the log and manifest (a preset restricted to the available classes, …).
    pub notes: Vec<String>,
}

type Invalid = (Vec<Seg>, String);

/// Forget / retain / proxy classes of a dataset entry (explicit lists, else its preset), as
/// indices into `classes`. Errors carry the entry-relative YAML path.
pub fn resolve_classes(
    spec: &DatasetSpec,
    classes: &[String],
    wants_proxy: bool,
) -> Result<ResolvedClasses, Invalid> {
    let preset = spec.preset.as_deref().and_then(super::presets::preset);
    let mut notes = vec![];
    let forget = pick(
        spec,
        classes,
        &spec.forget_classes,
        preset.as_ref().map(|p| p.forget.clone()),
        "forget_classes",
        &mut notes,
    )?;
    let retain = pick(
        spec,
        classes,
        &spec.retain_classes,
        preset.as_ref().map(|p| p.retain.clone()),
        "retain_classes",
        &mut notes,
    )?;
    let mut proxy = match (&preset, spec.proxy_classes.is_empty()) {
        // The preset's proxy pool, or (ImageNet) every other class of the source.
        (Some(p), true) => match &p.proxy {
            Some(names) => names
                .iter()
                .filter_map(|n| classes.iter().position(|c| c == n))
                .collect(),
            None => (0..classes.len())
                .filter(|c| !forget.contains(c) && !retain.contains(c))
                .collect(),
        },
        _ => pick(
            spec,
            classes,
            &spec.proxy_classes,
            None,
            "proxy_classes",
            &mut notes,
        )?,
    };
    proxy.retain(|c| !forget.contains(c) && !retain.contains(c));
    check_lists(spec, classes, &forget, &retain)?;
    if wants_proxy && proxy.is_empty() {
        return Err((
            vec![Key("proxy_classes")],
            "a method uses `retain: proxy`, so list at least one proxy class".into(),
        ));
    }
    Ok(ResolvedClasses {
        forget,
        retain,
        proxy,
        notes,
    })
}

/// One list: the explicit one (which must resolve completely), else the preset's names found in
/// the source (all of them, unless `restrict_to_available`).
fn pick(
    spec: &DatasetSpec,
    classes: &[String],
    explicit: &[ClassRef],
    from_preset: Option<Vec<String>>,
    key: &'static str,
    notes: &mut Vec<String>,
) -> Result<Vec<usize>, Invalid> {
    let Some(names) = from_preset.filter(|_| explicit.is_empty()) else {
        return explicit
            .iter()
            .enumerate()
            .map(|(j, r)| {
                resolve_class(r, classes).ok_or_else(|| {
                    let shown: Vec<&str> = classes.iter().take(8).map(|s| s.as_str()).collect();
                    (
                        vec![Key(key), Idx(j)],
                        format!(
                            "unknown class `{r}`: give an index 0..{} or an identifier ({}{})",
                            classes.len(),
                            shown.join(", "),
                            if classes.len() > 8 { ", …" } else { "" }
                        ),
                    )
                })
            })
            .collect();
    };
    let found: Vec<usize> = names
        .iter()
        .filter_map(|n| classes.iter().position(|c| c == n))
        .collect();
    if found.len() < names.len() {
        if !spec.restrict_to_available {
            let missing: Vec<&String> = names
                .iter()
                .filter(|n| !classes.contains(n))
                .take(3)
                .collect();
            return Err((
                vec![Key("preset")],
                format!(
                    "the source lacks {} of the preset's {} {key} (e.g. {}); set `restrict_to_available: true` to use the classes it has",
                    names.len() - found.len(),
                    names.len(),
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        notes.push(format!(
            "{key}: {} of the preset's {} classes are in the source",
            found.len(),
            names.len()
        ));
    }
    Ok(found)
}

/// No class listed twice, none empty, no retain or proxy class that is also a forget (or retain)
/// class.
fn check_lists(
    spec: &DatasetSpec,
    classes: &[String],
    forget: &[usize],
    retain: &[usize],
) -> Result<(), Invalid> {
    // A class listed twice would be drawn and weighted twice.
    for (key, list) in [("forget_classes", forget), ("retain_classes", retain)] {
        for (j, c) in list.iter().enumerate() {
            if list[..j].contains(c) {
                return Err((
                    vec![Key(key), Idx(j)],
                    format!("class `{}` is listed twice", classes[*c]),
                ));
            }
        }
    }
    for (key, list) in [("forget_classes", forget), ("retain_classes", retain)] {
        if list.is_empty() {
            return Err((
                vec![Key(key)],
                "must list at least one class (or name a preset)".into(),
            ));
        }
    }
    for (j, c) in retain.iter().enumerate() {
        if forget.contains(c) {
            return Err((
                vec![Key("retain_classes"), Idx(j)],
                format!("class `{}` is also a forget class", classes[*c]),
            ));
        }
    }
    for (j, r) in spec.proxy_classes.iter().enumerate() {
        if let Some(c) = resolve_class(r, classes) {
            if forget.contains(&c) || retain.contains(&c) {
                return Err((
                    vec![Key("proxy_classes"), Idx(j)],
                    format!("class `{}` is already a forget or retain class", classes[c]),
                ));
            }
        }
    }
    Ok(())
}
