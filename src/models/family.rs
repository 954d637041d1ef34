//! The family registry: the one list of families ([`families!`] at the end of this file), the
//! [`Family`] trait each family's config implements (as candle's `StableDiffusionConfig` builds
//! its model), and the [`FamilyName`] / [`FamilyConfig`] enums that list generates with their
//! dispatch. Adding a family is its folder plus one line in that list.

use super::{I2IModel, Weights};
use crate::locate::Seg;
use crate::weights::checkpoint::{Checkpoint, Layout};
use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::Serialize;

/// What a family's architecture config knows: how it is named, parsed and checked, which files
/// its checkpoints use, the geometry the harness needs, and how its weights are initialised,
/// loaded and built into a model.
pub trait Family:
    Clone + std::fmt::Debug + PartialEq + Serialize + Default + Send + Sync + 'static
{
    /// The family's name in the experiment file and on the command line.
    const NAME: FamilyName;
    /// Whether `weights:` may list the files themselves (`{model: …, tokenizer: …}`) instead of a
    /// hub id or a checkpoint folder.
    const FILE_LIST: bool = true;
    /// The file names of its checkpoint folders.
    fn layout() -> &'static Layout;
    /// The experiment file's `config:`, strictly (unknown keys rejected; errors carry the YAML
    /// sub-path).
    fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)>;
    /// A checkpoint folder's `config.json`.
    fn from_json(text: &str) -> Result<Self>;
    /// The architecture of a resolved checkpoint: its `config.json` by default.
    fn checkpoint_config(ck: &Checkpoint) -> Result<Self> {
        let text = std::fs::read_to_string(&ck.config)
            .with_context(|| format!("reading {}", ck.config.display()))?;
        Self::from_json(&text).map_err(|e| bad_config(ck, &e))
    }
    /// Cells per image side of the grid masks are drawn on (the family's patches or tokens).
    fn mask_grid(&self) -> usize;
    /// The resolution the model takes.
    fn image_size(&self) -> usize;
    /// The value (per channel, [0, 1]) the family's input holds in the hole; the blurred
    /// compositing blends with it.
    fn hole_fill(&self) -> [f32; 3];
    /// Fresh weights, deterministic for `seed`.
    fn init_weights(&self, seed: u64, device: &Device) -> Result<Weights>;
    /// Every parameter's name and shape, recorded without allocating (see
    /// [`crate::weights::shapes::record`]); what [`super::size`] sizes a model by.
    fn param_shapes(&self) -> Result<std::collections::BTreeMap<String, Vec<usize>>>;
    /// The weights of a resolved checkpoint, checked against the family's names and shapes, and
    /// a note on the layout they were found in (for the run's log).
    fn load_checkpoint(&self, ck: &Checkpoint, device: &Device) -> Result<(Weights, String)>;
    /// The model. `trainable`: parameters become candle `Var`s (gradients flow); otherwise the
    /// weights are plain tensors (a frozen teacher).
    fn build(
        &self,
        weights: &Weights,
        trainable: bool,
        device: &Device,
    ) -> Result<Box<dyn I2IModel>>;
    /// The family's smallest architecture at 16 px: what `selfcheck grads` steps every method
    /// on, for every family of the registry.
    fn tiny() -> Self;
    /// A stage the family's pre-training runs before the model's own (MAGE: its tokenizer).
    fn pre_stage(&self) -> Option<&dyn PreStage> {
        None
    }
}

/// The training images a pre-training stage draws from.
pub trait TrainImages {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The images at `indices`, `[B, 3, S, S]` in [0, 1].
    fn pixels(&self, indices: &[usize]) -> Result<Tensor>;
}

/// A family's own stage before its model's pre-training (MAGE's tokenizer), which trains part of
/// the fresh weights in place.
pub trait PreStage {
    /// Its steps (counted before the model's in the progress of a pre-training).
    fn steps(&self, spec: &super::PretrainSpec) -> usize;
    /// Train it on `data`; `on_step(step, loss)` counts from 0.
    fn run(
        &self,
        spec: &super::PretrainSpec,
        data: &dyn TrainImages,
        weights: &mut Weights,
        device: &Device,
        on_step: &mut dyn FnMut(usize, f64),
    ) -> Result<()>;
}

/// Generates [`FamilyName`] (the YAML's and the CLI's names, with clap's help from the doc
/// comments) and [`FamilyConfig`] (one variant per family's config) from one list, and the
/// dispatch of every [`Family`] method over the enum.
macro_rules! families {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal : $cfg:ty,)+) => {
        /// Model families known to the registry.
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
            clap::ValueEnum,
        )]
        pub enum FamilyName {
            $($(#[doc = $doc])* #[serde(rename = $name)] #[value(name = $name)] $variant,)+
        }

        impl FamilyName {
            /// Every family, in the registry's order.
            pub const ALL: &'static [FamilyName] = &[$(FamilyName::$variant,)+];
            pub fn as_str(self) -> &'static str {
                match self {
                    $(FamilyName::$variant => $name,)+
                }
            }
            /// Whether `weights:` may list files for this family.
            pub fn file_list(self) -> bool {
                match self {
                    $(FamilyName::$variant => <$cfg as Family>::FILE_LIST,)+
                }
            }
            /// The file names of the family's checkpoint folders.
            pub fn layout(self) -> &'static Layout {
                match self {
                    $(FamilyName::$variant => <$cfg>::layout(),)+
                }
            }
            /// Parse the YAML `config:` of this family.
            pub fn parse(
                self,
                v: &serde_json::Value,
            ) -> std::result::Result<FamilyConfig, (Vec<Seg>, String)> {
                match self {
                    $(FamilyName::$variant => <$cfg>::from_yaml_value(v).map(FamilyConfig::$variant),)+
                }
            }
            /// See [`Family::tiny`].
            pub fn tiny(self) -> FamilyConfig {
                match self {
                    $(FamilyName::$variant => FamilyConfig::$variant(<$cfg>::tiny()),)+
                }
            }
            /// The architecture of a resolved checkpoint of this family.
            pub fn checkpoint_config(self, ck: &Checkpoint) -> Result<FamilyConfig> {
                match self {
                    $(FamilyName::$variant => <$cfg>::checkpoint_config(ck).map(FamilyConfig::$variant),)+
                }
            }
        }

        /// A family's parsed architecture config.
        #[derive(Clone, Debug, PartialEq, Serialize)]
        pub enum FamilyConfig {
            $($variant($cfg),)+
        }

        impl FamilyConfig {
            pub fn family(&self) -> FamilyName {
                match self {
                    $(FamilyConfig::$variant(_) => FamilyName::$variant,)+
                }
            }
            /// See [`Family::mask_grid`].
            pub fn mask_grid(&self) -> usize {
                match self {
                    $(FamilyConfig::$variant(c) => c.mask_grid(),)+
                }
            }
            /// See [`Family::image_size`].
            pub fn image_size(&self) -> usize {
                match self {
                    $(FamilyConfig::$variant(c) => c.image_size(),)+
                }
            }
            /// See [`Family::hole_fill`].
            pub fn hole_fill(&self) -> [f32; 3] {
                match self {
                    $(FamilyConfig::$variant(c) => c.hole_fill(),)+
                }
            }
            /// See [`Family::param_shapes`].
            pub fn param_shapes(&self) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
                match self {
                    $(FamilyConfig::$variant(c) => c.param_shapes(),)+
                }
            }
            /// See [`Family::init_weights`].
            pub fn init_weights(&self, seed: u64, device: &Device) -> Result<Weights> {
                match self {
                    $(FamilyConfig::$variant(c) => c.init_weights(seed, device),)+
                }
            }
            /// See [`Family::load_checkpoint`]; non-finite weights are an error naming the
            /// checkpoint and the tensor.
            pub fn load_checkpoint(
                &self,
                ck: &Checkpoint,
                device: &Device,
            ) -> Result<(Weights, String)> {
                let (w, note) = match self {
                    $(FamilyConfig::$variant(c) => c.load_checkpoint(ck, device),)+
                }?;
                super::check_finite(&w)
                    .with_context(|| format!("checkpoint {} ({})", ck.origin, ck.weights.display()))?;
                Ok((w, note))
            }
            /// See [`Family::build`].
            pub fn build(
                &self,
                weights: &Weights,
                trainable: bool,
                device: &Device,
            ) -> Result<Box<dyn I2IModel>> {
                match self {
                    $(FamilyConfig::$variant(c) => c.build(weights, trainable, device),)+
                }
            }
            /// See [`Family::pre_stage`].
            pub fn pre_stage(&self) -> Option<&dyn PreStage> {
                match self {
                    $(FamilyConfig::$variant(c) => c.pre_stage(),)+
                }
            }
        }
    };
}

// The registry: one line per family (its doc comment is the CLI's help for `--family`).
families! {
    /// Masked autoencoder (transformers' ViTMAEForPreTraining): a hub id or a folder with
    /// config.json and model.safetensors / pytorch_model.bin.
    Mae = "mae": super::mae::MaeConfig,
    /// MAGE over its VQ-GAN tokenizer: a folder with config.json, mage*.pth and vqgan*.ckpt.
    Mage = "mage": super::mage::MageConfig,
    /// Palette's diffusion UNet: a folder with config.json and 16_Network.pth (or *_Network.pth).
    Palette = "palette": super::palette::PaletteConfig,
}

/// A checkpoint's `config.json` that does not parse or does not describe a model: bad input
/// (exit 2), naming the file.
pub fn bad_config(ck: &Checkpoint, e: &anyhow::Error) -> anyhow::Error {
    crate::error::user(format!(
        "{} ({}): {}; the checkpoint's config.json must describe the model (fix or replace it)",
        ck.config.display(),
        ck.origin,
        crate::error::one_line(e)
    ))
}
