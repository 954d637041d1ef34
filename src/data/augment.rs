//! Training-time augmentation of the unlearning batches, as the paper's MAE code trains:
//! `RandomResizedCrop(size, scale=(0.2, 1.0), interpolation=BICUBIC)` then
//! `RandomHorizontalFlip()`. Off unless `unlearn.augment` is set; seeded by the trainer's RNG, so a
//! run stays deterministic.
//!
//! The crop is taken from the stored model-resolution image (the data pipeline keeps every image
//! resized and centre-cropped to the model's size), not from the original file: a crop of scale s
//! is therefore up-sampled from √s of the model's resolution rather than from a larger photograph.

use anyhow::Result;
use candle_core::Tensor;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// `unlearn: {augment: {crop_scale: [0.2, 1.0], crop_ratio: [0.75, 1.333], flip: true}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AugmentSpec {
    /// Range of the crop's area as a fraction of the image (torchvision's `scale`).
    pub crop_scale: [f64; 2],
    /// Range of the crop's aspect ratio w/h, sampled log-uniformly (torchvision's `ratio`).
    pub crop_ratio: [f64; 2],
    /// Flip each image horizontally with probability 1/2.
    pub flip: bool,
}

impl Default for AugmentSpec {
    fn default() -> Self {
        Self {
            crop_scale: [0.2, 1.0],
            crop_ratio: [3.0 / 4.0, 4.0 / 3.0],
            flip: true,
        }
    }
}

impl AugmentSpec {
    /// A message naming the bad field, if any.
    pub fn validate(&self) -> std::result::Result<(), (&'static str, String)> {
        let [s0, s1] = self.crop_scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err((
                "crop_scale",
                "must be [low, high] with 0 < low ≤ high ≤ 1".into(),
            ));
        }
        let [r0, r1] = self.crop_ratio;
        if !(r0 > 0.0 && r0 <= r1) {
            return Err((
                "crop_ratio",
                "must be [low, high] with 0 < low ≤ high".into(),
            ));
        }
        Ok(())
    }

    /// torchvision's `RandomResizedCrop.get_params`: (top, left, height, width) of the crop in an
    /// `h`×`w` image: ten tries at a random area and log-uniform ratio, else a centre crop of
    /// the whole image with the ratio clamped to the range.
    pub fn crop_box(&self, h: usize, w: usize, rng: &mut impl Rng) -> (usize, usize, usize, usize) {
        let area = (h * w) as f64;
        let (lr0, lr1) = (self.crop_ratio[0].ln(), self.crop_ratio[1].ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.crop_scale[0]..=self.crop_scale[1]);
            let ratio = if lr1 > lr0 {
                rng.random_range(lr0..lr1).exp()
            } else {
                lr0.exp()
            };
            let cw = (target * ratio).sqrt().round() as usize;
            let ch = (target / ratio).sqrt().round() as usize;
            if cw > 0 && ch > 0 && cw <= w && ch <= h {
                let top = rng.random_range(0..=h - ch);
                let left = rng.random_range(0..=w - cw);
                return (top, left, ch, cw);
            }
        }
        let in_ratio = w as f64 / h as f64;
        let (ch, cw) = if in_ratio < self.crop_ratio[0] {
            let cw = w;
            (((cw as f64) / self.crop_ratio[0]).round() as usize, cw)
        } else if in_ratio > self.crop_ratio[1] {
            let ch = h;
            (ch, ((ch as f64) * self.crop_ratio[1]).round() as usize)
        } else {
            (h, w)
        };
        ((h - ch) / 2, (w - cw) / 2, ch, cw)
    }

    /// Augment a batch `[B, 3, S, S]` in [0, 1] (any device): per image a random resized crop
    /// (PIL bicubic, clipped to [0, 1]) and a random flip.
    pub fn apply(&self, pixels: &Tensor, rng: &mut impl Rng) -> Result<Tensor> {
        let (b, c, h, w) = pixels.dims4()?;
        let data: Vec<f32> = pixels.flatten_all()?.to_vec1()?;
        let mut out = Vec::with_capacity(data.len());
        let plane = h * w;
        for i in 0..b {
            let (top, left, ch, cw) = self.crop_box(h, w, rng);
            let flip = self.flip && rng.random_bool(0.5);
            for k in 0..c {
                let src = &data[(i * c + k) * plane..][..plane];
                // The crop, in PIL's 0–255 float scale.
                let mut crop = Vec::with_capacity(ch * cw);
                for y in top..top + ch {
                    crop.extend(
                        src[y * w + left..y * w + left + cw]
                            .iter()
                            .map(|v| v * 255.0),
                    );
                }
                let resized = if (ch, cw) == (h, w) {
                    crop
                } else {
                    crate::resample::bicubic_pil(&crop, ch, cw, h, w)
                };
                for y in 0..h {
                    let row = &resized[y * w..(y + 1) * w];
                    if flip {
                        out.extend(row.iter().rev().map(|v| v / 255.0));
                    } else {
                        out.extend(row.iter().map(|v| v / 255.0));
                    }
                }
            }
        }
        Ok(Tensor::from_vec(out, (b, c, h, w), pixels.device())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crop_boxes_respect_scale_and_ratio() {
        let spec = AugmentSpec::default();
        let mut rng = crate::util::rng("t", 0);
        for _ in 0..500 {
            let (t, l, ch, cw) = spec.crop_box(64, 64, &mut rng);
            assert!(t + ch <= 64 && l + cw <= 64);
            let s = (ch * cw) as f64 / (64.0 * 64.0);
            assert!((0.17..=1.0).contains(&s), "scale {s}");
            let r = cw as f64 / ch as f64;
            assert!((0.7..=1.43).contains(&r), "ratio {r}");
        }
    }

    #[test]
    fn full_crop_without_flip_is_identity_and_flip_mirrors() {
        let dev = candle_core::Device::Cpu;
        let x = Tensor::rand(0f32, 1f32, (2, 3, 8, 8), &dev).unwrap();
        let id = AugmentSpec {
            crop_scale: [1.0, 1.0],
            crop_ratio: [1.0, 1.0],
            flip: false,
        };
        let mut rng = crate::util::rng("t", 1);
        let y = id.apply(&x, &mut rng).unwrap();
        let d = crate::util::max_abs_diff(&y, &x).unwrap();
        assert!(d < 1e-6);
        let fl = AugmentSpec { flip: true, ..id };
        let y = fl.apply(&x, &mut rng).unwrap();
        let xv: Vec<f32> = x.flatten_all().unwrap().to_vec1().unwrap();
        let yv: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        // Each image is either unchanged or mirrored left-right.
        for i in 0..2 {
            let o = i * 3 * 64;
            let same = (0..192).all(|j| (xv[o + j] - yv[o + j]).abs() < 1e-6);
            let mirrored =
                (0..192).all(|j| (xv[o + j] - yv[o + (j / 8) * 8 + 7 - j % 8]).abs() < 1e-6);
            assert!(same || mirrored);
        }
        // Same seed, same augmentation.
        let a = fl.apply(&x, &mut crate::util::rng("t", 2)).unwrap();
        let b = fl.apply(&x, &mut crate::util::rng("t", 2)).unwrap();
        let d = crate::util::max_abs_diff(&a, &b).unwrap();
        assert_eq!(d, 0.0);
    }

    #[test]
    fn bad_ranges_are_named() {
        let s = AugmentSpec {
            crop_scale: [0.5, 0.2],
            ..Default::default()
        };
        assert_eq!(s.validate().unwrap_err().0, "crop_scale");
    }
}
