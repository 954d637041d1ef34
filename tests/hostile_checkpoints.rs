//! Crafted torch files of a few hundred bytes that declare huge, negative or self-repeating
//! tensors: each is refused with one line (a bad-input error, exit 2) before anything is
//! allocated, never an abort or a panic. The files are built here opcode by opcode.

mod common;

use candle_core::Device;
use i2i_unlearn::error::{exit_code, one_line, EXIT_USAGE};
use i2i_unlearn::weights::checkpoint::{read_container, read_tensors};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A pickle (protocol 2) of `{"w": _rebuild_tensor_v2(storage, offset, size, stride, False,
/// OrderedDict())}`, the storage a persistent id `("storage", FloatStorage, "0", "cpu", count)`.
fn pickle(count: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}'];
    let uni = |p: &mut Vec<u8>, s: &str| {
        p.push(b'X');
        p.extend((s.len() as u32).to_le_bytes());
        p.extend(s.as_bytes());
    };
    // As torch writes integers: BININT where it fits 32 bits, else LONG1.
    let int = |p: &mut Vec<u8>, v: i64| match i32::try_from(v) {
        Ok(v) => {
            p.push(b'J');
            p.extend(v.to_le_bytes());
        }
        Err(_) => {
            p.extend([0x8a, 8]);
            p.extend(v.to_le_bytes());
        }
    };
    uni(&mut p, "w");
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.push(b'(');
    uni(&mut p, "storage");
    p.extend(b"ctorch\nFloatStorage\n");
    uni(&mut p, "0");
    uni(&mut p, "cpu");
    int(&mut p, count);
    p.extend(b"tQ");
    int(&mut p, offset);
    for dims in [size, stride] {
        p.push(b'(');
        for &d in dims {
            int(&mut p, d);
        }
        p.push(b't');
    }
    p.push(0x89);
    p.extend(b"ccollections\nOrderedDict\n)R");
    p.extend(b"tRs.");
    p
}

/// A zip torch file (as `torch.save` writes it) holding `pickle` and a storage of `data` bytes.
fn zip_file(dir: &Path, name: &str, pickle: &[u8], data: &[u8]) -> PathBuf {
    let path = dir.join(name);
    let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", o).unwrap();
    z.write_all(pickle).unwrap();
    z.start_file("archive/data/0", o).unwrap();
    z.write_all(data).unwrap();
    z.finish().unwrap();
    path
}

/// A legacy torch file: magic, protocol 1001, system info, the object, the storage keys, then
/// the storage's int64 element count (`declared`) and `data`.
fn legacy_file(dir: &Path, name: &str, object: &[u8], declared: i64, data: &[u8]) -> PathBuf {
    let mut b = vec![
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
    ];
    b.extend([0x80, 2, b'M', 0xe9, 0x03, b'.']); // 1001
    b.extend([0x80, 2, b'}', b'.']);
    b.extend(object);
    b.extend([0x80, 2, b']', b'X', 1, 0, 0, 0, b'0', b'a', b'.']);
    b.extend(declared.to_le_bytes());
    b.extend(data);
    let path = dir.join(name);
    std::fs::write(&path, b).unwrap();
    path
}

fn refused(path: &Path, what: &str) -> String {
    for r in [
        read_tensors(path, &Device::Cpu).map(|_| ()),
        read_container(path, &Device::Cpu).map(|_| ()),
    ] {
        let e = r.expect_err(what);
        assert_eq!(exit_code(&e), EXIT_USAGE, "{what}: {e:#}");
        assert!(!one_line(&e).contains('\n'), "{what}");
    }
    one_line(&read_tensors(path, &Device::Cpu).unwrap_err())
}

#[test]
fn crafted_torch_files_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let four = [0u8; 16];
    // The well-formed file reads, so the refusals below are about the sizes alone.
    let ok = zip_file(d, "ok.pth", &pickle(4, 0, &[2, 2], &[2, 1]), &four);
    assert_eq!(
        read_tensors(&ok, &Device::Cpu).unwrap()[0].1.dims(),
        &[2, 2]
    );
    let ok = legacy_file(
        d,
        "ok_legacy.pth",
        &pickle(4, 0, &[2, 2], &[2, 1]),
        4,
        &four,
    );
    assert_eq!(
        read_tensors(&ok, &Device::Cpu).unwrap()[0].1.dims(),
        &[2, 2]
    );

    // Zip: a tensor of 2^40 elements (4 TiB) over a 16-byte storage.
    let p = zip_file(
        d,
        "huge.pth",
        &pickle(4, 0, &[1 << 20, 1 << 20], &[1 << 20, 1]),
        &four,
    );
    let m = refused(&p, "a 4 TiB zip tensor");
    assert!(m.contains("huge.pth") && m.contains("tensor `w`"), "{m}");
    // Zip: sizes past 32 bits or negative are dropped by candle's reader itself (with a
    // "skipping" line), so the tensor is absent and its model reports it missing.
    for (name, size) in [
        ("long.pth", [1i64 << 40, 1 << 40]),
        ("negative.pth", [-4, 1]),
    ] {
        let p = zip_file(d, name, &pickle(4, 0, &size, &[size[1], 1]), &four);
        let read = read_tensors(&p, &Device::Cpu);
        assert!(read.map_or(true, |t| t.is_empty()), "{name}");
    }
    // Zip: the dims fit, their product overflows.
    let p = zip_file(
        d,
        "overflow.pth",
        &pickle(4, 0, &[1 << 30, 1 << 30, 1 << 30], &[1 << 30, 1 << 30, 1]),
        &four,
    );
    refused(&p, "an overflowing zip tensor");
    // Zip: an offset past the storage.
    let p = zip_file(d, "offset.pth", &pickle(4, 1 << 30, &[4], &[1]), &four);
    refused(&p, "an offset past the storage");

    // Legacy: a storage count of 2^40 elements in a file of ~300 bytes.
    let p = legacy_file(
        d,
        "count.pth",
        &pickle(4, 0, &[2, 2], &[2, 1]),
        1 << 40,
        &four,
    );
    let m = refused(&p, "a legacy storage of 2^40 elements");
    assert!(m.contains("declares"), "{m}");
    // Legacy: a negative storage count.
    let p = legacy_file(
        d,
        "negcount.pth",
        &pickle(4, 0, &[2, 2], &[2, 1]),
        -1,
        &four,
    );
    refused(&p, "a negative legacy storage count");
    // Legacy: a stride-0 view of one element repeated 2^30 times (4 GiB).
    let p = legacy_file(d, "stride0.pth", &pickle(4, 0, &[1 << 30], &[0]), 4, &four);
    let m = refused(&p, "a stride-0 view of 4 GiB");
    assert!(m.contains("stride-0"), "{m}");
    // Legacy: a view past its storage.
    let p = legacy_file(d, "past.pth", &pickle(4, 0, &[64], &[1]), 4, &four);
    refused(&p, "a view past its storage");
}

#[test]
fn a_crafted_checkpoint_exits_2_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let four = [0u8; 16];
    let p = legacy_file(
        dir.path(),
        "fid.pth",
        &pickle(4, 0, &[1 << 30], &[0]),
        4,
        &four,
    );
    let imgs = dir.path().join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    let o = std::process::Command::new(common::bin())
        .args(["fid", "--weights"])
        .arg(&p)
        .arg(&imgs)
        .arg(&imgs)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    let err = common::stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("stride-0"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
