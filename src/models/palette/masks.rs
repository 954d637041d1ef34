//! Palette's training masks ("hybrid": a random box united with free-form brush strokes), drawn
//! as the fork's `data/util/mask.py` draws them at 256 px and scaled to the model's size. The
//! strokes are rasterised here (a polyline of capsules plus a disc at each vertex, as PIL's
//! `line` + `ellipse` draw them), so pixels at a stroke's edge may differ from PIL's; the
//! official random flips are no-ops (`Image.transpose` returns a copy that is dropped) and are
//! left out.

use crate::masks::PatchMask;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// One image's hybrid mask on the pixel grid of a `size`-px image, fixed by `key`.
pub fn hybrid(size: usize, key: u64) -> PatchMask {
    let mut rng = ChaCha8Rng::seed_from_u64(crate::util::mix(&[key, 0x7061_6c65]));
    let mut hidden = random_bbox(size, &mut rng);
    for (h, s) in hidden.iter_mut().zip(brush_strokes(size, &mut rng)) {
        *h |= s;
    }
    PatchMask {
        grid: size,
        hidden,
        border: None,
    }
}

/// `np.random.randint(lo, hi)` (hi exclusive; `lo` when the range is empty).
fn randint(rng: &mut ChaCha8Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        lo
    } else {
        rng.random_range(lo..hi)
    }
}

/// `random_bbox` with the official defaults at 256 px (box ≤ 128, shrink ≤ 40, margin 20),
/// scaled by `size / 256`.
fn random_bbox(size: usize, rng: &mut ChaCha8Rng) -> Vec<bool> {
    let f = size as f64 / 256.0;
    let max_box = (128.0 * f) as i64;
    let delta = (40.0 * f) as i64;
    let margin = (20.0 * f) as i64;
    let s = size as i64;
    let top = randint(rng, margin, s - margin - max_box);
    let left = randint(rng, margin, s - margin - max_box);
    let dt = randint(rng, 0, delta / 2 + 1);
    let dl = randint(rng, 0, delta / 2 + 1);
    let (top, left) = (top + dt, left + dl);
    let (h, w) = (max_box - dt, max_box - dl);
    let mut m = vec![false; size * size];
    for y in top.max(0)..(top + h).min(s) {
        for x in left.max(0)..(left + w).min(s) {
            m[(y * s + x) as usize] = true;
        }
    }
    m
}

/// `brush_stroke_mask` with the official defaults at 256 px (4–11 vertices, mean angle 2π/5 ±
/// 2π/15, width 12–39 px, 1–3 strokes), widths scaled by `size / 256`.
fn brush_strokes(size: usize, rng: &mut ChaCha8Rng) -> Vec<bool> {
    use std::f64::consts::PI;
    let f = size as f64 / 256.0;
    let s = size as f64;
    let (min_w, max_w) = (
        ((12.0 * f).round() as i64).max(1),
        ((40.0 * f).round() as i64).max(2),
    );
    let (mean_angle, angle_range) = (2.0 * PI / 5.0, 2.0 * PI / 15.0);
    let average_radius = (2.0 * s * s).sqrt() / 8.0;
    let mut m = vec![false; size * size];
    let loops = randint(rng, 1, 4);
    for _ in 0..loops {
        let n = randint(rng, 4, 12) as usize;
        let a_min = mean_angle - rng.random::<f64>() * angle_range;
        let a_max = mean_angle + rng.random::<f64>() * angle_range;
        let mut vertex = vec![(
            randint(rng, 0, size as i64) as f64,
            randint(rng, 0, size as i64) as f64,
        )];
        for i in 0..n {
            let mut angle = a_min + rng.random::<f64>() * (a_max - a_min);
            if i % 2 == 0 {
                angle = 2.0 * PI - angle;
            }
            let z = crate::util::normal_vec(rng, 1)[0] as f64;
            let r = (average_radius + z * (average_radius / 2.0).floor())
                .clamp(0.0, 2.0 * average_radius);
            let (px, py) = *vertex.last().expect("a start vertex");
            let nx = (px + r * angle.cos()).clamp(0.0, s).trunc();
            let ny = (py + r * angle.sin()).clamp(0.0, s).trunc();
            vertex.push((nx, ny));
        }
        let width = randint(rng, min_w, max_w) as f64;
        let half = width / 2.0;
        let disc = (width / 2.0).floor();
        for y in 0..size {
            for x in 0..size {
                let (fx, fy) = (x as f64, y as f64);
                let on_line = vertex
                    .windows(2)
                    .any(|seg| dist_to_segment((fx, fy), seg[0], seg[1]) <= half);
                let on_disc = vertex
                    .iter()
                    .any(|&(vx, vy)| (fx - vx).powi(2) + (fy - vy).powi(2) <= disc * disc);
                if on_line || on_disc {
                    m[y * size + x] = true;
                }
            }
        }
    }
    m
}

fn dist_to_segment(p: (f64, f64), a: (f64, f64), b: (f64, f64)) -> f64 {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    let t = if len2 == 0.0 {
        0.0
    } else {
        (((p.0 - a.0) * dx + (p.1 - a.1) * dy) / len2).clamp(0.0, 1.0)
    };
    ((p.0 - a.0 - t * dx).powi(2) + (p.1 - a.1 - t * dy).powi(2)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_masks_are_deterministic_varied_and_partial() {
        for size in [32, 256] {
            let a = hybrid(size, 7);
            assert_eq!(a, hybrid(size, 7));
            assert_ne!(a, hybrid(size, 8));
            let mut shares = vec![];
            for k in 0..40 {
                let m = hybrid(size, k);
                let share = m.num_hidden() as f64 / (size * size) as f64;
                assert!(share > 0.05 && share < 0.95, "{size} px key {k}: {share}");
                shares.push(share);
            }
            let mean = shares.iter().sum::<f64>() / shares.len() as f64;
            // A 96–128 px box is 14–25 % of 256², the strokes add to it.
            assert!(
                mean > 0.15 && mean < 0.7,
                "{size} px mean hole share {mean}"
            );
        }
    }
}
