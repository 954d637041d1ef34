//! Reader for torch's legacy (pre-1.6, non-zip) serialisation, the layout of the official FID
//! Inception weights (`pt_inception-2015-12-05-6726825d.pth`): five pickles (magic number,
//! protocol version, system info, the object with persistent storage ids, the list of storage
//! keys) followed by each storage's element count (int64) and raw little-endian bytes.
//!
//! Only tensors are rebuilt: candle's pickle reader interprets the opcodes into plain values and no
//! pickled code is ever executed.

use anyhow::{bail, Context, Result};
use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::io::Cursor;

/// The pickled magic number 0x1950a86a20f9469cfc6c with its protocol header and STOP.
const MAGIC: [u8; 15] = [
    0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
];

/// Whether `head` starts a legacy torch file.
pub fn is_legacy(head: &[u8]) -> bool {
    head.len() >= MAGIC.len() && head[..MAGIC.len()] == MAGIC
}

fn one_pickle(r: &mut Cursor<&[u8]>) -> Result<Object> {
    let mut s = Stack::empty();
    s.read_loop(r)?;
    Ok(s.finalize()?)
}

fn dtype_of(class: &str) -> Result<DType> {
    Ok(match class {
        "FloatStorage" => DType::F32,
        "DoubleStorage" => DType::F64,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "ByteStorage" => DType::U8,
        other => bail!("unsupported storage type {other}"),
    })
}

fn int(o: Object) -> Result<i64> {
    o.int_or_long()
        .map_err(|o| anyhow::anyhow!("expected an integer, got {o:?}"))
}

fn ints(o: Object) -> Result<Vec<i64>> {
    match o {
        Object::Tuple(v) | Object::List(v) => v.into_iter().map(int).collect(),
        other => bail!("expected a tuple of integers, got {other:?}"),
    }
}

/// A tensor description from `_rebuild_tensor_v2(storage, offset, size, stride, …)`.
struct TensorRef {
    key: String,
    dtype: DType,
    offset: i64,
    size: Vec<i64>,
    stride: Vec<i64>,
}

fn tensor_ref(value: Object) -> Result<Option<TensorRef>> {
    let Object::Reduce { callable, args } = value else {
        return Ok(None);
    };
    let (module, class) = match *callable {
        Object::Class {
            module_name,
            class_name,
        } => (module_name, class_name),
        _ => return Ok(None),
    };
    let args = match (module.as_str(), class.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") => *args,
        ("torch._utils", "_rebuild_parameter") => {
            let mut a = args
                .tuple()
                .map_err(|o| anyhow::anyhow!("bad parameter {o:?}"))?;
            return tensor_ref(a.remove(0));
        }
        _ => return Ok(None),
    };
    let mut a = args
        .tuple()
        .map_err(|o| anyhow::anyhow!("bad tensor args {o:?}"))?;
    anyhow::ensure!(a.len() >= 4, "tensor with {} rebuild arguments", a.len());
    let stride = ints(a.remove(3))?;
    let size = ints(a.remove(2))?;
    let offset = int(a.remove(1))?;
    let storage = a
        .remove(0)
        .persistent_load()
        .map_err(|o| anyhow::anyhow!("expected a storage, got {o:?}"))?;
    let mut s = storage
        .tuple()
        .map_err(|o| anyhow::anyhow!("bad storage id {o:?}"))?;
    anyhow::ensure!(s.len() >= 5, "storage id with {} fields", s.len());
    let key = s
        .remove(2)
        .unicode()
        .map_err(|o| anyhow::anyhow!("bad storage key {o:?}"))?;
    let (_, class) = s
        .remove(1)
        .class()
        .map_err(|o| anyhow::anyhow!("bad storage type {o:?}"))?;
    Ok(Some(TensorRef {
        key,
        dtype: dtype_of(&class)?,
        offset,
        size,
        stride,
    }))
}

/// The state dict inside the object: the object itself, or its `state_dict` / `model` entry.
fn state_dict(obj: Object) -> Result<Vec<(Object, Object)>> {
    let Object::Dict(entries) = obj else {
        bail!("the file holds no dictionary of tensors")
    };
    let nested = entries.iter().position(|(k, v)| {
        matches!(k, Object::Unicode(s) if s == "state_dict" || s == "model")
            && matches!(v, Object::Dict(_))
    });
    match nested {
        Some(i) => match entries.into_iter().nth(i).map(|e| e.1) {
            Some(Object::Dict(d)) => Ok(d),
            _ => unreachable!("checked"),
        },
        None => Ok(entries),
    }
}

/// Read every tensor of a legacy torch file (as stored: no dtype conversion).
pub fn read(bytes: &[u8], device: &Device) -> Result<Vec<(String, Tensor)>> {
    anyhow::ensure!(
        is_legacy(bytes),
        "not a legacy torch file (no magic number)"
    );
    let mut r = Cursor::new(bytes);
    r.set_position(MAGIC.len() as u64);
    let protocol = int(one_pickle(&mut r).context("protocol version")?)?;
    anyhow::ensure!(
        protocol == 1001,
        "unsupported legacy torch protocol {protocol}"
    );
    if let Object::Dict(info) = one_pickle(&mut r).context("system info")? {
        for (k, v) in info {
            if matches!(&k, Object::Unicode(s) if s == "little_endian") && v == Object::Bool(false)
            {
                bail!("big-endian torch files are not supported");
            }
        }
    }
    let entries = state_dict(one_pickle(&mut r).context("the pickled object")?)?;
    let keys = match one_pickle(&mut r).context("storage keys")? {
        Object::List(v) | Object::Tuple(v) => v
            .into_iter()
            .map(|k| {
                k.unicode()
                    .map_err(|o| anyhow::anyhow!("bad storage key {o:?}"))
            })
            .collect::<Result<Vec<_>>>()?,
        other => bail!("expected the list of storage keys, got {other:?}"),
    };
    let mut refs = vec![];
    for (k, v) in entries {
        let Ok(name) = k.unicode() else { continue };
        if let Some(t) = tensor_ref(v).with_context(|| format!("tensor `{name}`"))? {
            refs.push((name, t));
        }
    }
    let dtypes: HashMap<&str, DType> = refs
        .iter()
        .map(|(_, t)| (t.key.as_str(), t.dtype))
        .collect();
    // Storages follow in key order: an int64 element count, then the elements. Every count is
    // checked against the file before anything is allocated.
    let file_len = bytes.len() as u64;
    let corrupt =
        |why: String| crate::error::user(format!("{why}; the file is corrupt or crafted"));
    let mut storages: HashMap<String, &[u8]> = HashMap::new();
    let mut pos = r.position() as usize;
    for key in &keys {
        if pos + 8 > bytes.len() {
            return Err(corrupt(format!("storage {key}: file truncated")));
        }
        let n = i64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
        pos += 8;
        let es = dtypes
            .get(key.as_str())
            .map(|d| d.size_in_bytes())
            .context("a storage no tensor uses")?;
        let len = u64::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(es as u64))
            .filter(|&l| l <= (bytes.len() - pos) as u64)
            .ok_or_else(|| {
                corrupt(format!(
                    "storage {key}: declares {n} elements, the file holds {} bytes after it",
                    bytes.len() - pos
                ))
            })? as usize;
        storages.insert(key.clone(), &bytes[pos..pos + len]);
        pos += len;
    }
    let mut total = 0u64;
    for (name, t) in &refs {
        let what = format!("tensor `{name}`");
        let data = storages
            .get(&t.key)
            .with_context(|| format!("{what}: storage {} missing", t.key))?;
        let es = t.dtype.size_in_bytes();
        let v = super::bounds::view_bytes(&what, &t.size, &t.stride, t.offset, es)?;
        super::bounds::check_view(&what, v, data.len() as u64, file_len)?;
        total = total.saturating_add(v.0);
    }
    super::bounds::check_total("the legacy torch file", total)?;
    refs.into_iter()
        .map(|(name, t)| {
            let data = storages[&t.key];
            Ok((
                name.clone(),
                strided(data, &t, device).with_context(|| format!("tensor `{name}`"))?,
            ))
        })
        .collect()
}

/// Copy a (possibly strided) view out of a storage.
fn strided(data: &[u8], t: &TensorRef, device: &Device) -> Result<Tensor> {
    // Sizes, strides and offset were checked non-negative and within `data` by the caller.
    let es = t.dtype.size_in_bytes();
    let size: Vec<usize> = t.size.iter().map(|&v| v as usize).collect();
    let stride: Vec<usize> = t.stride.iter().map(|&v| v as usize).collect();
    let offset = t.offset as usize;
    let numel: usize = size.iter().product();
    let mut contiguous = vec![0usize; size.len()];
    let mut acc = 1;
    for i in (0..size.len()).rev() {
        contiguous[i] = acc;
        acc *= size[i];
    }
    let mut out = Vec::with_capacity(numel * es);
    if numel > 0 && (stride == contiguous || numel == 1) {
        let a = offset * es;
        anyhow::ensure!(a + numel * es <= data.len(), "view beyond its storage");
        out.extend_from_slice(&data[a..a + numel * es]);
    } else {
        let mut idx = vec![0usize; size.len()];
        for _ in 0..numel {
            let e = offset + idx.iter().zip(&stride).map(|(i, s)| i * s).sum::<usize>();
            anyhow::ensure!((e + 1) * es <= data.len(), "view beyond its storage");
            out.extend_from_slice(&data[e * es..(e + 1) * es]);
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                if idx[d] < size[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
    }
    Ok(Tensor::from_raw_buffer(&out, t.dtype, &size, device)?)
}
