//! `MageConfig`: the official MAGE code's settings, with its own field names — the tokenizer's
//! `config/vqgan.yaml` (`vqgan.embed_dim`, `vqgan.n_embed`, `vqgan.ddconfig.*`), the keyword
//! arguments of `MaskedGenerativeEncoderViT` (`mage.*`), and the inpainting settings of its
//! evaluation script (`inpaint.*`). `../shared/fixtures/mage/config.json` has this layout.

use crate::locate::Seg;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The taming VQ-GAN's `ddconfig` (encoder / decoder architecture).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DdConfig {
    pub double_z: bool,
    pub z_channels: usize,
    pub resolution: usize,
    pub in_channels: usize,
    pub out_ch: usize,
    pub ch: usize,
    pub ch_mult: Vec<usize>,
    pub num_res_blocks: usize,
    /// Read but unused: the taming modules of the MAGE fork build no attention blocks (the real
    /// `vqgan_jax_strongaug.ckpt` has none).
    pub attn_resolutions: Vec<usize>,
    pub dropout: f64,
}

impl Default for DdConfig {
    fn default() -> Self {
        Self {
            double_z: false,
            z_channels: 256,
            resolution: 256,
            in_channels: 3,
            out_ch: 3,
            ch: 128,
            ch_mult: vec![1, 1, 2, 2, 4],
            num_res_blocks: 2,
            attn_resolutions: vec![16],
            dropout: 0.0,
        }
    }
}

/// The tokenizer (`VQModel` of `config/vqgan.yaml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VqConfig {
    /// Codebook vector size (= `ddconfig.z_channels`: no quant_conv).
    pub embed_dim: usize,
    /// Codebook size.
    pub n_embed: usize,
    pub ddconfig: DdConfig,
}

impl Default for VqConfig {
    fn default() -> Self {
        Self {
            embed_dim: 256,
            n_embed: 1024,
            ddconfig: DdConfig::default(),
        }
    }
}

/// `MaskedGenerativeEncoderViT`'s arguments (defaults: `mage_vit_base_patch16`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransformerConfig {
    pub img_size: usize,
    /// Pixels per token side: must equal the tokenizer's downsampling factor.
    pub patch_size: usize,
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub decoder_embed_dim: usize,
    pub decoder_depth: usize,
    pub decoder_num_heads: usize,
    pub mlp_ratio: f64,
    /// LayerNorm eps of the blocks, the norms and the token embedding (`mlm_layer.ln` keeps
    /// torch's default 1e-5, as the official code).
    pub layer_norm_eps: f64,
    /// Derived in the official code (codebook + 1000 classes + 1 mask token); checked if given.
    pub vocab_size: Option<usize>,
    /// Derived (codebook + 1100 − 1024); checked if given.
    pub fake_class_label: Option<usize>,
    /// Derived (vocab − 1); checked if given.
    pub mask_token_label: Option<usize>,
    /// Rows of the BERT position embedding (the official code fixes 256 + 1).
    pub max_position_embeddings: usize,
    /// Training masks: the masking ratio is drawn per batch from a normal (mu, std) truncated
    /// to [min, max]; `ceil(min · N)` of the masked tokens are dropped from the encoder input.
    pub mask_ratio_min: f64,
    pub mask_ratio_max: f64,
    pub mask_ratio_mu: f64,
    pub mask_ratio_std: f64,
    /// Label smoothing of the training cross-entropy (official: 0.1).
    pub label_smoothing: f64,
}

impl Default for TransformerConfig {
    fn default() -> Self {
        Self {
            img_size: 256,
            patch_size: 16,
            embed_dim: 768,
            depth: 12,
            num_heads: 12,
            decoder_embed_dim: 768,
            decoder_depth: 8,
            decoder_num_heads: 16,
            mlp_ratio: 4.0,
            layer_norm_eps: 1e-6,
            vocab_size: None,
            fake_class_label: None,
            mask_token_label: None,
            max_position_embeddings: 257,
            mask_ratio_min: 0.5,
            mask_ratio_max: 1.0,
            mask_ratio_mu: 0.55,
            mask_ratio_std: 0.25,
            label_smoothing: 0.1,
        }
    }
}

/// MaskGIT inpainting as the official evaluation (`testpaint.py`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InpaintConfig {
    /// Tokens the token mask grows beyond the pixel hole on each side.
    pub token_margin: usize,
    pub num_iter: usize,
    /// Gumbel temperature of the re-masking, annealed by (1 − ratio).
    pub choice_temperature: f64,
    /// Argmax instead of sampling and no Gumbel noise (deterministic; for parity).
    pub greedy: bool,
}

impl Default for InpaintConfig {
    fn default() -> Self {
        Self {
            token_margin: 1,
            num_iter: 20,
            choice_temperature: 6.0,
            greedy: false,
        }
    }
}

/// The whole MAGE family config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MageConfig {
    pub vqgan: VqConfig,
    pub mage: TransformerConfig,
    pub inpaint: InpaintConfig,
}

/// The keys of the experiment file's `config:` for `family: mage`.
pub const CONFIG_FIELDS: &[&str] = &["vqgan", "mage", "inpaint"];

/// ImageNet mean: the official evaluation fills the hole's pixels with it.
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];

/// A config's first problem, with its YAML path.
type Invalid = std::result::Result<(), (Vec<Seg>, String)>;

/// The problem at `config.<sec>.<k>` (`ddconfig` lives under `vqgan`).
fn err(sec: &'static str, k: &'static str, m: String) -> Invalid {
    let mut p = vec![Seg::Key("config")];
    if sec == "ddconfig" {
        p.push(Seg::Key("vqgan"));
    }
    p.extend([Seg::Key(sec), Seg::Key(k)]);
    Err((p, m))
}

impl MageConfig {
    /// Parse the YAML `config:` strictly; errors carry the sub-path.
    pub fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)> {
        crate::models::parse_config(
            v,
            CONFIG_FIELDS,
            "MAGE config section",
            "must be a mapping with `vqgan`, `mage` and `inpaint`",
            Self::check,
        )
    }

    /// Read a `config.json` of this layout. Keys this config does not know (a reference
    /// script's notes, `source_images`, …) are ignored at every level, as for upstream
    /// `config.json` files; the experiment file's `config:` stays strict.
    pub fn from_json(text: &str) -> Result<Self> {
        crate::models::parse_config_json(text, Self::from_yaml_value)
    }

    pub fn check(&self) -> Invalid {
        self.check_sizes()?;
        self.check_tokenizer()?;
        self.check_transformer()?;
        self.check_training()?;
        self.check_inpaint()
    }

    /// Every size at least 1.
    fn check_sizes(&self) -> Invalid {
        let dd = &self.vqgan.ddconfig;
        let t = &self.mage;
        for (sec, k, v) in [
            ("vqgan", "embed_dim", self.vqgan.embed_dim),
            ("vqgan", "n_embed", self.vqgan.n_embed),
            ("ddconfig", "z_channels", dd.z_channels),
            ("ddconfig", "resolution", dd.resolution),
            ("ddconfig", "ch", dd.ch),
            ("ddconfig", "num_res_blocks", dd.num_res_blocks),
            ("mage", "img_size", t.img_size),
            ("mage", "patch_size", t.patch_size),
            ("mage", "embed_dim", t.embed_dim),
            ("mage", "depth", t.depth),
            ("mage", "num_heads", t.num_heads),
            ("mage", "decoder_embed_dim", t.decoder_embed_dim),
            ("mage", "decoder_depth", t.decoder_depth),
            ("mage", "decoder_num_heads", t.decoder_num_heads),
            ("inpaint", "num_iter", self.inpaint.num_iter),
        ] {
            if v == 0 {
                return err(sec, k, "must be at least 1".into());
            }
        }
        Ok(())
    }

    /// The tokenizer: RGB, a VQ bottleneck as wide as its codes, GroupNorm-able widths.
    fn check_tokenizer(&self) -> Invalid {
        let dd = &self.vqgan.ddconfig;
        if dd.in_channels != 3 || dd.out_ch != 3 {
            return err(
                "ddconfig",
                "in_channels",
                "only RGB (3 channels) is supported".into(),
            );
        }
        if dd.double_z {
            return err(
                "ddconfig",
                "double_z",
                "a VQ tokenizer has double_z: false".into(),
            );
        }
        if dd.ch_mult.is_empty() || dd.ch_mult.contains(&0) {
            return err(
                "ddconfig",
                "ch_mult",
                "must be a non-empty list of positive multipliers".into(),
            );
        }
        if dd.z_channels != self.vqgan.embed_dim {
            return err(
                "vqgan",
                "embed_dim",
                format!(
                    "must equal ddconfig.z_channels ({}): this tokenizer has no quant_conv",
                    dd.z_channels
                ),
            );
        }
        for m in &dd.ch_mult {
            if (dd.ch * m) % 32 != 0 {
                return err(
                    "ddconfig",
                    "ch",
                    format!("every ch × ch_mult must be a multiple of 32 (GroupNorm of 32 groups); {} × {m} is not", dd.ch),
                );
            }
        }
        Ok(())
    }

    /// The transformer: norms, widths and heads, patches that are the tokenizer's tokens.
    fn check_transformer(&self) -> Invalid {
        let t = &self.mage;
        if !(t.layer_norm_eps > 0.0 && t.layer_norm_eps.is_finite()) {
            return err("mage", "layer_norm_eps", "must be a positive number".into());
        }
        if !(t.mlp_ratio > 0.0 && t.mlp_ratio.is_finite()) || self.mlp_hidden() == 0 {
            return err("mage", "mlp_ratio", "must be a positive number".into());
        }
        let down = self.downsampling();
        if t.patch_size != down {
            return err(
                "mage",
                "patch_size",
                format!(
                    "must equal the tokenizer's downsampling factor {down} (2^(len(ch_mult) − 1))"
                ),
            );
        }
        if t.img_size % t.patch_size != 0 {
            return err(
                "mage",
                "img_size",
                format!("must be a multiple of patch_size {}", t.patch_size),
            );
        }
        if t.embed_dim % t.num_heads != 0 {
            return err(
                "mage",
                "num_heads",
                format!("must divide embed_dim {}", t.embed_dim),
            );
        }
        if t.decoder_embed_dim % t.decoder_num_heads != 0 {
            return err(
                "mage",
                "decoder_num_heads",
                format!("must divide decoder_embed_dim {}", t.decoder_embed_dim),
            );
        }
        if t.max_position_embeddings < self.num_tokens() + 1 {
            return err(
                "mage",
                "max_position_embeddings",
                format!("must be at least tokens + 1 = {}", self.num_tokens() + 1),
            );
        }
        Ok(())
    }

    /// The official label layout and the training masks' ratio distribution.
    fn check_training(&self) -> Invalid {
        let t = &self.mage;
        if self.vqgan.n_embed + 76 >= self.vocab_size() {
            return err(
                "vqgan",
                "n_embed",
                "too small for the official label layout".into(),
            );
        }
        for (k, given, want) in [
            ("vocab_size", t.vocab_size, self.vocab_size()),
            (
                "fake_class_label",
                t.fake_class_label,
                self.fake_class_label(),
            ),
            (
                "mask_token_label",
                t.mask_token_label,
                self.mask_token_label(),
            ),
        ] {
            if let Some(g) = given {
                if g != want {
                    return err(
                        "mage",
                        k,
                        format!(
                            "is {g}, but the official code derives {want} from n_embed {}",
                            self.vqgan.n_embed
                        ),
                    );
                }
            }
        }
        let r = (
            t.mask_ratio_min,
            t.mask_ratio_max,
            t.mask_ratio_mu,
            t.mask_ratio_std,
        );
        if !(r.0 > 0.0
            && r.0 < r.1
            && r.1 <= 1.0
            && r.2.is_finite()
            && r.3 > 0.0
            && r.3.is_finite())
        {
            return err(
                "mage",
                "mask_ratio_min",
                "needs 0 < mask_ratio_min < mask_ratio_max ≤ 1, a finite mask_ratio_mu and mask_ratio_std > 0".into(),
            );
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return err("mage", "label_smoothing", "must be in [0, 1)".into());
        }
        Ok(())
    }

    /// The evaluation's MaskGIT decoding.
    fn check_inpaint(&self) -> Invalid {
        if !(self.inpaint.choice_temperature >= 0.0 && self.inpaint.choice_temperature.is_finite())
        {
            return err(
                "inpaint",
                "choice_temperature",
                "must be a finite number ≥ 0".into(),
            );
        }
        Ok(())
    }

    /// The tokenizer's downsampling factor.
    pub fn downsampling(&self) -> usize {
        1 << (self.vqgan.ddconfig.ch_mult.len() - 1)
    }
    /// Tokens per side.
    pub fn grid(&self) -> usize {
        self.mage.img_size / self.mage.patch_size
    }
    pub fn num_tokens(&self) -> usize {
        self.grid() * self.grid()
    }
    pub fn codebook_size(&self) -> usize {
        self.vqgan.n_embed
    }
    pub fn vocab_size(&self) -> usize {
        self.vqgan.n_embed + 1000 + 1
    }
    pub fn fake_class_label(&self) -> usize {
        self.vqgan.n_embed + 1100 - 1024
    }
    pub fn mask_token_label(&self) -> usize {
        self.vocab_size() - 1
    }
    pub fn mlp_hidden(&self) -> usize {
        (self.mage.embed_dim as f64 * self.mage.mlp_ratio) as usize
    }
    pub fn decoder_mlp_hidden(&self) -> usize {
        (self.mage.decoder_embed_dim as f64 * self.mage.mlp_ratio) as usize
    }
    /// Tokens dropped from the encoder input in training: `ceil(N · mask_ratio_min)`.
    pub fn num_dropped(&self) -> usize {
        (self.num_tokens() as f64 * self.mage.mask_ratio_min).ceil() as usize
    }
}
