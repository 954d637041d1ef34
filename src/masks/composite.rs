//! How a generated image is put back into the known pixels.
//!
//! `paste` (the default) keeps every known pixel and takes the prediction exactly inside the hole.
//! `blur` is the official VQ-GAN (MAGE) evaluation's compositing: the hole is grown by 14 px, the
//! grown mask is turned into an 8-bit image and blurred with PIL's `GaussianBlur(radius=7)`, and
//! the output is `generated · m + masked_input · (1 − m)`, where the masked input has the hole
//! filled with the family's fill value (the grey of the fill leaks slightly at the edges, as in the
//! official code). Both 14 px and the radius are for 256 px images and scale with the side.

use super::BatchMask;
use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// The compositing of generated images (`generate.composite`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Composite {
    /// Known pixels kept, the prediction inside the hole.
    #[default]
    Paste,
    /// The official MAGE evaluation: mask grown by 14 px, Gaussian blur radius 7 (at 256 px).
    Blur,
}

impl Composite {
    /// For protocol strings.
    pub fn describe(self, size: usize) -> String {
        match self {
            Composite::Paste => "hard paste".into(),
            Composite::Blur => {
                let (grow, radius) = blur_geometry(size);
                format!("blurred paste (hole grown {grow} px, PIL GaussianBlur radius {radius:.3})")
            }
        }
    }
}

/// The grown margin (px) and blur radius for images of `size` pixels: 14 px and 7 at 256 px.
pub fn blur_geometry(size: usize) -> (usize, f32) {
    let grow = (14 * size + 128) / 256;
    (grow, 7.0 * size as f32 / 256.0)
}

/// Put `generated` into `known` (`[B, 3, S, S]`, [0, 1]) under `mask`; `fill` is the value the
/// family writes into the hole of its input (per channel), used by `blur`. The result is clamped
/// to [0, 1].
pub fn composite(
    known: &Tensor,
    generated: &Tensor,
    mask: &BatchMask,
    fill: [f32; 3],
    how: Composite,
) -> Result<Tensor> {
    let (b, _, size, _) = known.dims4()?;
    let dev = known.device();
    let pm = mask.pixel_mask(size, dev)?;
    let out = match how {
        Composite::Paste => super::paste(known, generated, &pm)?,
        Composite::Blur => {
            let fill_t = Tensor::from_vec(fill.to_vec(), (1, 3, 1, 1), dev)?
                .broadcast_as(known.shape())?
                .contiguous()?;
            let masked_input = super::paste(known, &fill_t, &pm)?;
            let (grow, radius) = blur_geometry(size);
            let mut soft = Vec::with_capacity(b * size * size);
            for m in &mask.masks {
                let hole: Vec<bool> = (0..size * size)
                    .map(|i| m.pixel_hidden(size, i / size, i % size))
                    .collect();
                let grown = dilate(&hole, size, grow);
                let img: Vec<u8> = grown.iter().map(|&h| if h { 255 } else { 0 }).collect();
                let blurred = pil_gaussian_blur(&img, size, size, radius);
                soft.extend(blurred.iter().map(|&v| v as f32 / 255.0));
            }
            let soft = Tensor::from_vec(soft, (b, 1, size, size), dev)?;
            let keep = soft.affine(-1.0, 1.0)?;
            (generated.broadcast_mul(&soft)? + masked_input.broadcast_mul(&keep)?)?
        }
    };
    Ok(out.clamp(0f32, 1f32)?)
}

/// Grow a hole by `r` pixels in every direction (a square structuring element).
fn dilate(hole: &[bool], size: usize, r: usize) -> Vec<bool> {
    if r == 0 {
        return hole.to_vec();
    }
    // Separable: rows, then columns.
    let pass = |src: &[bool], horizontal: bool| -> Vec<bool> {
        let mut out = vec![false; src.len()];
        for a in 0..size {
            for b in 0..size {
                let lo = b.saturating_sub(r);
                let hi = (b + r).min(size - 1);
                out[if horizontal {
                    a * size + b
                } else {
                    b * size + a
                }] = (lo..=hi).any(|k| {
                    src[if horizontal {
                        a * size + k
                    } else {
                        k * size + a
                    }]
                });
            }
        }
        out
    };
    pass(&pass(hole, true), false)
}

/// PIL's `ImageFilter.GaussianBlur(radius)` on an 8-bit single-channel image: three passes of an
/// extended box blur per direction (horizontal first), each rounded to 8 bits, edges extended —
/// the algorithm of Pillow's `BoxBlur.c`, with its f32 and 24-bit fixed-point arithmetic.
pub fn pil_gaussian_blur(img: &[u8], width: usize, height: usize, radius: f32) -> Vec<u8> {
    let r = gaussian_box_radius(radius, 3);
    let mut cur = img.to_vec();
    if r != 0.0 {
        for _ in 0..3 {
            cur = box_blur_rows(&cur, width, height, r);
        }
        let mut t = transpose(&cur, width, height);
        for _ in 0..3 {
            t = box_blur_rows(&t, height, width, r);
        }
        cur = transpose(&t, height, width);
    }
    cur
}

/// Pillow's `_gaussian_blur_radius`: the extended-box radius whose `passes`-fold repetition has
/// the variance of a Gaussian of standard deviation `radius` (Gwosdek et al. 2011).
fn gaussian_box_radius(radius: f32, passes: i32) -> f32 {
    let sigma2 = radius * radius / passes as f32;
    let big_l = (12.0 * sigma2 + 1.0).sqrt();
    let l = ((big_l - 1.0) / 2.0).floor();
    let mut a = (2.0 * l + 1.0) * (l * (l + 1.0) - 3.0 * sigma2);
    a /= 6.0 * (sigma2 - (l + 1.0) * (l + 1.0));
    l + a
}

fn transpose(img: &[u8], width: usize, height: usize) -> Vec<u8> {
    let mut out = vec![0u8; img.len()];
    for y in 0..height {
        for x in 0..width {
            out[x * height + y] = img[y * width + x];
        }
    }
    out
}

/// One horizontal pass of Pillow's extended box blur (`ImagingHorizontalBoxBlur`).
fn box_blur_rows(img: &[u8], width: usize, height: usize, float_radius: f32) -> Vec<u8> {
    let radius = float_radius as i64;
    let ww = ((1u32 << 24) as f32 / (float_radius * 2.0 + 1.0)) as u32;
    let fw = ((1u32 << 24) - (radius as u32 * 2 + 1) * ww) / 2;
    let lastx = width as i64 - 1;
    let mut out = vec![0u8; img.len()];
    for y in 0..height {
        let line = &img[y * width..(y + 1) * width];
        let px = |i: i64| line[i.clamp(0, lastx) as usize] as u32;
        // Edge pixels extend the line: a window sum with clamped indices.
        let mut acc: u32 = 0;
        for k in -radius..=radius {
            acc = acc.wrapping_add(px(k));
        }
        for x in 0..width as i64 {
            if x > 0 {
                acc = acc
                    .wrapping_add(px(x + radius))
                    .wrapping_sub(px(x - radius - 1));
            }
            let bulk = acc
                .wrapping_mul(ww)
                .wrapping_add((px(x - radius - 1) + px(x + radius + 1)).wrapping_mul(fw));
            out[y * width + x as usize] = ((bulk + (1 << 23)) >> 24) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn box_radius_matches_pillow_formula() {
        // sigma 7, three passes: sigma² = 49/3; L = sqrt(197); l = floor((L−1)/2) = 6.
        let r = gaussian_box_radius(7.0, 3);
        assert!((r - 6.5).abs() < 0.5, "{r}");
        assert_eq!(gaussian_box_radius(0.0, 3), 0.0);
    }

    #[test]
    fn blur_keeps_constant_images_and_spreads_edges() {
        let flat = vec![200u8; 16 * 16];
        assert_eq!(pil_gaussian_blur(&flat, 16, 16, 3.0), flat);
        let mut step = vec![0u8; 32 * 32];
        for y in 0..32 {
            for x in 16..32 {
                step[y * 32 + x] = 255;
            }
        }
        let b = pil_gaussian_blur(&step, 32, 32, 3.0);
        let row: Vec<u8> = b[16 * 32..17 * 32].to_vec();
        assert!(row.windows(2).all(|w| w[0] <= w[1]), "{row:?}");
        assert!(
            row[0] == 0 && row[31] == 255 && row[15] > 60 && row[16] < 195,
            "{row:?}"
        );
    }

    #[test]
    fn dilation_grows_a_box() {
        let mut hole = vec![false; 8 * 8];
        hole[3 * 8 + 3] = true;
        let g = dilate(&hole, 8, 2);
        assert_eq!(g.iter().filter(|&&h| h).count(), 25);
        assert!(g[8 + 1] && g[5 * 8 + 5] && !g[6 * 8 + 6]);
    }
}
