//! The embedded dataset: procedurally generated, labelled textures that need no download.
//!
//! Each class is a full-image texture whose kind (stripes, checks, waves, dots), orientation,
//! frequency and palette depend on the class, so the class can be read from any large part of the
//! image, including the context that a centre mask leaves visible. (With a centred object hidden
//! by the mask, inpainting could not depend on the class and no method could forget selectively.)
//! Classes share palettes in pairs, so telling them apart needs the texture, not only the colour.
//!
//! Every image is a pure function of (dataset seed, class, split, index): the set is identical on
//! every machine and needs no cache.

use super::{DataSource, RawImage, Split};
use crate::util::{mix, splitmix64};
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::f64::consts::PI;

/// Configuration of the embedded texture set (`source: {kind: embedded, ...}` in YAML).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Number of classes (at most 32).
    #[serde(default = "default_classes")]
    pub classes: usize,
    /// Image side in pixels.
    #[serde(default = "default_size")]
    pub size: usize,
    /// Seed of the whole set.
    #[serde(default)]
    pub seed: u64,
}

fn default_classes() -> usize {
    16
}
fn default_size() -> usize {
    32
}

pub const MAX_CLASSES: usize = 32;

/// Eight palettes (dark, light), each shared by two classes with different textures.
const PALETTES: [([f64; 3], [f64; 3]); 8] = [
    ([0.10, 0.12, 0.45], [0.95, 0.85, 0.30]),
    ([0.45, 0.05, 0.08], [0.90, 0.90, 0.85]),
    ([0.05, 0.35, 0.10], [0.85, 0.55, 0.85]),
    ([0.15, 0.15, 0.15], [0.30, 0.85, 0.95]),
    ([0.55, 0.25, 0.05], [0.60, 0.95, 0.55]),
    ([0.30, 0.05, 0.40], [0.95, 0.60, 0.35]),
    ([0.05, 0.30, 0.35], [0.98, 0.98, 0.60]),
    ([0.35, 0.35, 0.05], [0.55, 0.65, 0.98]),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Stripes,
    Checks,
    Waves,
    Dots,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Stripes => "stripes",
            Kind::Checks => "checks",
            Kind::Waves => "waves",
            Kind::Dots => "dots",
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct ClassStyle {
    kind: Kind,
    /// Orientation in radians.
    theta: f64,
    /// Cycles per image side.
    freq: f64,
    palette: usize,
}

fn style(class: usize) -> ClassStyle {
    let kind = [Kind::Stripes, Kind::Checks, Kind::Waves, Kind::Dots][class % 4];
    // Orientation and frequency walk through distinct values so that no two classes coincide.
    let theta = ((class * 47) % 180) as f64 * PI / 180.0;
    let freq = [2.0, 3.0, 4.5][(class / 4 + class) % 3] + (class / 8) as f64 * 0.5;
    // Classes c and c + 1 (c even) differ in kind but share a palette, rotated by the class index.
    let palette = (class / 2 + class / 16) % PALETTES.len();
    ClassStyle {
        kind,
        theta,
        freq,
        palette,
    }
}

/// A deterministic uniform in [0, 1) from a 64-bit state.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Standard normal from two hashes (Box–Muller).
fn gauss(h1: u64, h2: u64) -> f64 {
    let u1 = unit(h1).max(1e-300);
    (-2.0 * u1.ln()).sqrt() * (2.0 * PI * unit(h2)).cos()
}

/// Render one image as interleaved RGB bytes.
pub fn render(cfg: &EmbeddedConfig, class: usize, key: u64) -> Vec<u8> {
    let st = style(class);
    let r = |i: u64| splitmix64(key ^ splitmix64(i));
    let theta = st.theta + (unit(r(1)) - 0.5) * 0.25; // ±7°
    let freq = st.freq * (1.0 + (unit(r(2)) - 0.5) * 0.2); // ±10%
    let phase = unit(r(3)) * 2.0 * PI;
    let phase2 = unit(r(4)) * 2.0 * PI;
    let (dark, light) = PALETTES[st.palette];
    let jitter = |c: f64, i: u64| (c + (unit(r(i)) - 0.5) * 0.12).clamp(0.0, 1.0);
    let dark = [jitter(dark[0], 5), jitter(dark[1], 6), jitter(dark[2], 7)];
    let light = [
        jitter(light[0], 8),
        jitter(light[1], 9),
        jitter(light[2], 10),
    ];
    let (ct, sn) = (theta.cos(), theta.sin());
    let n = cfg.size;
    let mut out = vec![0u8; n * n * 3];
    for y in 0..n {
        for x in 0..n {
            let u = (x as f64 + 0.5) / n as f64 - 0.5;
            let v = (y as f64 + 0.5) / n as f64 - 0.5;
            let a = u * ct + v * sn;
            let b = -u * sn + v * ct;
            let w = 2.0 * PI * freq;
            let s = match st.kind {
                Kind::Stripes => 0.5 + 0.5 * (w * a + phase).sin(),
                Kind::Checks => {
                    0.5 + 0.5
                        * ((w * a + phase).sin() * (w * b + phase2).sin()).signum()
                        * ((w * a + phase).sin() * (w * b + phase2).sin())
                            .abs()
                            .sqrt()
                }
                Kind::Waves => {
                    0.5 + 0.5 * (w * a + 1.6 * (0.5 * w * b + phase2).sin() + phase).sin()
                }
                Kind::Dots => {
                    let d = ((w * a + phase).cos() + (w * b + phase2).cos()) * 0.5;
                    1.0 / (1.0 + (-(d - 0.3) * 10.0).exp())
                }
            };
            let i = (y * n + x) as u64;
            for c in 0..3 {
                let noise =
                    0.03 * gauss(r(100 + 3 * i + c as u64), r(1_000_000 + 3 * i + c as u64));
                let val = dark[c] * (1.0 - s) + light[c] * s + noise;
                out[(y * n + x) * 3 + c] = (val.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    out
}

/// The embedded texture set as a [`DataSource`].
pub struct Embedded {
    pub cfg: EmbeddedConfig,
}

impl Embedded {
    pub fn new(cfg: EmbeddedConfig) -> Result<Self> {
        anyhow::ensure!(
            (2..=MAX_CLASSES).contains(&cfg.classes),
            "embedded source: classes must be in 2..={MAX_CLASSES}, got {}",
            cfg.classes
        );
        anyhow::ensure!(
            (8..=256).contains(&cfg.size),
            "embedded source: size must be in 8..=256, got {}",
            cfg.size
        );
        Ok(Self { cfg })
    }

    fn key(&self, class: usize, split: Split, index: usize) -> u64 {
        mix(&[self.cfg.seed, class as u64, split as u64, index as u64])
    }
}

impl DataSource for Embedded {
    fn describe(&self) -> String {
        format!(
            "embedded textures ({} classes, {} px, seed {})",
            self.cfg.classes, self.cfg.size, self.cfg.seed
        )
    }

    fn classes(&self) -> Vec<String> {
        (0..self.cfg.classes)
            .map(|c| {
                let s = style(c);
                format!("{}-{c}", s.kind.as_str())
            })
            .collect()
    }

    fn draw(&self, class: usize, split: Split, n: usize, _seed: u64) -> Result<super::Draw> {
        anyhow::ensure!(class < self.cfg.classes, "class {class} out of range");
        let images = (0..n)
            .map(|i| {
                let key = self.key(class, split, i);
                RawImage {
                    id: key,
                    class,
                    width: self.cfg.size,
                    height: self.cfg.size,
                    rgb: render(&self.cfg, class, key),
                }
            })
            .collect();
        Ok(super::Draw {
            images,
            available: usize::MAX,
            failed: vec![],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EmbeddedConfig {
        EmbeddedConfig {
            classes: 16,
            size: 32,
            seed: 3,
        }
    }

    #[test]
    fn deterministic_and_split_dependent() {
        let e = Embedded::new(cfg()).unwrap();
        let a = e.images(2, Split::Train, 3, 0).unwrap();
        let b = e.images(2, Split::Train, 3, 99).unwrap();
        assert_eq!(a[1].rgb, b[1].rgb);
        let v = e.images(2, Split::Val, 3, 0).unwrap();
        assert_ne!(a[0].rgb, v[0].rgb);
        assert_ne!(a[0].id, v[0].id);
    }

    #[test]
    fn classes_are_distinct_in_style() {
        for i in 0..MAX_CLASSES {
            for j in 0..i {
                let (a, b) = (style(i), style(j));
                let same = a.kind == b.kind
                    && (a.theta - b.theta).abs() < 0.2
                    && (a.freq - b.freq).abs() < 0.4
                    && a.palette == b.palette;
                assert!(!same, "classes {i} and {j} look alike");
            }
        }
    }

    /// The class must be readable from the border that a centre mask leaves visible: a
    /// nearest-centroid classifier on the border pixels' colour statistics and gradient
    /// orientation must beat chance by far.
    #[test]
    fn class_is_recognisable_from_the_border() {
        let e = Embedded::new(cfg()).unwrap();
        let feat = |img: &RawImage| -> Vec<f64> {
            let n = img.width;
            let mut f = [0.0; 10];
            let mut cnt = 0.0;
            for y in 0..n {
                for x in 0..n {
                    let border = x < n / 4 || x >= 3 * n / 4 || y < n / 4 || y >= 3 * n / 4;
                    if !border || x + 1 >= n || y + 1 >= n {
                        continue;
                    }
                    let p =
                        |x: usize, y: usize, c: usize| img.rgb[(y * n + x) * 3 + c] as f64 / 255.0;
                    for c in 0..3 {
                        f[c] += p(x, y, c);
                        f[3 + c] += p(x, y, c).powi(2);
                    }
                    let l = |x, y| p(x, y, 0) + p(x, y, 1) + p(x, y, 2);
                    let gx = l(x + 1, y) - l(x, y);
                    let gy = l(x, y + 1) - l(x, y);
                    f[6] += gx * gx;
                    f[7] += gy * gy;
                    f[8] += gx * gy;
                    f[9] += gx.abs() + gy.abs();
                    cnt += 1.0;
                }
            }
            f.iter().map(|v| v / cnt).collect()
        };
        let mut centroids = vec![];
        for c in 0..16 {
            let imgs = e.images(c, Split::Train, 20, 0).unwrap();
            let fs: Vec<Vec<f64>> = imgs.iter().map(feat).collect();
            let m: Vec<f64> = (0..10)
                .map(|k| fs.iter().map(|f| f[k]).sum::<f64>() / 20.0)
                .collect();
            centroids.push(m);
        }
        let mut correct = 0;
        for c in 0..16 {
            for img in e.images(c, Split::Val, 10, 0).unwrap() {
                let f = feat(&img);
                let best = (0..16)
                    .min_by(|&a, &b| {
                        let da: f64 = centroids[a]
                            .iter()
                            .zip(&f)
                            .map(|(x, y)| (x - y).powi(2))
                            .sum();
                        let db: f64 = centroids[b]
                            .iter()
                            .zip(&f)
                            .map(|(x, y)| (x - y).powi(2))
                            .sum();
                        da.partial_cmp(&db).unwrap()
                    })
                    .unwrap();
                correct += (best == c) as usize;
            }
        }
        assert!(
            correct >= 120,
            "only {correct}/160 recognised from the border"
        );
    }
}
