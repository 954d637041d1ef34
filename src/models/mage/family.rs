//! MAGE in the family registry: its checkpoint layout (model and tokenizer files), config files,
//! geometry, initialisation, loading, construction, and the tokenizer's own pre-training as the
//! stage before the model's.

use super::{Mage, MageConfig, IMAGENET_MEAN};
use crate::locate::Seg;
use crate::models::{Family, FamilyName, I2IModel, PreStage, Weights};
use crate::weights::checkpoint::{Checkpoint, Layout};
use anyhow::Result;
use candle_core::Device;

impl Family for MageConfig {
    const NAME: FamilyName = FamilyName::Mage;
    fn param_shapes(&self) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
        super::weights::expected_shapes(self)
    }
    fn layout() -> &'static Layout {
        &super::LAYOUT
    }
    fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)> {
        MageConfig::from_yaml_value(v)
    }
    fn from_json(text: &str) -> Result<Self> {
        MageConfig::from_json(text)
    }
    /// The token grid.
    fn mask_grid(&self) -> usize {
        self.grid()
    }
    fn image_size(&self) -> usize {
        self.mage.img_size
    }
    /// The official script fills the hole with the ImageNet mean before tokenizing.
    fn hole_fill(&self) -> [f32; 3] {
        IMAGENET_MEAN.map(|v| v as f32)
    }
    fn tiny() -> Self {
        let v = serde_json::json!({
            "vqgan": {"embed_dim": 32, "n_embed": 16,
                      "ddconfig": {"z_channels": 32, "resolution": 16, "ch": 32,
                                   "ch_mult": [1, 2], "num_res_blocks": 1}},
            "mage": {"img_size": 16, "patch_size": 2, "embed_dim": 16, "depth": 1,
                     "num_heads": 2, "decoder_embed_dim": 16, "decoder_depth": 1,
                     "decoder_num_heads": 2}
        });
        MageConfig::from_yaml_value(&v).expect("the tiny MAGE config is valid")
    }
    fn init_weights(&self, seed: u64, device: &Device) -> Result<Weights> {
        super::init_weights(self, seed, device)
    }
    fn load_checkpoint(&self, ck: &Checkpoint, device: &Device) -> Result<(Weights, String)> {
        super::load_checkpoint_weights(self, ck, device)
    }
    fn build(
        &self,
        weights: &Weights,
        trainable: bool,
        device: &Device,
    ) -> Result<Box<dyn I2IModel>> {
        Ok(Box::new(Mage::new(
            self.clone(),
            weights,
            trainable,
            device,
        )?))
    }
    fn pre_stage(&self) -> Option<&dyn PreStage> {
        Some(self)
    }
}
