//! Sample sheets: for a few retain and forget images of a cell, rows of truth, masked input and
//! output.

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

pub fn write_png(img: &image::RgbImage, path: &std::path::Path) -> Result<()> {
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)?;
    crate::util::write_atomic(path, bytes.get_ref())
}
