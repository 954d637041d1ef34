//! The blurred compositing mask equals Pillow's `ImageFilter.GaussianBlur` (the official VQ-GAN
//! evaluation blurs its grown hole with it). Fixture: tools/reference/composite_reference.py.

use candle_core::Device;
use i2i_unlearn::masks::composite::pil_gaussian_blur;

#[test]
fn gaussian_blur_matches_pillow() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/composite/pil_blur.safetensors");
    let t = candle_core::safetensors::load(path, &Device::Cpu).unwrap();
    let mut k = 0;
    while let Some(input) = t.get(&format!("in_{k}")) {
        let size = input.dim(0).unwrap();
        let inp: Vec<u8> = input.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<u8> = t[&format!("out_{k}")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let radius = t[&format!("radius_{k}")].to_vec1::<f32>().unwrap()[0];
        let ours = pil_gaussian_blur(&inp, size, size, radius);
        let diff = ours
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap();
        let n_diff = ours.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(
            diff, 0,
            "case {k} (radius {radius}): {n_diff} pixels differ, by up to {diff} levels"
        );
        k += 1;
    }
    assert_eq!(k, 4);
}
