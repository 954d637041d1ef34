//! A labelled grid of equal-sized images (the paper's qualitative figures): a title line, a
//! header over every column and a label left of every row, drawn with the charts' font.

use anyhow::Result;
use plotters::prelude::*;

/// `cells[row][col]` (all the size of `cells[0][0]`, scaled up by a whole factor to at least 96 px
/// wide so that the column headers fit) with `title`
/// above, `col_labels` over the columns and `row_labels` left of the rows.
pub fn labelled_grid(
    cells: &[Vec<image::RgbImage>],
    row_labels: &[String],
    col_labels: &[String],
    title: &str,
) -> Result<image::RgbImage> {
    super::ensure_font()?;
    anyhow::ensure!(!cells.is_empty() && !cells[0].is_empty(), "an empty figure");
    let (w0, h0) = cells[0][0].dimensions();
    let scale = 96u32.div_ceil(w0).max(1);
    let (cw, ch) = (w0 * scale, h0 * scale);
    let gap = 4u32;
    let (left, top) = (170u32, 56u32);
    let ncols = cells.iter().map(|r| r.len()).max().unwrap_or(0) as u32;
    let (w, h) = (
        left + ncols * (cw + gap),
        top + cells.len() as u32 * (ch + gap),
    );
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        let err = |e| anyhow::anyhow!("drawing the figure: {e:?}");
        root.draw(&Text::new(
            title.to_string(),
            (6, 6),
            ("sans-serif", 16).into_font(),
        ))
        .map_err(err)?;
        let small = ("sans-serif", 12).into_font();
        for (j, l) in col_labels.iter().enumerate() {
            let x = (left + j as u32 * (cw + gap)) as i32;
            let l: String = l.chars().take((cw / 6).max(8) as usize).collect();
            root.draw(&Text::new(l, (x, top as i32 - 18), small.clone()))
                .map_err(err)?;
        }
        for (i, l) in row_labels.iter().enumerate() {
            let y = (top + i as u32 * (ch + gap) + ch / 2) as i32 - 6;
            root.draw(&Text::new(l.clone(), (6, y), small.clone()))
                .map_err(err)?;
        }
        root.present().map_err(err)?;
    }
    let mut out = image::RgbImage::from_raw(w, h, buf).expect("buffer of the right size");
    for (i, row) in cells.iter().enumerate() {
        for (j, img) in row.iter().enumerate() {
            let img = image::imageops::resize(img, cw, ch, image::imageops::FilterType::Nearest);
            let (x, y) = (left + j as u32 * (cw + gap), top + i as u32 * (ch + gap));
            image::imageops::replace(&mut out, &img, x as i64, y as i64);
        }
    }
    Ok(out)
}
