//! Sizes a checkpoint declares, checked against the file and the machine before anything is
//! allocated. A crafted torch file of a few hundred bytes can declare tensors of terabytes, a
//! negative storage count or a stride-0 view that expands to gigabytes; the readers here refuse
//! each with one line (a [`user`] error: exit 2) instead of aborting on an allocation.

use crate::error::user;
use anyhow::Result;
use std::path::Path;

/// The most bytes the tensors of one checkpoint may take: the machine's memory (64 GiB where it
/// cannot be read). `I2I_UNLEARN_MAX_CHECKPOINT_BYTES` lowers or raises it.
pub fn memory_limit() -> u64 {
    std::env::var("I2I_UNLEARN_MAX_CHECKPOINT_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .or_else(crate::host::memory_bytes)
        .unwrap_or(64 << 30)
}

/// How far a view may expand its storage (a stride-0 view repeats elements): at most this many
/// times the file's size, plus 64 MiB. No real state dict comes near it.
const EXPANSION: u64 = 16;

/// The bytes of a view (elements × element size) and the bytes of storage it reaches (its
/// extent), or an error naming what overflows or is negative.
pub fn view_bytes(
    what: &str,
    size: &[i64],
    stride: &[i64],
    offset: i64,
    elem: usize,
) -> Result<(u64, u64)> {
    let bad = |why: &str| {
        user(format!(
            "{what}: {why}; the checkpoint is corrupt or crafted"
        ))
    };
    if size.iter().chain(stride).any(|&v| v < 0) || offset < 0 {
        return Err(bad("a negative size, stride or offset"));
    }
    if size.len() != stride.len() {
        return Err(bad("sizes and strides of different ranks"));
    }
    let mut numel: u64 = 1;
    let mut last: u64 = 0;
    for (&n, &s) in size.iter().zip(stride) {
        numel = numel
            .checked_mul(n as u64)
            .ok_or_else(|| bad("an element count that overflows"))?;
        if n > 0 {
            last = ((n as u64 - 1).checked_mul(s as u64))
                .and_then(|x| x.checked_add(last))
                .ok_or_else(|| bad("a stride that overflows"))?;
        }
    }
    let elem = elem as u64;
    let bytes = numel
        .checked_mul(elem)
        .ok_or_else(|| bad("a byte size that overflows"))?;
    let extent = if numel == 0 {
        0
    } else {
        (offset as u64)
            .checked_add(last)
            .and_then(|x| x.checked_add(1))
            .and_then(|x| x.checked_mul(elem))
            .ok_or_else(|| bad("an extent that overflows"))?
    };
    Ok((bytes, extent))
}

/// Refuses a view that reaches past its `storage` bytes or expands beyond what `file_len`
/// could hold.
pub fn check_view(
    what: &str,
    (bytes, extent): (u64, u64),
    storage: u64,
    file_len: u64,
) -> Result<()> {
    if extent > storage {
        return Err(user(format!(
            "{what}: declares a view of {extent} bytes in a storage of {storage}; the checkpoint is corrupt or crafted"
        )));
    }
    let cap = file_len.saturating_mul(EXPANSION).saturating_add(64 << 20);
    if bytes > cap {
        return Err(user(format!(
            "{what}: declares {bytes} bytes, more than {EXPANSION}× the file's {file_len} (a stride-0 view?); the checkpoint is corrupt or crafted"
        )));
    }
    Ok(())
}

/// Refuses a checkpoint whose tensors together need more than [`memory_limit`].
pub fn check_total(what: &str, total: u64) -> Result<()> {
    let limit = memory_limit();
    if total > limit {
        return Err(user(format!(
            "{what}: its tensors declare {:.1} GiB, more than this machine's {:.1} GiB (set I2I_UNLEARN_MAX_CHECKPOINT_BYTES to raise the limit)",
            total as f64 / (1u64 << 30) as f64,
            limit as f64 / (1u64 << 30) as f64
        )));
    }
    Ok(())
}

/// Checks every tensor a zip torch file (`.pth`, `.bin`) declares against the zip member that
/// holds its storage, the file's size and the machine, before candle's reader allocates any of
/// them. `key` selects a nested state dict as candle's reader does.
pub fn check_zip(path: &Path, key: Option<&str>) -> Result<()> {
    let infos = candle_core::pickle::read_pth_tensor_info(path, false, key).map_err(|e| {
        user(format!(
            "{}: not a readable torch checkpoint ({e})",
            path.display()
        ))
    })?;
    check_declared(path, &infos)
}

/// [`check_zip`] for tensors already listed by `candle_core::pickle::read_pth_tensor_info`.
pub fn check_declared(path: &Path, infos: &[candle_core::pickle::TensorInfo]) -> Result<()> {
    let file_len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let bad = |why: String| user(format!("{}: {why}", path.display()));
    let f = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .map_err(|e| bad(format!("not a readable zip ({e})")))?;
    let mut total: u64 = 0;
    for info in infos {
        let what = format!("{}: tensor `{}`", path.display(), info.name);
        let member = zip
            .by_name(&info.path)
            .map_err(|_| user(format!("{what}: its storage {} is missing", info.path)))?;
        // A stored member holds its bytes in the file; a deflated one at most ~1032× more.
        let storage = member.size();
        let cap = match member.compression() {
            zip::CompressionMethod::Stored => file_len,
            _ => member.compressed_size().saturating_mul(1032),
        };
        if storage > cap {
            return Err(user(format!(
                "{what}: its storage declares {storage} bytes in a file of {file_len}; the checkpoint is corrupt or crafted"
            )));
        }
        let l = &info.layout;
        let elem = info.dtype.size_in_bytes();
        let dims: Vec<i64> = l.dims().iter().map(|&d| d as i64).collect();
        let strides: Vec<i64> = l.stride().iter().map(|&d| d as i64).collect();
        let offset = (l.start_offset() / elem.max(1)) as i64;
        let v = view_bytes(&what, &dims, &strides, offset, elem)?;
        check_view(&what, v, storage, file_len)?;
        total = total.saturating_add(v.0);
    }
    check_total(&path.display().to_string(), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_are_sized_without_overflow() {
        assert_eq!(view_bytes("t", &[2, 3], &[3, 1], 0, 4).unwrap(), (24, 24));
        assert_eq!(view_bytes("t", &[2, 3], &[3, 1], 5, 4).unwrap(), (24, 44));
        // A stride-0 view: many bytes, a one-element extent.
        assert_eq!(view_bytes("t", &[1000], &[0], 0, 4).unwrap(), (4000, 4));
        assert_eq!(view_bytes("t", &[0, 7], &[7, 1], 0, 4).unwrap(), (0, 0));
        assert!(view_bytes("t", &[-1], &[1], 0, 4).is_err());
        assert!(view_bytes("t", &[1 << 40, 1 << 40], &[1 << 40, 1], 0, 4).is_err());
        assert!(view_bytes("t", &[2], &[1, 1], 0, 4).is_err());
        let v = view_bytes("t", &[1 << 30], &[0], 0, 4).unwrap();
        assert!(
            check_view("t", v, 4, 300).is_err(),
            "a stride-0 view of 4 GiB"
        );
        assert!(
            check_view("t", (24, 44), 40, 300).is_err(),
            "past the storage"
        );
        assert!(check_view("t", (24, 44), 44, 300).is_ok());
    }
}
