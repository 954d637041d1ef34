//! The legacy (pre-zip) torch layout — the format of the official FID Inception weights — reads to
//! the same tensors as the zip layout of the same state dict.

use candle_core::Device;
use i2i_unlearn::weights::checkpoint::read_tensors;
use std::collections::HashMap;
use std::path::PathBuf;

#[test]
fn legacy_and_zip_torch_files_hold_the_same_tensors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inception");
    let dev = Device::Cpu;
    let legacy: HashMap<_, _> = read_tensors(&dir.join("legacy_small.pth"), &dev)
        .unwrap()
        .into_iter()
        .collect();
    let zip: HashMap<_, _> = read_tensors(&dir.join("zip_small.pth"), &dev)
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(legacy.len(), 3);
    let mut names: Vec<_> = legacy.keys().cloned().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "Conv2d_1a_3x3.bn.running_var",
            "Conv2d_1a_3x3.conv.weight",
            "fc.bias"
        ]
    );
    for (k, a) in &legacy {
        let b = &zip[k];
        assert_eq!(a.dims(), b.dims(), "{k}");
        assert_eq!(a.dtype(), b.dtype(), "{k}");
        let d = i2i_unlearn::util::max_abs_diff(a, b).unwrap();
        assert_eq!(d, 0.0, "{k}");
    }
    assert_eq!(legacy["Conv2d_1a_3x3.conv.weight"].dims(), &[32, 3, 3, 3]);
}
