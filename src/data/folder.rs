//! Image folders: recursive, sorted listing of PNG / JPEG files and robust decoding (format sniffed
//! from the content, any colour type converted to RGB, unreadable files reported, never dropped
//! silently).

use anyhow::{Context, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// Every PNG / JPEG under `dir` (any letter case), sorted by path; see [`list_images_noted`].
pub fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(list_images_noted(dir)?.files)
}

/// The images of a folder walk, and what the walk left out.
#[derive(Debug, Default)]
pub struct Listing {
    pub files: Vec<PathBuf>,
    /// Entries with an image name that are not listed, and why.
    pub skipped: Vec<(PathBuf, &'static str)>,
}

impl Listing {
    /// One line naming what was left out (for a note), if anything.
    pub fn note(&self) -> Option<String> {
        if self.skipped.is_empty() {
            return None;
        }
        Some(format!(
            "note: left out {} entr{} of the folder: {}",
            self.skipped.len(),
            if self.skipped.len() == 1 { "y" } else { "ies" },
            first_few(&self.skipped)
        ))
    }
}

/// The first five `path (why)` of a list, joined by `; `, then `; …` when there are more.
fn first_few<W: std::fmt::Display>(items: &[(PathBuf, W)]) -> String {
    let shown: Vec<String> = items
        .iter()
        .take(5)
        .map(|(p, why)| format!("{} ({why})", p.display()))
        .collect();
    format!(
        "{}{}",
        shown.join("; "),
        if items.len() > 5 { "; …" } else { "" }
    )
}

fn is_image_name(p: &Path) -> bool {
    p.extension()
        .and_then(|x| x.to_str())
        .is_some_and(|x| EXTENSIONS.contains(&x.to_ascii_lowercase().as_str()))
}

/// Every PNG / JPEG under `dir`, walked safely: links are followed, but a folder is walked once
/// (a link loop or a second link to a folder is left out), a file reached by several paths is
/// listed once (under its first path in sorted order), and what is not a regular file (a FIFO, a
/// device such as a link to /dev/zero, a broken link) is never opened and is left out with a
/// reason. Entries are walked in sorted order, so the listing does not depend on the file system.
pub fn list_images_noted(dir: &Path) -> Result<Listing> {
    walk(dir, is_image_name)
}

/// The content fingerprint of a folder: SHA-256 over the relative path and size of every regular
/// file under it (images, class lists, label files), walked as [`list_images_noted`] walks, and
/// over each file's bytes when the folder holds at most [`FINGERPRINT_BYTES`] (1 GiB; a few
/// seconds of hashing), else over each file's modification time (ns). Renaming, swapping, adding,
/// removing or rewriting a file changes it; above the limit, a rewrite that keeps both size and
/// modification time is not seen.
pub fn fingerprint(dir: &Path) -> Result<String> {
    use sha2::Digest;
    use std::os::unix::fs::MetadataExt;
    let listing = walk(dir, |_| true)?;
    let metas: Vec<std::fs::Metadata> = listing
        .files
        .iter()
        .map(|p| std::fs::metadata(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<_>>()?;
    let total: u64 = metas.iter().map(|m| m.len()).sum();
    let by_content = total <= FINGERPRINT_BYTES;
    let marks: Vec<String> = listing
        .files
        .par_iter()
        .zip(&metas)
        .map(|(p, m)| {
            Ok(if by_content {
                crate::util::sha256_file(p)?
            } else {
                format!("{}.{:09}", m.mtime(), m.mtime_nsec())
            })
        })
        .collect::<Result<_>>()?;
    let mut h = sha2::Sha256::new();
    h.update(if by_content { "content\n" } else { "mtime\n" });
    for ((p, m), mark) in listing.files.iter().zip(&metas).zip(&marks) {
        let rel = p.strip_prefix(dir).unwrap_or(p);
        h.update(format!("{}\t{}\t{mark}\n", rel.display(), m.len()));
    }
    Ok(crate::util::hex(&h.finalize()))
}

/// Folders up to this many bytes are fingerprinted by their files' bytes.
pub const FINGERPRINT_BYTES: u64 = 1 << 30;

/// The regular files under `dir` whose names `want` accepts, walked safely (see
/// [`list_images_noted`]).
fn walk(dir: &Path, want: impl Fn(&Path) -> bool) -> Result<Listing> {
    use std::os::unix::fs::MetadataExt;
    let id = |m: &std::fs::Metadata| (m.dev(), m.ino());
    let root = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut walked = std::collections::HashSet::from([id(&root)]);
    let mut listing = Listing::default();
    let mut found: Vec<(PathBuf, (u64, u64))> = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&d)
            .with_context(|| format!("listing {}", d.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<std::io::Result<_>>()?;
        entries.sort();
        let mut dirs = vec![];
        for p in entries {
            let Ok(m) = std::fs::metadata(&p) else {
                if want(&p) {
                    listing.skipped.push((p, "a broken link"));
                }
                continue;
            };
            if m.is_dir() {
                if walked.insert(id(&m)) {
                    dirs.push(p);
                } else {
                    listing
                        .skipped
                        .push((p, "a folder already walked: a link loop or a second link"));
                }
            } else if want(&p) {
                if m.is_file() {
                    found.push((p, id(&m)));
                } else {
                    listing.skipped.push((p, "not a regular file"));
                }
            }
        }
        // Walked depth first in sorted order.
        stack.extend(dirs.into_iter().rev());
    }
    found.sort();
    let mut seen = std::collections::HashSet::new();
    for (p, file) in found {
        if seen.insert(file) {
            listing.files.push(p);
        } else {
            listing
                .skipped
                .push((p, "the same file as a path listed before it"));
        }
    }
    listing.skipped.sort();
    Ok(listing)
}

/// Decode image bytes by their content (not their name) into 8-bit RGB. JPEGs go through
/// libjpeg-turbo's decoder (default settings, as Pillow uses it), so pixels equal what the Python
/// tools see; what it cannot convert to RGB (CMYK) falls back to the `image` crate.
pub fn decode_rgb(bytes: &[u8]) -> Result<image::RgbImage> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        if let Some(img) = decode_jpeg_turbo(bytes) {
            return Ok(img);
        }
    }
    let img = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .context("reading the image header")?
        .decode()?;
    Ok(img.to_rgb8())
}

/// [`decode_rgb`], refusing truncated files: a JPEG must reach its end-of-image marker (decoders
/// fill a truncated JPEG with grey without an error), and a PNG its IEND chunk.
pub fn decode_rgb_checked(bytes: &[u8]) -> Result<image::RgbImage> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let tail = &bytes[bytes.len().saturating_sub(64)..];
        anyhow::ensure!(
            tail.windows(2).any(|w| w == [0xFF, 0xD9]),
            "truncated JPEG (no end-of-image marker)"
        );
    } else if bytes.starts_with(b"\x89PNG") {
        let tail = &bytes[bytes.len().saturating_sub(32)..];
        anyhow::ensure!(
            tail.windows(4).any(|w| w == b"IEND"),
            "truncated PNG (no IEND chunk)"
        );
    }
    decode_rgb(bytes)
}

fn decode_jpeg_turbo(bytes: &[u8]) -> Option<image::RgbImage> {
    // libjpeg reports corrupt data through a panic in the mozjpeg wrapper; keep it contained.
    std::panic::catch_unwind(|| {
        let d = mozjpeg::Decompress::new_mem(bytes).ok()?;
        let (w, h) = (d.width(), d.height());
        let mut s = d.rgb().ok()?;
        let rows: Vec<[u8; 3]> = s.read_scanlines().ok()?;
        s.finish().ok()?;
        let flat: Vec<u8> = rows.into_iter().flatten().collect();
        image::RgbImage::from_raw(w as u32, h as u32, flat)
    })
    .ok()
    .flatten()
}

/// Decoded images and the files that failed, in input order.
pub struct Decoded {
    pub images: Vec<(PathBuf, image::RgbImage)>,
    pub failed: Vec<(PathBuf, String)>,
}

impl Decoded {
    /// One line naming the failed files (for a warning), if any.
    pub fn warning(&self) -> Option<String> {
        if self.failed.is_empty() {
            return None;
        }
        Some(format!(
            "warning: skipped {} unreadable image{}: {}",
            self.failed.len(),
            if self.failed.len() == 1 { "" } else { "s" },
            first_few(&self.failed)
        ))
    }
}

/// Decode files in parallel.
pub fn decode_files(paths: &[PathBuf]) -> Decoded {
    let results: Vec<(PathBuf, Result<image::RgbImage>)> = paths
        .par_iter()
        .map(|p| {
            let r = std::fs::read(p)
                .map_err(anyhow::Error::from)
                .and_then(|b| decode_rgb(&b));
            (p.clone(), r)
        })
        .collect();
    let mut d = Decoded {
        images: vec![],
        failed: vec![],
    };
    for (p, r) in results {
        match r {
            Ok(img) => d.images.push((p, img)),
            Err(e) => d.failed.push((p, format!("{e:#}").replace('\n', " "))),
        }
    }
    d
}

/// `[3, S, S]` floats in [0, 1] after resizing to exactly `size` × `size` (bicubic, as
/// transformers' ViT/MAE image processors do; aspect ratio not kept).
pub fn to_chw_resized(img: &image::RgbImage, size: usize) -> Vec<f32> {
    let r = if img.width() as usize == size && img.height() as usize == size {
        img.clone()
    } else {
        image::imageops::resize(
            img,
            size as u32,
            size as u32,
            image::imageops::FilterType::CatmullRom,
        )
    };
    let mut out = vec![0f32; 3 * size * size];
    for (i, p) in r.pixels().enumerate() {
        for c in 0..3 {
            out[c * size * size + i] = p[c] as f32 / 255.0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A link loop, a second link to a folder and to a file, a FIFO, a link to /dev/zero and a
    /// broken link, all with image names: each image is listed once, nothing else is opened.
    #[test]
    fn the_walk_lists_each_image_once_and_opens_only_regular_files() {
        use std::os::unix::fs::symlink;
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]));
        for f in ["x.png", "a/y.png", "a/b/z.png"] {
            img.save(root.join(f)).unwrap();
        }
        symlink(root, root.join("a/b/loop")).unwrap();
        symlink(root.join("a"), root.join("again")).unwrap();
        symlink(root.join("x.png"), root.join("x_link.png")).unwrap();
        symlink("/dev/zero", root.join("zero.png")).unwrap();
        symlink(root.join("gone.png"), root.join("broken.png")).unwrap();
        let fifo = std::ffi::CString::new(root.join("pipe.png").to_str().unwrap()).unwrap();
        // SAFETY: a C string naming a path in a temporary folder of this test.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let l = list_images_noted(root).unwrap();
        let rel = |p: &PathBuf| p.strip_prefix(root).unwrap().display().to_string();
        let names: Vec<String> = l.files.iter().map(rel).collect();
        assert_eq!(names, ["a/b/z.png", "a/y.png", "x.png"]);
        let skipped: Vec<(String, &str)> = l.skipped.iter().map(|(p, w)| (rel(p), *w)).collect();
        for (name, why) in [
            ("broken.png", "a broken link"),
            ("pipe.png", "not a regular file"),
            ("zero.png", "not a regular file"),
            ("x_link.png", "the same file as a path listed before it"),
        ] {
            assert!(
                skipped.contains(&(name.to_string(), why)),
                "{name}: {skipped:?}"
            );
        }
        assert!(
            skipped
                .iter()
                .filter(|(_, w)| w.starts_with("a folder already walked"))
                .count()
                == 2,
            "the loop and the second link to a/: {skipped:?}"
        );
        assert!(l.note().unwrap().contains("left out 6 entries"));
    }

    #[test]
    fn lists_recursively_sorted_any_case_and_reports_bad_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        let img = image::RgbImage::from_pixel(4, 4, image::Rgb([10, 20, 30]));
        img.save(d.path().join("b/c/z.PNG")).unwrap();
        img.save_with_format(d.path().join("a.JPEG"), image::ImageFormat::Jpeg)
            .unwrap();
        // A PNG named .jpg is decoded by content.
        img.save_with_format(d.path().join("b/png_named.jpg"), image::ImageFormat::Png)
            .unwrap();
        std::fs::write(d.path().join("b/broken.jpg"), b"not an image").unwrap();
        std::fs::write(d.path().join("notes.txt"), b"x").unwrap();
        let files = list_images(d.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(d.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["a.JPEG", "b/broken.jpg", "b/c/z.PNG", "b/png_named.jpg"]
        );
        let dec = decode_files(&files);
        assert_eq!(dec.images.len(), 3);
        assert_eq!(dec.failed.len(), 1);
        let w = dec.warning().unwrap();
        assert!(
            w.contains("broken.jpg") && w.contains("skipped 1 unreadable image"),
            "{w}"
        );
    }
}
