//! Parity of the MAGE family with the official MAGE code (the paper's fork, branch `i2i`).
//!
//! - `../shared/fixtures/mage` (made by the project with the official code, 256 px, tiny random
//!   weights, real photographs; see its README): tokenizer tokens / latents / decoding, encoder
//!   output, logits, and the greedy 20-iteration MaskGIT decoding.
//! - `tests/fixtures/mage_ref` (made by `tools/reference/mage_reference.py` with other weights, a
//!   32 px config and the training path): see `mage_reference_*` below.
//!
//! Tolerances (the fixtures README's): encoder output and logits 1e-4 relative (max |ours − ref|
//! ≤ 1e-4 · max |ref|); images 1e-3; tokens identical except where two codebook distances tie
//! within float error — the match rate is printed and must be ≥ 99%.

use candle_core::{DType, Device, Tensor};
use i2i_unlearn::masks::{BatchMask, MaskSpec};
use i2i_unlearn::models::mage::{keep_all, Mage, Tokens};
use i2i_unlearn::models::{self, FamilyConfig, FamilyName};
use i2i_unlearn::nn::Mode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn shared_fixture() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/mage");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!("../shared/fixtures/mage not found: skipped");
        None
    }
}

fn rel(ours: &Tensor, reference: &Tensor) -> f32 {
    i2i_unlearn::util::max_rel_diff(ours, reference, 1e-12).unwrap()
}

fn match_rate(a: &Tensor, b: &Tensor) -> f64 {
    let a = a
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    let b = b
        .to_dtype(DType::U32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / a.len() as f64
}

fn load(dir: &Path) -> (Mage, HashMap<String, Tensor>) {
    let dev = Device::Cpu;
    let p = models::load_pretrained(FamilyName::Mage, dir.to_str().unwrap(), None, &dev).unwrap();
    let FamilyConfig::Mage(cfg) = p.config else {
        panic!("not a MAGE config")
    };
    let case = candle_core::safetensors::load(dir.join("case.safetensors"), &dev).unwrap();
    (Mage::new(cfg, &p.weights, false, &dev).unwrap(), case)
}

fn mask_rows(t: &Tensor) -> Vec<Vec<bool>> {
    t.to_dtype(DType::F32)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap()
        .into_iter()
        .map(|r| r.into_iter().map(|v| v > 0.5).collect())
        .collect()
}

#[test]
fn mage_shared_fixture_tokenizer_encoder_logits_and_greedy_decoding() {
    let Some(dir) = shared_fixture() else { return };
    let (m, case) = load(&dir);
    let dev = Device::Cpu;

    // Tokenizer.
    let q = m.vq.encode(&case["images_masked"]).unwrap();
    let rate = match_rate(&q.tokens, &case["vq_tokens"]);
    println!("tokenizer token match rate {:.4}", rate);
    assert!(rate >= 0.99, "token match rate {rate}");
    let ref_tokens = case["vq_tokens"].to_dtype(DType::U32).unwrap();
    let zq = m.vq.lookup(&ref_tokens).unwrap();
    let e = rel(&zq, &case["vq_zq"]);
    assert!(e < 1e-6, "z_q of the reference tokens: {e}");
    let dec = m.vq.decoder.forward(&case["vq_zq"]).unwrap();
    let e = rel(&dec, &case["vq_decoded"]);
    println!("decoding rel err {e:.2e}");
    assert!(e < 1e-3, "decoding: {e}");

    // The evaluation's token mask from our `center:8` hole (128 px at 256).
    let grid = m.mage_config().grid();
    let mask = "center:8"
        .parse::<MaskSpec>()
        .unwrap()
        .batch(grid, &[0, 1])
        .unwrap();
    let want = mask_rows(&case["token_all_mask"]);
    for (pm, w) in mask.masks.iter().zip(&want) {
        assert_eq!(&m.token_mask(pm), w, "token mask grown by one token");
    }
    // The evaluation input: hole filled with the ImageNet mean.
    let filled = m.fill_hole(&case["images"], &mask).unwrap();
    let e = i2i_unlearn::util::max_abs_diff(&filled, &case["images_masked"]).unwrap();
    assert!(e < 1e-6, "masked input: {e}");

    // Encoder and logits on the reference tokens.
    let tokens = Tokens {
        ids: ref_tokens.clone(),
        masked: want.clone(),
        keep: keep_all(2, grid * grid),
    };
    let enc = m.net.encode(&tokens, Mode::Infer).unwrap();
    let e = rel(&enc, &case["encoder_out"]);
    println!("encoder rel err {e:.2e}");
    assert!(e < 1e-4, "encoder: {e}");
    let logits = m.net.decode(&enc, &tokens, Mode::Infer).unwrap();
    let lc = logits.narrow(2, 0, 1024).unwrap();
    let e = rel(&lc, &case["logits_codebook"]);
    println!("logits rel err {e:.2e}");
    assert!(e < 1e-4, "logits: {e}");
    // The same through the training path with nothing dropped and the grad-enabled ops.
    let enc_t = m.net.encode(&tokens, Mode::Train).unwrap();
    assert!(rel(&enc_t, &case["encoder_out"]) < 1e-4);

    // Greedy MaskGIT from the pixels: our own tokenization of the filled image.
    let mut rngs: Vec<_> = (0..2).map(|i| i2i_unlearn::util::rng("t", i)).collect();
    let mut steps = 0;
    let ids = m
        .inpaint_tokens(&case["images"], &mask, &mut rngs, true, &mut |_, _| {
            steps += 1
        })
        .unwrap();
    assert_eq!(
        steps, 20,
        "one callback per iteration, skipped ones included"
    );
    let ours = Tensor::from_vec(ids.concat(), (2, grid * grid), &dev).unwrap();
    let rate = match_rate(&ours, &case["greedy_tokens"]);
    println!("greedy MaskGIT token match rate {rate:.4}");
    assert!(rate >= 0.99, "greedy token match rate {rate}");
    let img =
        m.vq.decode_tokens(&case["greedy_tokens"].to_dtype(DType::U32).unwrap())
            .unwrap();
    let e = rel(&img, &case["greedy_image"]);
    println!("greedy image rel err {e:.2e}");
    assert!(e < 1e-3, "greedy image: {e}");
}

#[test]
fn mage_loader_names_what_is_missing() {
    let Some(dir) = shared_fixture() else { return };
    // A folder with the model but without its tokenizer: the loader says so.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    std::fs::copy(dir.join("mage_tiny.pth"), tmp.path().join("mage_tiny.pth")).unwrap();
    let err = match models::load_pretrained(
        FamilyName::Mage,
        tmp.path().to_str().unwrap(),
        None,
        &Device::Cpu,
    ) {
        Ok(_) => panic!("loaded without a tokenizer"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("vqgan"), "{err}");
    let _ = BatchMask::new;
}
