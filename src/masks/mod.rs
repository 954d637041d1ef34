//! Masks: which patches of an image the model may not see, and which pixels it must fill in.
//!
//! A mask is drawn on the family's mask grid (G × G cells of P × P pixels: MAE patches, MAGE
//! tokens; a pixel grid for diffusion), so the same mask drives the model's input (visible cells)
//! and the evaluation (pixels pasted from the prediction).
//!
//! | spec           | meaning                                                                       |
//! |----------------|-------------------------------------------------------------------------------|
//! | `center:K`     | the central K × K cells are hidden (inpainting; the paper's K = 8 of 16)       |
//! | `outpaint:R`   | all four borders hidden, each R/32 of the side (8·R px at 256 px; R = 1..15)   |
//! | `random_box:K` | a K × K cell box at a random position, fixed per image by the cell's seed      |
//! | `random:R`     | R % of the cells, chosen uniformly at random per image (MAE-style)             |
//!
//! Outpainting is pixel-exact, as the official evaluation draws it: the pasted hole is the border
//! of round(S·R/32) pixels; the model hides every cell that holds a hidden pixel (ceil(G·R/32)
//! cells per border), so it never sees a pixel it must predict. Where a cell is wider than the
//! remaining border, the model predicts a little more than is pasted.

pub mod composite;
pub mod hole;

pub use composite::Composite;

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A mask kind as written in the experiment file (`center:4`, `outpaint:8`, `random_box:3`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MaskSpec {
    Center {
        k: usize,
    },
    Outpaint {
        r: usize,
    },
    RandomBox {
        k: usize,
    },
    /// `percent` % of the patches (rounded down), uniformly at random per image.
    Random {
        percent: usize,
    },
}

pub const MASK_CHOICES: &str =
    "center:K (K×K central cells), outpaint:R (each border R/32 of the side, R = 1..15), random_box:K, random:PERCENT";

impl FromStr for MaskSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (kind, arg) = s
            .split_once(':')
            .ok_or_else(|| format!("unknown mask `{s}`: expected one of {MASK_CHOICES}"))?;
        let n: usize = arg
            .trim()
            .parse()
            .map_err(|_| format!("mask `{s}`: `{arg}` is not a whole number"))?;
        let spec = match kind.trim() {
            "center" => MaskSpec::Center { k: n },
            "outpaint" => MaskSpec::Outpaint { r: n },
            "random_box" => MaskSpec::RandomBox { k: n },
            "random" => MaskSpec::Random { percent: n },
            other => {
                return Err(format!(
                    "unknown mask kind `{other}`: expected one of {MASK_CHOICES}"
                ))
            }
        };
        match spec {
            MaskSpec::Center { k: 0 } | MaskSpec::RandomBox { k: 0 } => {
                Err(format!("mask `{s}`: K must be at least 1"))
            }
            MaskSpec::Outpaint { r } if r == 0 || r > 15 => {
                Err(format!("mask `{s}`: R must be in 1..=15"))
            }
            MaskSpec::Random { percent } if percent == 0 || percent >= 100 => {
                Err(format!("mask `{s}`: the percentage must be in 1..=99"))
            }
            ok => Ok(ok),
        }
    }
}

impl fmt::Display for MaskSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MaskSpec::Center { k } => write!(f, "center:{k}"),
            MaskSpec::Outpaint { r } => write!(f, "outpaint:{r}"),
            MaskSpec::RandomBox { k } => write!(f, "random_box:{k}"),
            MaskSpec::Random { percent } => write!(f, "random:{percent}"),
        }
    }
}

impl Serialize for MaskSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for MaskSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// One image's mask on a G × G grid; `hidden[row * G + col]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatchMask {
    pub grid: usize,
    pub hidden: Vec<bool>,
    /// A pixel-exact hole finer than the grid: every border `num/den` of the side. `None`: the
    /// hole is exactly the hidden cells.
    pub border: Option<(usize, usize)>,
}

impl PatchMask {
    pub fn num_hidden(&self) -> usize {
        self.hidden.iter().filter(|h| **h).count()
    }
    /// Visible patch indices, ascending.
    pub fn visible_ids(&self) -> Vec<u32> {
        (0..self.hidden.len() as u32)
            .filter(|&i| !self.hidden[i as usize])
            .collect()
    }
    pub fn hidden_ids(&self) -> Vec<u32> {
        (0..self.hidden.len() as u32)
            .filter(|&i| self.hidden[i as usize])
            .collect()
    }
    fn from_box(grid: usize, top: usize, left: usize, h: usize, w: usize) -> Self {
        let mut hidden = vec![false; grid * grid];
        for r in top..top + h {
            for c in left..left + w {
                hidden[r * grid + c] = true;
            }
        }
        Self {
            grid,
            hidden,
            border: None,
        }
    }
    /// `hidden` of the G × G cells, a uniform random subset fixed by `key` (and `salt`, which
    /// keeps the draws of different mask kinds apart): cells ranked by a per-(image, cell) hash.
    pub fn random(grid: usize, hidden: usize, key: u64, salt: u64) -> Self {
        let n = grid * grid;
        let mut order: Vec<(u64, usize)> = (0..n)
            .map(|i| (crate::util::mix(&[key, salt, i as u64]), i))
            .collect();
        order.sort_unstable();
        let mut mask = vec![false; n];
        for &(_, i) in &order[..hidden.min(n)] {
            mask[i] = true;
        }
        Self {
            grid,
            hidden: mask,
            border: None,
        }
    }

    /// Whether pixel (y, x) of an image of `size` pixels is in the hole.
    pub fn pixel_hidden(&self, size: usize, y: usize, x: usize) -> bool {
        match self.border {
            Some((num, den)) => {
                let w = border_px(size, num, den);
                y < w || x < w || y >= size - w || x >= size - w
            }
            None => {
                let p = size / self.grid;
                self.hidden[(y / p) * self.grid + x / p]
            }
        }
    }
}

/// Mask keys for a batch: image id mixed with the seed and (for training) the step, so random masks
/// differ across steps but are reproducible.
pub fn mask_keys(ids: &[u64], seed: u64, step: Option<usize>) -> Vec<u64> {
    ids.iter()
        .map(|&id| crate::util::mix(&[id, seed, step.map(|s| s as u64 + 1).unwrap_or(0)]))
        .collect()
}

/// Width in pixels of a border that is `num/den` of a side of `size` pixels (rounded).
pub fn border_px(size: usize, num: usize, den: usize) -> usize {
    (size * num + den / 2) / den
}

/// Cells per border on a grid of `grid` cells that cover a `num/den` border: every cell holding a
/// hidden pixel is hidden.
pub fn border_cells(grid: usize, num: usize, den: usize) -> usize {
    (grid * num).div_ceil(den)
}

impl MaskSpec {
    /// Check that this mask fits a G × G grid and leaves something visible and something hidden.
    pub fn check_grid(&self, grid: usize) -> Result<(), String> {
        let m = self.render(grid, 0)?;
        let h = m.num_hidden();
        if h == 0 || h == grid * grid {
            return Err(format!(
                "mask `{self}` on a {grid}×{grid} patch grid hides {h} of {} patches; it must hide some and leave some visible",
                grid * grid
            ));
        }
        Ok(())
    }

    /// The mask of one image. `key` (the image's stable id mixed with the cell seed) only matters
    /// for random masks.
    pub fn render(&self, grid: usize, key: u64) -> Result<PatchMask, String> {
        match *self {
            MaskSpec::Center { k } => {
                if k >= grid {
                    return Err(format!(
                        "mask `{self}`: K = {k} must be below the grid size {grid}"
                    ));
                }
                let s = (grid - k) / 2;
                Ok(PatchMask::from_box(grid, s, s, k, k))
            }
            MaskSpec::Outpaint { r } => {
                let per_side = border_cells(grid, r, 32);
                if 2 * per_side >= grid {
                    return Err(format!(
                        "mask `{self}` hides {per_side} of {grid} cells on each border of a {grid}×{grid} grid, leaving nothing visible; use a smaller R or a finer grid"
                    ));
                }
                let vis = grid - 2 * per_side;
                let inner = PatchMask::from_box(grid, per_side, per_side, vis, vis);
                Ok(PatchMask {
                    grid,
                    hidden: inner.hidden.iter().map(|h| !h).collect(),
                    border: Some((r, 32)),
                })
            }
            MaskSpec::Random { percent } => {
                let n = grid * grid;
                let hidden_n = (n * percent / 100).clamp(1, n - 1);
                Ok(PatchMask::random(grid, hidden_n, key, 0x7261_6e64))
            }
            MaskSpec::RandomBox { k } => {
                if k >= grid {
                    return Err(format!(
                        "mask `{self}`: K = {k} must be below the grid size {grid}"
                    ));
                }
                let span = (grid - k + 1) as u64;
                let h = crate::util::splitmix64(key ^ 0x6d61_736b);
                let top = (h % span) as usize;
                let left = ((h >> 32) % span) as usize;
                Ok(PatchMask::from_box(grid, top, left, k, k))
            }
        }
    }

    /// Masks for a batch of images with stable ids `keys`.
    pub fn batch(&self, grid: usize, keys: &[u64]) -> Result<BatchMask> {
        let masks = keys
            .iter()
            .map(|&k| self.render(grid, k))
            .collect::<Result<Vec<_>, String>>()
            .map_err(anyhow::Error::msg)?;
        BatchMask::new(masks)
    }
}

/// The masks of a batch; every image hides the same number of patches (so the encoder's input is
/// rectangular), though not necessarily the same ones.
#[derive(Clone, Debug)]
pub struct BatchMask {
    pub masks: Vec<PatchMask>,
}

impl BatchMask {
    pub fn new(masks: Vec<PatchMask>) -> Result<Self> {
        anyhow::ensure!(!masks.is_empty(), "empty batch mask");
        let n = masks[0].num_hidden();
        let g = masks[0].grid;
        anyhow::ensure!(
            masks.iter().all(|m| m.num_hidden() == n && m.grid == g),
            "all masks of a batch must hide the same number of patches on the same grid"
        );
        Ok(Self { masks })
    }
    /// Masks that may hide different numbers of cells (families that take the hole as pixels,
    /// such as diffusion); the patch-list accessors (`visible_ids`, `ids_restore`,
    /// `num_visible`) assume equal counts and must not be used on them.
    pub fn ragged(masks: Vec<PatchMask>) -> Result<Self> {
        anyhow::ensure!(!masks.is_empty(), "empty batch mask");
        let g = masks[0].grid;
        anyhow::ensure!(
            masks.iter().all(|m| m.grid == g),
            "all masks of a batch must be on the same grid"
        );
        Ok(Self { masks })
    }
    pub fn len(&self) -> usize {
        self.masks.len()
    }
    pub fn is_empty(&self) -> bool {
        self.masks.is_empty()
    }
    pub fn grid(&self) -> usize {
        self.masks[0].grid
    }
    pub fn num_patches(&self) -> usize {
        self.grid() * self.grid()
    }
    pub fn num_visible(&self) -> usize {
        self.num_patches() - self.masks[0].num_hidden()
    }
    /// Hidden cells summed over the batch.
    pub fn total_hidden(&self) -> usize {
        self.masks.iter().map(|m| m.num_hidden()).sum()
    }
    /// The first `r` images' masks and the rest.
    pub fn split_at(&self, r: usize) -> (Self, Self) {
        let (a, b) = self.masks.split_at(r);
        (Self { masks: a.to_vec() }, Self { masks: b.to_vec() })
    }
    /// Images `start .. start + len`'s masks.
    pub fn slice(&self, start: usize, len: usize) -> Self {
        Self {
            masks: self.masks[start..start + len].to_vec(),
        }
    }
    /// The first `n` images' masks.
    pub fn head(&self, n: usize) -> Self {
        Self {
            masks: self.masks[..n].to_vec(),
        }
    }
    /// Visible patch indices, `[B, num_visible]` u32, ascending per row.
    pub fn visible_ids(&self, device: &Device) -> Result<Tensor> {
        let ids: Vec<u32> = self.masks.iter().flat_map(|m| m.visible_ids()).collect();
        Ok(Tensor::from_vec(
            ids,
            (self.len(), self.num_visible()),
            device,
        )?)
    }
    /// The permutation that restores patch order from `[visible…, hidden…]`, `[B, N]` u32
    /// (transformers' `ids_restore`).
    pub fn ids_restore(&self, device: &Device) -> Result<Tensor> {
        let mut out = Vec::with_capacity(self.len() * self.num_patches());
        for m in &self.masks {
            let order: Vec<u32> = m.visible_ids().into_iter().chain(m.hidden_ids()).collect();
            let mut restore = vec![0u32; order.len()];
            for (pos, &patch) in order.iter().enumerate() {
                restore[patch as usize] = pos as u32;
            }
            out.extend(restore);
        }
        Ok(Tensor::from_vec(
            out,
            (self.len(), self.num_patches()),
            device,
        )?)
    }
    /// 1 where hidden, `[B, N]` f32 (transformers' `mask`).
    pub fn patch_mask(&self, device: &Device) -> Result<Tensor> {
        let v: Vec<f32> = self
            .masks
            .iter()
            .flat_map(|m| m.hidden.iter().map(|&h| if h { 1.0 } else { 0.0 }))
            .collect();
        Ok(Tensor::from_vec(
            v,
            (self.len(), self.num_patches()),
            device,
        )?)
    }
    /// 1 where the pixel is in the hole, `[B, 1, H, W]` f32 for images of `size` pixels.
    pub fn pixel_mask(&self, size: usize, device: &Device) -> Result<Tensor> {
        let g = self.grid();
        anyhow::ensure!(
            size % g == 0,
            "image size {size} is not a multiple of the grid {g}"
        );
        let mut v = vec![0f32; self.len() * size * size];
        for (b, m) in self.masks.iter().enumerate() {
            for y in 0..size {
                for x in 0..size {
                    if m.pixel_hidden(size, y, x) {
                        v[b * size * size + y * size + x] = 1.0;
                    }
                }
            }
        }
        Ok(Tensor::from_vec(v, (self.len(), 1, size, size), device)?)
    }
}

/// Keep the known pixels and take the prediction only where the mask hides them.
pub fn paste(known: &Tensor, predicted: &Tensor, pixel_mask: &Tensor) -> Result<Tensor> {
    let keep = pixel_mask.affine(-1.0, 1.0)?;
    Ok((known.broadcast_mul(&keep)? + predicted.broadcast_mul(pixel_mask)?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(m: &PatchMask) -> String {
        m.hidden
            .chunks(m.grid)
            .map(|r| {
                r.iter()
                    .map(|&h| if h { '#' } else { '.' })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn parse_and_print_round_trip() {
        for s in ["center:4", "outpaint:8", "random_box:3", "random:75"] {
            assert_eq!(s.parse::<MaskSpec>().unwrap().to_string(), s);
        }
        assert!("centre:4"
            .parse::<MaskSpec>()
            .unwrap_err()
            .contains("center:K"));
        assert!("center:x".parse::<MaskSpec>().is_err());
        assert!("outpaint:16".parse::<MaskSpec>().is_err());
    }

    #[test]
    fn center_mask_is_centred() {
        let m = MaskSpec::Center { k: 4 }.render(8, 0).unwrap();
        assert_eq!(m.num_hidden(), 16);
        assert_eq!(
            show(&m),
            "........\n........\n..####..\n..####..\n..####..\n..####..\n........\n........"
        );
    }

    #[test]
    fn outpaint_is_the_complement_of_a_centred_square() {
        let m = MaskSpec::Outpaint { r: 8 }.render(8, 0).unwrap();
        assert_eq!(m.num_hidden(), 64 - 16);
        let c = MaskSpec::Center { k: 4 }.render(8, 0).unwrap();
        assert!(m.hidden.iter().zip(&c.hidden).all(|(a, b)| a != b));
        // On the paper's 16-grid, r = 8 keeps the central 8 × 8.
        assert_eq!(
            MaskSpec::Outpaint { r: 8 }
                .render(16, 0)
                .unwrap()
                .num_hidden(),
            256 - 64
        );
    }

    #[test]
    fn random_box_is_deterministic_per_key_and_varies_across_keys() {
        let s = MaskSpec::RandomBox { k: 3 };
        assert_eq!(s.render(8, 5).unwrap(), s.render(8, 5).unwrap());
        let distinct: std::collections::HashSet<Vec<bool>> =
            (0..20).map(|k| s.render(8, k).unwrap().hidden).collect();
        assert!(distinct.len() > 5);
        assert!((0..20).all(|k| s.render(8, k).unwrap().num_hidden() == 9));
        let r = MaskSpec::Random { percent: 75 };
        assert_eq!(r.render(14, 3).unwrap().num_hidden(), 147);
        assert_eq!(r.render(14, 3).unwrap(), r.render(14, 3).unwrap());
        assert_ne!(r.render(14, 3).unwrap(), r.render(14, 4).unwrap());
    }

    #[test]
    fn ids_restore_inverts_visible_then_hidden_order() {
        let keys: Vec<u64> = (0..3).collect();
        let b = MaskSpec::RandomBox { k: 2 }.batch(4, &keys).unwrap();
        let r = b
            .ids_restore(&Device::Cpu)
            .unwrap()
            .to_vec2::<u32>()
            .unwrap();
        for (m, restore) in b.masks.iter().zip(r) {
            let order: Vec<u32> = m.visible_ids().into_iter().chain(m.hidden_ids()).collect();
            for (patch, &pos) in restore.iter().enumerate() {
                assert_eq!(order[pos as usize] as usize, patch);
            }
        }
    }

    #[test]
    fn grid_checks_reject_masks_that_hide_everything() {
        assert!(MaskSpec::Center { k: 8 }.check_grid(8).is_err());
        assert!(MaskSpec::Center { k: 4 }.check_grid(8).is_ok());
        assert!(MaskSpec::Outpaint { r: 8 }.check_grid(4).is_ok());
        assert!(MaskSpec::Outpaint { r: 9 }.check_grid(4).is_err());
    }

    #[test]
    fn outpaint_is_pixel_exact_and_the_cells_cover_it() {
        // 32 px, 4 px cells: r = 1 hides a 1 px border, the model hides one cell per border.
        let m = MaskSpec::Outpaint { r: 1 }.render(8, 0).unwrap();
        assert_eq!(m.num_hidden(), 64 - 36);
        let b = BatchMask::new(vec![m.clone()]).unwrap();
        let pm = b.pixel_mask(32, &Device::Cpu).unwrap();
        let hidden: f32 = pm.sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(hidden as usize, 32 * 32 - 30 * 30);
        // The paper's 256 px: each border 8·r px; every hidden pixel lies in a hidden cell.
        for r in 1..=13 {
            let m = MaskSpec::Outpaint { r }.render(16, 0).unwrap();
            assert_eq!(border_px(256, r, 32), 8 * r);
            for y in 0..256 {
                for x in 0..256 {
                    if m.pixel_hidden(256, y, x) {
                        assert!(m.hidden[(y / 16) * 16 + x / 16], "r={r} ({y},{x})");
                    }
                }
            }
        }
        // 224 px (MAE-base), 16 px patches: 7·r px per border, ceil(14·r/32) patches.
        let m = MaskSpec::Outpaint { r: 8 }.render(14, 0).unwrap();
        assert_eq!(border_px(224, 8, 32), 56);
        assert_eq!(m.num_hidden(), 196 - 36);
    }
}
