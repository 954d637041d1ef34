//! Sample sheets: for a few retain and forget images of a cell, rows of truth, masked input and
//! output, labelled (which set, which row; the cell's method, α, mask and seed as the title) when
//! the `report` feature draws text.

use anyhow::Result;
use candle_core::Tensor;

/// Sample sheet of a cell: for the first images of each set, rows of truth, masked input (hidden
/// pixels grey) and output, each image scaled ×2 (nearest).
pub fn sample_sheet(rows: &[(Tensor, Tensor, Tensor)], per_row: usize) -> Result<image::RgbImage> {
    let (_, _, h, w) = rows[0].0.dims4()?;
    let scale = if h <= 64 { 2 } else { 1 };
    let (cw, ch) = (w * scale, h * scale);
    let mut sheet = image::RgbImage::from_pixel(
        (per_row * cw) as u32,
        (rows.len() * 3 * ch) as u32,
        image::Rgb([255, 255, 255]),
    );
    for (ri, (truth, masked, out)) in rows.iter().enumerate() {
        for (k, t) in [truth, masked, out].iter().enumerate() {
            let n = t.dim(0)?.min(per_row);
            for i in 0..n {
                let img = crate::data::tensor_to_rgb(&t.get(i)?)?;
                let img = image::imageops::resize(
                    &img,
                    cw as u32,
                    ch as u32,
                    image::imageops::FilterType::Nearest,
                );
                image::imageops::replace(
                    &mut sheet,
                    &img,
                    (i * cw) as i64,
                    ((ri * 3 + k) * ch) as i64,
                );
            }
        }
    }
    Ok(sheet)
}

/// [`sample_sheet`] with its labels: `sets` names each `(truth, masked, output)` group (e.g.
/// `D_R`, `D_F`), `title` says which cell it is.
pub fn labelled_sheet(
    rows: &[(Tensor, Tensor, Tensor)],
    per_row: usize,
    sets: &[&str],
    title: &str,
) -> Result<image::RgbImage> {
    let sheet = sample_sheet(rows, per_row)?;
    #[cfg(feature = "report")]
    {
        let (_, _, h, _) = rows[0].0.dims4()?;
        let scale = if h <= 64 { 2 } else { 1 };
        let labels: Vec<String> = sets
            .iter()
            .flat_map(|s| ["truth", "masked", "output"].map(|k| format!("{s} {k}")))
            .collect();
        crate::draw::sheet::label(&sheet, title, &labels, (h * scale) as u32)
    }
    #[cfg(not(feature = "report"))]
    {
        let _ = (sets, title);
        Ok(sheet)
    }
}

pub fn write_png(img: &image::RgbImage, path: &std::path::Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    crate::util::write_atomic(path, bytes.get_ref())
}

#[cfg(all(test, feature = "report"))]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The labelled sheet keeps the images and adds a title band and a label column with text.
    #[test]
    fn sheets_carry_a_title_and_row_labels() {
        let t = Tensor::full(0.5f32, (2, 3, 16, 16), &Device::Cpu).unwrap();
        let rows = vec![(t.clone(), t.clone(), t.clone()); 2];
        let plain = sample_sheet(&rows, 4).unwrap();
        let l = labelled_sheet(&rows, 4, &["D_R", "D_F"], "Ours · α = 0.25 · center:2").unwrap();
        assert!(l.width() > plain.width() && l.height() > plain.height());
        let (dx, dy) = (l.width() - plain.width(), l.height() - plain.height());
        // The images are where they were, shifted by the margins.
        assert_eq!(l.get_pixel(dx + 3, dy + 3), plain.get_pixel(3, 3));
        // Text: dark pixels in the title band and in the label column.
        let dark = |x0: u32, y0: u32, x1: u32, y1: u32| {
            (y0..y1).any(|y| (x0..x1).any(|x| l.get_pixel(x, y).0[0] < 100))
        };
        assert!(dark(0, 0, l.width(), dy), "no title");
        assert!(dark(0, dy, dx, l.height()), "no row labels");
    }
}
