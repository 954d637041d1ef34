//! Labels for sample sheets: a title line above and a name for every row on the left, drawn with
//! the charts' font (so sheets read the same on any machine).

use anyhow::Result;
use plotters::prelude::*;

/// `sheet` with `title` above and `row_labels` (one per row of `row_height` pixels) on the left.
pub fn label(
    sheet: &image::RgbImage,
    title: &str,
    row_labels: &[String],
    row_height: u32,
) -> Result<image::RgbImage> {
    super::ensure_font()?;
    let (left, top) = (96u32, 24u32);
    let (w, h) = (sheet.width() + left, sheet.height() + top);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let font = ("sans-serif", 14).into_font().color(&BLACK);
        root.draw(&Text::new(title.to_string(), (4, 4), font.clone()))
            .map_err(|e| anyhow::anyhow!("drawing the sheet title: {e:?}"))?;
        let small = ("sans-serif", 12).into_font().color(&BLACK);
        for (i, l) in row_labels.iter().enumerate() {
            let y = top as i32 + (i as u32 * row_height + row_height / 2) as i32 - 6;
            root.draw(&Text::new(l.clone(), (4, y), small.clone()))
                .map_err(|e| anyhow::anyhow!("drawing a row label: {e:?}"))?;
        }
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing the sheet: {e:?}"))?;
    }
    let mut out = image::RgbImage::from_raw(w, h, buf).expect("buffer of the right size");
    image::imageops::replace(&mut out, sheet, left as i64, top as i64);
    Ok(out)
}
