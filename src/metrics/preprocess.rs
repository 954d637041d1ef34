//! Image → Inception input, in the three protocols people report FID under. The mode is part of
//! every number's protocol string.
//!
//! | mode            | as                        | resize to 299                                              | values          |
//! |-----------------|---------------------------|------------------------------------------------------------|-----------------|
//! | `pytorch-fid`   | pytorch-fid 0.3.0         | bilinear, align_corners=False, no antialias, on [0,1] floats | 2x − 1          |
//! | `clean`         | clean-fid "clean"         | PIL bicubic per channel on float32 (antialiased), no rounding | (x − 128) / 128 |
//! | `torch-fidelity`| torch-fidelity 0.4        | TF 1.x bilinear (no half-pixel offset) on uint8 values      | (x − 128) / 128 |
//! | `paper-is`      | the paper's IS (`metric.py`) | PIL bilinear to 256 × 256 on uint8, then bilinear (torch, align_corners=False) of the normalised tensor | (x/255 − μ_CIFAR) / σ_CIFAR |

use crate::resample::{bicubic_pil, bilinear_tf1, bilinear_torch, pil_resize_rgb8, PilFilter};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ResizeMode {
    #[serde(rename = "pytorch-fid")]
    PytorchFid,
    #[serde(rename = "clean")]
    Clean,
    #[serde(rename = "torch-fidelity")]
    TorchFidelity,
    /// The unlearning paper's Inception Score input (its official `metric.py`).
    #[serde(rename = "paper-is")]
    PaperIs,
}

/// The CIFAR-10 mean and std the paper's official Inception Score normalises with (a quirk).
pub const CIFAR_MEAN: [f32; 3] = [0.4914, 0.4822, 0.4465];
pub const CIFAR_STD: [f32; 3] = [0.2023, 0.1994, 0.2010];

impl FromStr for ResizeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "pytorch-fid" => Ok(Self::PytorchFid),
            "clean" => Ok(Self::Clean),
            "torch-fidelity" => Ok(Self::TorchFidelity),
            "paper-is" => Ok(Self::PaperIs),
            other => Err(format!(
                "unknown mode `{other}`: use pytorch-fid, clean, torch-fidelity or paper-is"
            )),
        }
    }
}

impl std::fmt::Display for ResizeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::PytorchFid => "pytorch-fid",
            Self::Clean => "clean",
            Self::TorchFidelity => "torch-fidelity",
            Self::PaperIs => "paper-is",
        })
    }
}

impl ResizeMode {
    /// `[3, size, size]` model input from an 8-bit RGB image.
    pub fn prepare(&self, img: &image::RgbImage, size: usize) -> Vec<f32> {
        if *self == Self::PaperIs {
            // torchvision Resize((256, 256)) on the PIL image, ToTensor, Normalize(CIFAR), then
            // nn.Upsample(299, bilinear) of the normalised tensor.
            let small = pil_resize_rgb8(img, 256, 256, PilFilter::Bilinear);
            let mut out = Vec::with_capacity(3 * size * size);
            for c in 0..3 {
                let plane: Vec<f32> = small
                    .pixels()
                    .map(|p| (p[c] as f32 / 255.0 - CIFAR_MEAN[c]) / CIFAR_STD[c])
                    .collect();
                out.extend(bilinear_torch(&plane, 256, 256, size, size));
            }
            return out;
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        let planes: Vec<Vec<f32>> = (0..3)
            .map(|c| img.pixels().map(|p| p[c] as f32).collect())
            .collect();
        let mut out = Vec::with_capacity(3 * size * size);
        for plane in planes {
            let (resized, map): (Vec<f32>, fn(f32) -> f32) = match self {
                Self::PytorchFid => {
                    let unit: Vec<f32> = plane.iter().map(|v| v / 255.0).collect();
                    (bilinear_torch(&unit, h, w, size, size), |x| 2.0 * x - 1.0)
                }
                Self::Clean => (bicubic_pil(&plane, h, w, size, size), |x| {
                    (x - 128.0) / 128.0
                }),
                Self::TorchFidelity => (bilinear_tf1(&plane, h, w, size, size), |x| {
                    (x - 128.0) / 128.0
                }),
                Self::PaperIs => unreachable!("handled above"),
            };
            out.extend(resized.into_iter().map(map));
        }
        out
    }
}
