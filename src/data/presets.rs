//! The paper's class splits as named presets (`preset: imagenet1k-paper` | `places365-paper`),
//! from the data files in `experiments/splits/` (embedded in the binary).

use super::ClassRef;

pub const PRESETS: &str = "imagenet1k-paper, places365-paper";

/// Forget, retain and (for Places) proxy classes of a preset; `None` proxy means "every other
/// class of the source" (ImageNet-1K's other 800).
pub struct Preset {
    pub forget: Vec<String>,
    pub retain: Vec<String>,
    pub proxy: Option<Vec<String>>,
}

fn parse(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let mut f = l.split('\t');
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

pub fn preset(name: &str) -> Option<Preset> {
    let (text, explicit_proxy) = match name {
        "imagenet1k-paper" => (
            include_str!("../../experiments/splits/imagenet1k-paper.tsv"),
            false,
        ),
        "places365-paper" => (
            include_str!("../../experiments/splits/places365-paper.tsv"),
            true,
        ),
        _ => return None,
    };
    let rows = parse(text);
    let with = |role: &str| {
        rows.iter()
            .filter(|(_, r)| r == role)
            .map(|(c, _)| c.clone())
            .collect::<Vec<_>>()
    };
    Some(Preset {
        forget: with("forget"),
        retain: with("retain"),
        proxy: explicit_proxy.then(|| with("proxy")),
    })
}

/// Class references from identifiers.
pub fn refs(names: &[String]) -> Vec<ClassRef> {
    names.iter().map(|n| ClassRef::Name(n.clone())).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn presets_have_the_papers_sizes() {
        let p = super::preset("imagenet1k-paper").unwrap();
        assert_eq!((p.forget.len(), p.retain.len()), (100, 100));
        assert!(p.proxy.is_none());
        assert_eq!(p.forget[0], "n01443537");
        let p = super::preset("places365-paper").unwrap();
        assert_eq!(
            (
                p.forget.len(),
                p.retain.len(),
                p.proxy.as_ref().unwrap().len()
            ),
            (50, 50, 265)
        );
        assert_eq!(p.retain[0], "/b/badlands");
        assert!(super::preset("nope").is_none());
    }
}
