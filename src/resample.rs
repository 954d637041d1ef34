//! Image resampling exactly as the reference tools do it: torch's and TensorFlow 1's bilinear
//! interpolation, and PIL's antialiased `resize` (bilinear, bicubic; float and 8-bit images). A
//! leaf module: metrics, data augmentation and the CLIP preprocessing use it.

/// `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)` without antialiasing,
/// for one plane.
pub fn bilinear_torch(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let axis = |inn: usize, out: usize| -> Vec<(usize, usize, f32, f32)> {
        let scale = inn as f32 / out as f32;
        (0..out)
            .map(|d| {
                let s = (scale * (d as f32 + 0.5) - 0.5).max(0.0);
                let i0 = (s as usize).min(inn - 1);
                let i1 = if i0 < inn - 1 { i0 + 1 } else { i0 };
                let l1 = s - i0 as f32;
                (i0, i1, 1.0 - l1, l1)
            })
            .collect()
    };
    let (ys, xs) = (axis(h, oh), axis(w, ow));
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, hy0, hy1) in &ys {
        for &(x0, x1, wx0, wx1) in &xs {
            let a = src[y0 * w + x0];
            let b = src[y0 * w + x1];
            let c = src[y1 * w + x0];
            let d = src[y1 * w + x1];
            out.push(hy0 * (wx0 * a + wx1 * b) + hy1 * (wx0 * c + wx1 * d));
        }
    }
    out
}

/// TensorFlow 1.x `resize_bilinear` (align_corners=False, no half-pixel centres) as torch-fidelity
/// reproduces it: source = destination · (in / out), x first, then y, in f32.
pub fn bilinear_tf1(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let axis = |inn: usize, out: usize| -> Vec<(usize, usize, f32)> {
        let scale = (inn as f64 / out as f64) as f32;
        (0..out)
            .map(|d| {
                let s = d as f32 * scale;
                let lo = s as usize;
                let hi = (lo + 1).min(inn - 1);
                (lo, hi, s - lo as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(h, oh), axis(w, ow));
    let mut out = Vec::with_capacity(oh * ow);
    for &(y0, y1, dy) in &ys {
        for &(x0, x1, dx) in &xs {
            let (a, b) = (src[y0 * w + x0], src[y0 * w + x1]);
            let (c, d) = (src[y1 * w + x0], src[y1 * w + x1]);
            let top = a + (b - a) * dx;
            let bottom = c + (d - c) * dx;
            out.push(top + (bottom - top) * dy);
        }
    }
    out
}

/// PIL's resampling filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PilFilter {
    /// `Image.BILINEAR` (triangle, support 1).
    Bilinear,
    /// `Image.BICUBIC` (a = −0.5, support 2).
    Bicubic,
}

impl PilFilter {
    fn support(self) -> f64 {
        match self {
            PilFilter::Bilinear => 1.0,
            PilFilter::Bicubic => 2.0,
        }
    }
    fn weight(self, x: f64) -> f64 {
        match self {
            PilFilter::Bilinear => {
                let x = x.abs();
                if x < 1.0 {
                    1.0 - x
                } else {
                    0.0
                }
            }
            PilFilter::Bicubic => bicubic(x),
        }
    }
}

/// PIL's bicubic filter (a = −0.5).
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// PIL's resampling coefficients for one axis (`precompute_coeffs`): per output index, the first
/// input index and the normalised weights (the filter widens by the scale when shrinking).
fn pil_coeffs(inn: usize, out: usize, filter: PilFilter) -> Vec<(usize, Vec<f64>)> {
    let scale = inn as f64 / out as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax =
                (((center + support + 0.5) as i64).min(inn as i64) as usize).saturating_sub(xmin);
            let mut k: Vec<f64> = (0..xmax)
                .map(|x| filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = k.iter().sum();
            if total != 0.0 {
                k.iter_mut().for_each(|v| *v /= total);
            }
            (xmin, k)
        })
        .collect()
}

/// `PIL.Image.resize(BICUBIC)` of a mode "F" (float32) image, as clean-fid applies it per channel:
/// a horizontal pass, then a vertical pass, each accumulating in f64 and storing f32; the result is
/// clipped to [0, 255] (clean-fid's `np.clip`).
pub fn bicubic_pil(src: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    let horiz = pil_coeffs(w, ow, PilFilter::Bicubic);
    let mut tmp = vec![0f32; h * ow];
    for y in 0..h {
        for (x, (xmin, k)) in horiz.iter().enumerate() {
            let mut s = 0.0f64;
            for (i, kv) in k.iter().enumerate() {
                s += src[y * w + xmin + i] as f64 * kv;
            }
            tmp[y * ow + x] = s as f32;
        }
    }
    let vert = pil_coeffs(h, oh, PilFilter::Bicubic);
    let mut out = vec![0f32; oh * ow];
    for (y, (ymin, k)) in vert.iter().enumerate() {
        for x in 0..ow {
            let mut s = 0.0f64;
            for (i, kv) in k.iter().enumerate() {
                s += tmp[(ymin + i) * ow + x] as f64 * kv;
            }
            out[y * ow + x] = (s as f32).clamp(0.0, 255.0);
        }
    }
    out
}

/// PIL's fixed-point coefficients for 8-bit images (`PRECISION_BITS` = 22).
const PRECISION_BITS: u32 = 32 - 8 - 2;

fn pil_fixed(k: &[f64]) -> Vec<i32> {
    k.iter()
        .map(|&v| {
            let s = v * (1u32 << PRECISION_BITS) as f64;
            if s < 0.0 {
                (s - 0.5) as i32
            } else {
                (s + 0.5) as i32
            }
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// `PIL.Image.resize((w, h), BICUBIC)` of an 8-bit RGB image, bit-exact.
pub fn pil_resize_rgb8_bicubic(img: &image::RgbImage, ow: usize, oh: usize) -> image::RgbImage {
    pil_resize_rgb8(img, ow, oh, PilFilter::Bicubic)
}

/// `PIL.Image.resize((w, h), filter)` of an 8-bit RGB image, bit-exact: PIL's coefficients in
/// fixed point, a horizontal pass then a vertical pass, each rounding to 8 bits.
pub fn pil_resize_rgb8(
    img: &image::RgbImage,
    ow: usize,
    oh: usize,
    filter: PilFilter,
) -> image::RgbImage {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw();
    let horiz: Vec<(usize, Vec<i32>)> = pil_coeffs(w, ow, filter)
        .into_iter()
        .map(|(a, k)| (a, pil_fixed(&k)))
        .collect();
    let mut tmp = vec![0u8; h * ow * 3];
    if ow == w {
        tmp.copy_from_slice(src);
    } else {
        for y in 0..h {
            for (x, (xmin, k)) in horiz.iter().enumerate() {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, kv) in k.iter().enumerate() {
                        ss += src[(y * w + xmin + i) * 3 + c] as i64 * *kv as i64;
                    }
                    tmp[(y * ow + x) * 3 + c] = clip8(ss);
                }
            }
        }
    }
    let mut out = vec![0u8; oh * ow * 3];
    if oh == h {
        out.copy_from_slice(&tmp);
    } else {
        let vert: Vec<(usize, Vec<i32>)> = pil_coeffs(h, oh, filter)
            .into_iter()
            .map(|(a, k)| (a, pil_fixed(&k)))
            .collect();
        for (y, (ymin, k)) in vert.iter().enumerate() {
            for x in 0..ow {
                for c in 0..3 {
                    let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                    for (i, kv) in k.iter().enumerate() {
                        ss += tmp[((ymin + i) * ow + x) * 3 + c] as i64 * *kv as i64;
                    }
                    out[(y * ow + x) * 3 + c] = clip8(ss);
                }
            }
        }
    }
    image::RgbImage::from_raw(ow as u32, oh as u32, out).expect("sized buffer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_sizes_are_identities() {
        let src: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(bilinear_torch(&src, 3, 4, 3, 4), src);
        assert_eq!(bilinear_tf1(&src, 3, 4, 3, 4), src);
        let b = bicubic_pil(&src, 3, 4, 3, 4);
        for (x, y) in b.iter().zip(&src) {
            assert!((x - y).abs() < 1e-5);
        }
    }

    #[test]
    fn upsampling_a_constant_keeps_it() {
        let src = vec![7f32; 16];
        for v in bilinear_torch(&src, 4, 4, 9, 9)
            .into_iter()
            .chain(bilinear_tf1(&src, 4, 4, 9, 9))
            .chain(bicubic_pil(&src, 4, 4, 9, 9))
        {
            assert!((v - 7.0).abs() < 1e-5);
        }
    }

    #[test]
    fn torch_bilinear_matches_hand_computed_values() {
        // 1×2 → 1×4: sources at scale 0.5: -0.25→0, 0.25, 0.75, 1.25→clamped index 1.
        let out = bilinear_torch(&[0.0, 1.0], 1, 2, 1, 4);
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
        // TF1: sources 0, 0.5, 1, 1.5 → 0, 0.5, 1, 1 (hi clamps).
        assert_eq!(
            bilinear_tf1(&[0.0, 1.0], 1, 2, 1, 4),
            vec![0.0, 0.5, 1.0, 1.0]
        );
    }
}
