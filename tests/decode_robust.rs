//! Every broken-image kind a real dataset has: each becomes RGB, or is named and counted in the
//! draw's `failed` list and skipped. Fixtures are made at test time from a real photograph of
//! ../shared/data (never copied into the repository).

mod common;
use common::shared_data;
use i2i_unlearn::data::folder::decode_rgb_checked;
use i2i_unlearn::data::image_folder::{FolderConfig, FolderSplit, ImageFolder};
use i2i_unlearn::data::{DataSource, Split};

/// A real 64×64 photograph and its RGB pixels.
fn photo() -> Option<(Vec<u8>, image::RgbImage)> {
    let p = shared_data()?.join("tiny-imagenet-200/val/images/val_0.JPEG");
    let bytes = std::fs::read(p).ok()?;
    let rgb = decode_rgb_checked(&bytes).unwrap();
    Some((bytes, rgb))
}

fn mean_abs_diff(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).abs())
        .sum::<f64>()
        / a.len() as f64
}

fn jpeg(space: mozjpeg::ColorSpace, w: usize, h: usize, data: &[u8]) -> Vec<u8> {
    let mut c = mozjpeg::Compress::new(space);
    c.set_size(w, h);
    c.set_quality(95.0);
    let mut s = c.start_compress(Vec::new()).unwrap();
    s.write_scanlines(data).unwrap();
    s.finish().unwrap()
}

/// An Adobe CMYK JPEG (as Photoshop writes them: inverted ink values, Adobe APP14 marker). The
/// stored planes (R, G, B, 255) are "no black ink, cyan = 255 - R …", so a decoder that honours
/// the Adobe convention (Pillow: `Image.open(f).convert("RGB")` gives back R, G, B) returns the
/// photograph; one that ignores it returns a near-black image. Checked once against Pillow 13
/// (`convert("RGB")`): on this file and on a CMYK JPEG written by Pillow, the decoder here is
/// within 1 level of Pillow everywhere (mean 0.016).
fn cmyk_jpeg(rgb: &image::RgbImage) -> Vec<u8> {
    let planes: Vec<u8> = rgb.pixels().flat_map(|p| [p[0], p[1], p[2], 255]).collect();
    jpeg(
        mozjpeg::ColorSpace::JCS_CMYK,
        rgb.width() as usize,
        rgb.height() as usize,
        &planes,
    )
}

fn png(rgb: &image::RgbImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    rgb.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// An indexed-colour PNG: the photograph quantised to a 4-bit grey-level palette of colours.
fn palette_png(rgb: &image::RgbImage) -> (Vec<u8>, Vec<u8>) {
    let palette: Vec<[u8; 3]> = (0..16u8).map(|i| [i * 17, 255 - i * 17, 128]).collect();
    let idx: Vec<u8> = rgb
        .pixels()
        .map(|p| ((p[0] as u16 + p[1] as u16 + p[2] as u16) / 3 / 16) as u8)
        .collect();
    let expected: Vec<u8> = idx.iter().flat_map(|&i| palette[i as usize]).collect();
    let mut out = Vec::new();
    {
        let mut e = png::Encoder::new(&mut out, rgb.width(), rgb.height());
        e.set_color(png::ColorType::Indexed);
        e.set_depth(png::BitDepth::Eight);
        e.set_palette(palette.iter().flatten().copied().collect::<Vec<u8>>());
        let mut w = e.write_header().unwrap();
        w.write_image_data(&idx).unwrap();
    }
    (out, expected)
}

fn gray_jpeg(rgb: &image::RgbImage) -> (Vec<u8>, Vec<u8>) {
    let luma: Vec<u8> = image::DynamicImage::ImageRgb8(rgb.clone())
        .to_luma8()
        .into_raw();
    (
        jpeg(
            mozjpeg::ColorSpace::JCS_GRAYSCALE,
            rgb.width() as usize,
            rgb.height() as usize,
            &luma,
        ),
        luma,
    )
}

#[test]
fn cmyk_jpeg_becomes_the_right_rgb() {
    let Some((_, rgb)) = photo() else {
        return common::absent("../shared/data");
    };
    let out = decode_rgb_checked(&cmyk_jpeg(&rgb)).unwrap();
    assert_eq!(out.dimensions(), rgb.dimensions());
    let d = mean_abs_diff(out.as_raw(), rgb.as_raw());
    // JPEG at quality 95 (no chroma subsampling for CMYK): a few levels of error.
    assert!(
        d < 3.0,
        "CMYK decoded {d:.2} levels away from the photograph"
    );
}

#[test]
fn png_named_jpeg_is_sniffed_by_content() {
    let Some((_, rgb)) = photo() else {
        return common::absent("../shared/data");
    };
    let out = decode_rgb_checked(&png(&rgb)).unwrap();
    assert_eq!(out.as_raw(), rgb.as_raw(), "PNG is lossless");
}

#[test]
fn grayscale_and_palette_become_rgb() {
    let Some((_, rgb)) = photo() else {
        return common::absent("../shared/data");
    };
    let (g, luma) = gray_jpeg(&rgb);
    let out = decode_rgb_checked(&g).unwrap();
    assert!(out.pixels().all(|p| p[0] == p[1] && p[1] == p[2]));
    let grey: Vec<u8> = out.pixels().map(|p| p[0]).collect();
    let d = mean_abs_diff(&grey, &luma);
    assert!(d < 2.0, "grayscale decoded {d:.2} levels away");

    let (p, expected) = palette_png(&rgb);
    let out = decode_rgb_checked(&p).unwrap();
    assert_eq!(out.as_raw(), &expected, "palette colours looked up exactly");
}

#[test]
fn truncated_and_garbage_files_are_errors() {
    let Some((bytes, rgb)) = photo() else {
        return common::absent("../shared/data");
    };
    let e = decode_rgb_checked(&bytes[..bytes.len() / 2]).unwrap_err();
    assert!(format!("{e:#}").contains("truncated JPEG"), "{e:#}");
    let p = png(&rgb);
    let e = decode_rgb_checked(&p[..p.len() * 2 / 3]).unwrap_err();
    assert!(format!("{e:#}").contains("truncated PNG"), "{e:#}");
    assert!(decode_rgb_checked(b"<html>404 Not Found</html>").is_err());
    assert!(decode_rgb_checked(&[]).is_err());
}

/// One class folder holding every kind: the readable ones are used, the broken ones are named
/// and counted in the draw (which the run's manifest records).
#[test]
fn image_folder_draw_uses_readable_kinds_and_names_the_broken() {
    let Some((bytes, rgb)) = photo() else {
        return common::absent("../shared/data");
    };
    let d = tempfile::tempdir().unwrap();
    let cls = d.path().join("train/n0");
    std::fs::create_dir_all(&cls).unwrap();
    std::fs::create_dir_all(d.path().join("val/n0")).unwrap();
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("a_plain.JPEG", bytes.clone()),
        ("b_cmyk.JPEG", cmyk_jpeg(&rgb)),
        ("c_png.JPEG", png(&rgb)),
        ("d_gray.JPEG", gray_jpeg(&rgb).0),
        ("e_palette.png", palette_png(&rgb).0),
        ("f_truncated.JPEG", bytes[..bytes.len() / 2].to_vec()),
        ("g_garbage.jpg", b"not an image".to_vec()),
    ];
    for (n, b) in &files {
        std::fs::write(cls.join(n), b).unwrap();
    }
    std::fs::write(d.path().join("val/n0/v.JPEG"), &bytes).unwrap();
    let src = ImageFolder::open(FolderConfig {
        root: d.path().to_path_buf(),
        classes: None,
        train: FolderSplit {
            dir: "train".into(),
            labels: None,
            class_from: Default::default(),
        },
        val: FolderSplit {
            dir: "val".into(),
            labels: None,
            class_from: Default::default(),
        },
    })
    .unwrap();
    let draw = src.draw(0, Split::Train, 7, 0).unwrap();
    assert_eq!(draw.available, 7);
    assert_eq!(draw.images.len(), 5, "five readable kinds");
    assert!(draw.images.iter().all(|im| im.rgb.len() == 64 * 64 * 3));
    let failed: Vec<&str> = draw.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed.len(), 2, "{:?}", draw.failed);
    assert!(failed.iter().any(|n| n.ends_with("f_truncated.JPEG")));
    assert!(failed.iter().any(|n| n.ends_with("g_garbage.jpg")));
}
