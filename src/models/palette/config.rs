//! `PaletteConfig`: the official Palette settings with their own field names — the `unet` and
//! `beta_schedule` arguments of `models.network.Network` in the fork's
//! `config/inpainting_places2*.json`, and `sampling` (ours: how many steps the evaluation runs).
//! `../shared/fixtures/palette/config.json` has this layout.

use crate::locate::Seg;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// The guided-diffusion UNet's arguments (`unet` of the official config). Fields the official
/// config leaves at the constructor's defaults are listed with those defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnetConfig {
    /// Condition image + noisy image: 6.
    pub in_channel: usize,
    pub out_channel: usize,
    pub inner_channel: usize,
    pub channel_mults: Vec<usize>,
    /// Downsampling rates (1, 2, 4, …) at which attention blocks are built.
    pub attn_res: Vec<usize>,
    /// Channels per attention head (−1: use `num_heads`).
    pub num_head_channels: i64,
    pub num_heads: usize,
    pub res_blocks: usize,
    /// Dropout inside the residual blocks (training only; 0 in the paper's real-D_R runs).
    pub dropout: f64,
    pub image_size: usize,
    /// Only `true` (FiLM-like scale-shift) is implemented, the constructor's default.
    pub use_scale_shift_norm: bool,
    /// Only `true` (residual blocks resample), the constructor's default.
    pub resblock_updown: bool,
    /// Only `false` (the legacy head order), the constructor's default.
    pub use_new_attention_order: bool,
}

impl Default for UnetConfig {
    /// Palette's Places2 inpainting network (`16_Network.pth`).
    fn default() -> Self {
        Self {
            in_channel: 6,
            out_channel: 3,
            inner_channel: 64,
            channel_mults: vec![1, 2, 4, 8],
            attn_res: vec![16],
            num_head_channels: 32,
            num_heads: 1,
            res_blocks: 2,
            dropout: 0.0,
            image_size: 256,
            use_scale_shift_norm: true,
            resblock_updown: true,
            use_new_attention_order: false,
        }
    }
}

/// One β schedule (`beta_schedule.train` / `.test`), as the official `make_beta_schedule`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BetaSchedule {
    /// `linear`, `quad`, `const`, `jsd`, `warmup10`, `warmup50` or `cosine`.
    pub schedule: String,
    pub n_timestep: usize,
    pub linear_start: f64,
    pub linear_end: f64,
    pub cosine_s: f64,
}

impl BetaSchedule {
    fn linear(n: usize, start: f64, end: f64) -> Self {
        Self {
            schedule: "linear".into(),
            n_timestep: n,
            linear_start: start,
            linear_end: end,
            cosine_s: 8e-3,
        }
    }
}

impl Default for BetaSchedule {
    fn default() -> Self {
        Self::linear(2000, 1e-6, 1e-2)
    }
}

/// The training and test schedules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Schedules {
    pub train: BetaSchedule,
    pub test: BetaSchedule,
}

impl Default for Schedules {
    fn default() -> Self {
        Self {
            train: BetaSchedule::linear(2000, 1e-6, 1e-2),
            test: BetaSchedule::linear(2000, 1e-4, 0.09),
        }
    }
}

/// The evaluation's sampler (ours; the official loop always runs every test step).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingConfig {
    /// Ancestral steps; 0 = all `beta_schedule.test.n_timestep` (the official loop). Fewer steps
    /// respace the test schedule (evenly spaced timesteps, β recomputed from ᾱ): a deviation
    /// recorded in the protocol string. `generate: {steps: N}` of a grid overrides it.
    pub steps: usize,
}

/// Palette's network and diffusion settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaletteConfig {
    pub unet: UnetConfig,
    pub beta_schedule: Schedules,
    pub sampling: SamplingConfig,
}

/// The keys of the experiment file's `config:` for `family: palette`.
pub const CONFIG_FIELDS: &[&str] = &["unet", "beta_schedule", "sampling"];

/// Cells per side of the evaluation masks: the paper's 16-px cells at 256 px (`center:8` is its
/// 128 × 128 box).
pub const MASK_GRID: usize = 16;

const SCHEDULES: &[&str] = &[
    "linear", "quad", "const", "jsd", "warmup10", "warmup50", "cosine",
];

/// A config's first problem, with its YAML path.
type Invalid = std::result::Result<(), (Vec<Seg>, String)>;

/// The problem at `config.<sec>.<k>`.
fn err(sec: &'static str, k: &'static str, m: String) -> Invalid {
    Err((vec![Seg::Key("config"), Seg::Key(sec), Seg::Key(k)], m))
}

impl PaletteConfig {
    /// Parse the YAML `config:` strictly; errors carry the sub-path.
    pub fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)> {
        crate::models::parse_config(
            v,
            CONFIG_FIELDS,
            "Palette config section",
            "must be a mapping with `unet`, `beta_schedule` and `sampling`",
            Self::check,
        )
    }

    /// Read a `config.json` of this layout; unknown keys are ignored at every level (a
    /// reference script's notes, the official config's `init_type`, `module_name`, …).
    pub fn from_json(text: &str) -> Result<Self> {
        crate::models::parse_config_json(text, Self::from_yaml_value)
    }

    pub fn check(&self) -> Invalid {
        self.check_widths()?;
        self.check_attention()?;
        self.check_schedules()
    }

    /// The UNet's sizes: 6 channels in and 3 out, GroupNorm-able widths, an image size the mask grid and the downsamplings divide.
    fn check_widths(&self) -> Invalid {
        let u = &self.unet;
        for (k, v) in [
            ("in_channel", u.in_channel),
            ("out_channel", u.out_channel),
            ("inner_channel", u.inner_channel),
            ("res_blocks", u.res_blocks),
            ("image_size", u.image_size),
            ("num_heads", u.num_heads),
        ] {
            if v == 0 {
                return err("unet", k, "must be at least 1".into());
            }
        }
        if u.in_channel != 6 || u.out_channel != 3 {
            return err(
                "unet",
                "in_channel",
                "inpainting takes 6 channels (condition + noisy image) and predicts 3".into(),
            );
        }
        if u.channel_mults.is_empty() || u.channel_mults.contains(&0) {
            return err(
                "unet",
                "channel_mults",
                "must be a non-empty list of positive multipliers".into(),
            );
        }
        for &m in &u.channel_mults {
            if (m * u.inner_channel) % 32 != 0 {
                return err(
                    "unet",
                    "inner_channel",
                    format!(
                        "every level's width (inner_channel × mult = {}) must be a multiple of 32: the official GroupNorm has 32 groups",
                        m * u.inner_channel
                    ),
                );
            }
        }
        let levels = u.channel_mults.len() as u32;
        let down = 1usize << (levels - 1);
        if u.image_size % MASK_GRID != 0 || u.image_size % down != 0 {
            return err(
                "unet",
                "image_size",
                format!(
                    "must be a multiple of {} (the mask grid, {MASK_GRID}, and the {} downsamplings)",
                    MASK_GRID.max(down),
                    levels - 1
                ),
            );
        }
        Ok(())
    }

    /// Attention rates and heads, dropout, and the constructor's defaults.
    fn check_attention(&self) -> Invalid {
        let u = &self.unet;
        // Rates no level reaches build nothing, as in the official constructor: the Places2
        // network's `attn_res: [16]` with four levels (rates 1, 2, 4, 8) has attention in its
        // middle block only.
        if u.attn_res.contains(&0) {
            return err(
                "unet",
                "attn_res",
                "rates are downsampling factors 1, 2, 4, …; 0 is not one".into(),
            );
        }
        if u.num_head_channels == 0 || u.num_head_channels < -1 {
            return err(
                "unet",
                "num_head_channels",
                "must be positive, or −1 to use num_heads".into(),
            );
        }
        for (i, &m) in u.channel_mults.iter().enumerate() {
            let ch = m * u.inner_channel;
            let ds = 1usize << i;
            if !u.attn_res.contains(&ds) && i + 1 != u.channel_mults.len() {
                continue;
            }
            let ok = if u.num_head_channels > 0 {
                ch % u.num_head_channels as usize == 0
            } else {
                ch % u.num_heads == 0
            };
            if !ok {
                return err(
                    "unet",
                    "num_head_channels",
                    format!("the attention width {ch} does not split into heads of that size"),
                );
            }
        }
        if !(0.0..1.0).contains(&u.dropout) {
            return err("unet", "dropout", "must be in [0, 1)".into());
        }
        if !u.use_scale_shift_norm || !u.resblock_updown || u.use_new_attention_order {
            return err(
                "unet",
                "use_scale_shift_norm",
                "only the constructor's defaults are implemented (use_scale_shift_norm: true, resblock_updown: true, use_new_attention_order: false), as Palette uses them".into(),
            );
        }
        Ok(())
    }

    /// The train and test β schedules, and the sampling steps they allow.
    fn check_schedules(&self) -> Invalid {
        for (k, s) in [
            ("train", &self.beta_schedule.train),
            ("test", &self.beta_schedule.test),
        ] {
            if !SCHEDULES.contains(&s.schedule.as_str()) {
                return err(
                    "beta_schedule",
                    if k == "train" { "train" } else { "test" },
                    format!(
                        "unknown schedule `{}`; valid: {}",
                        s.schedule,
                        SCHEDULES.join(", ")
                    ),
                );
            }
            let betas_ok = s.n_timestep >= 2
                && s.linear_start.is_finite()
                && s.linear_end.is_finite()
                && s.linear_start > 0.0
                && s.linear_end < 1.0
                && s.linear_start <= s.linear_end
                && s.cosine_s.is_finite()
                && s.cosine_s > 0.0;
            if !betas_ok {
                return err(
                    "beta_schedule",
                    if k == "train" { "train" } else { "test" },
                    "needs n_timestep ≥ 2 and 0 < linear_start ≤ linear_end < 1".into(),
                );
            }
        }
        if self.sampling.steps > self.beta_schedule.test.n_timestep {
            return err(
                "sampling",
                "steps",
                format!(
                    "{} is more than the test schedule's {} timesteps",
                    self.sampling.steps, self.beta_schedule.test.n_timestep
                ),
            );
        }
        Ok(())
    }

    /// Attention heads of a block `ch` wide.
    pub fn heads(&self, ch: usize) -> usize {
        if self.unet.num_head_channels > 0 {
            ch / self.unet.num_head_channels as usize
        } else {
            self.unet.num_heads
        }
    }

    /// The time-embedding width (`inner_channel · 4`).
    pub fn emb_dim(&self) -> usize {
        self.unet.inner_channel * 4
    }

    /// Feature maps of the encoder (input blocks + the middle block): 13 for the real network.
    pub fn num_encoder_maps(&self) -> usize {
        let l = self.unet.channel_mults.len();
        1 + l * self.unet.res_blocks + (l - 1) + 1
    }

    /// The sampler's steps: `override_steps`, else `sampling.steps`, else every test timestep.
    pub fn sampling_steps(&self, override_steps: Option<usize>) -> usize {
        let all = self.beta_schedule.test.n_timestep;
        match override_steps.or(Some(self.sampling.steps).filter(|&s| s > 0)) {
            Some(s) => s.clamp(1, all),
            None => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_the_places2_network_and_checks_catch_bad_sizes() {
        let c = PaletteConfig::default();
        c.check().unwrap();
        assert_eq!(c.num_encoder_maps(), 13);
        let bad = |f: &dyn Fn(&mut PaletteConfig)| {
            let mut c = PaletteConfig::default();
            f(&mut c);
            c.check().unwrap_err().1
        };
        assert!(bad(&|c| c.unet.inner_channel = 0).contains("at least 1"));
        assert!(bad(&|c| c.unet.inner_channel = 48).contains("multiple of 32"));
        assert!(bad(&|c| c.unet.image_size = 100).contains("multiple of"));
        assert!(bad(&|c| c.unet.attn_res = vec![0]).contains("downsampling factors"));
        assert!(bad(&|c| c.unet.num_head_channels = 0).contains("positive"));
        assert!(bad(&|c| c.unet.dropout = f64::NAN).contains("[0, 1)"));
        assert!(bad(&|c| c.beta_schedule.test.linear_end = 1.5).contains("linear_end"));
        assert!(bad(&|c| c.beta_schedule.train.schedule = "sigmoid".into()).contains("unknown"));
        assert!(bad(&|c| c.sampling.steps = 5000).contains("more than"));
    }

    #[test]
    fn reads_the_fixture_config_and_ignores_notes() {
        let text = r#"{"unet": {"in_channel": 6, "out_channel": 3, "inner_channel": 32,
            "channel_mults": [1, 2], "attn_res": [2], "num_head_channels": 16, "res_blocks": 1,
            "dropout": 0.0, "image_size": 32}, "beta_schedule": {"train": {"schedule": "linear",
            "n_timestep": 2000, "linear_start": 1e-6, "linear_end": 0.01}, "test": {"schedule":
            "linear", "n_timestep": 2000, "linear_start": 1e-4, "linear_end": 0.09}},
            "note": "x", "encoder_features": 5}"#;
        let c = PaletteConfig::from_json(text).unwrap();
        assert_eq!(c.num_encoder_maps(), 5);
        assert_eq!(c.heads(64), 4);
        assert_eq!(c.sampling_steps(None), 2000);
        assert_eq!(c.sampling_steps(Some(50)), 50);
    }
}
