//! What every chart shares: colours, the error type of drawing, file-name slugs, metric titles
//! as the table's protocol computed them, label wrapping.

use super::table::Table;
use crate::names::MetricId;
use plotters::prelude::*;

pub(crate) const COLORS: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
];

pub(crate) fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub(crate) fn metric_title(m: &str) -> &'static str {
    MetricId::parse(m).map_or("value", |m| m.title())
}

/// The metric's name as the table's protocol computed it: with the domain extractor, "IS" and
/// "CLIP" would be wrong names.
pub(crate) fn metric_title_of(t: &Table, m: &str) -> String {
    let domain = t
        .protocols
        .iter()
        .any(|(c, p, _)| c.metric == m && p.contains("domain extractor"));
    match (MetricId::parse(m), domain) {
        (Some(MetricId::Clip), true) => "cosine similarity (domain extractor)".into(),
        (Some(MetricId::Is), true) => "IS (domain extractor)".into(),
        (_, true) => format!("{} (domain extractor)", metric_title(m)),
        (_, false) => metric_title(m).into(),
    }
}

pub(crate) type Dyn = Box<dyn std::error::Error + Send + Sync>;

/// Draw a chart atomically: `draw` writes a hidden temporary PNG beside `path`
/// (`.<name>.tmp<pid>-<n>.png`, the extension plotters' encoder needs), renamed over `path` once
/// whole; a draw that fails leaves no half-written chart and no temporary file.
pub(crate) fn atomic_png(
    path: &std::path::Path,
    draw: impl FnOnce(&std::path::Path) -> Result<(), Dyn>,
) -> Result<(), Dyn> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = crate::util::temp_sibling(path, ".png");
    let r = draw(&tmp).and_then(|()| Ok(std::fs::rename(&tmp, path)?));
    if r.is_err() {
        std::fs::remove_file(&tmp).ok();
    }
    r
}

/// `s` in lines of at most `width` characters, broken at spaces.
pub(crate) fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for w in s.split(' ') {
        let cur = lines.last_mut().unwrap();
        if !cur.is_empty() && cur.len() + 1 + w.len() > width {
            lines.push(w.to_string());
        } else {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(w);
        }
    }
    lines
}
