//! MAE in the family registry: transformers' checkpoint layout, its config files, geometry,
//! initialisation, loading and construction.

use super::{Mae, MaeConfig};
use crate::locate::Seg;
use crate::models::{Family, FamilyName, I2IModel, Weights};
use crate::weights::checkpoint::{Checkpoint, Layout, HF_LAYOUT};
use anyhow::Result;
use candle_core::Device;

impl Family for MaeConfig {
    const NAME: FamilyName = FamilyName::Mae;
    fn param_shapes(&self) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
        Ok(super::weights::expected_shapes(self).into_iter().collect())
    }
    const FILE_LIST: bool = false;
    fn layout() -> &'static Layout {
        &HF_LAYOUT
    }
    fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)> {
        MaeConfig::from_yaml_value(v)
    }
    fn from_json(text: &str) -> Result<Self> {
        MaeConfig::from_json(text)
    }
    /// `config.json` with the preprocessor's normalisation.
    fn checkpoint_config(ck: &Checkpoint) -> Result<Self> {
        super::checkpoint_config(ck)
    }
    fn mask_grid(&self) -> usize {
        self.grid()
    }
    fn image_size(&self) -> usize {
        self.image_size
    }
    /// The normalisation mean: a zero in the network's input.
    fn hole_fill(&self) -> [f32; 3] {
        self.image_mean.map(|v| v as f32)
    }
    fn tiny() -> Self {
        MaeConfig {
            image_size: 16,
            patch_size: 4,
            hidden_size: 16,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            intermediate_size: 32,
            decoder_hidden_size: 16,
            decoder_num_hidden_layers: 1,
            decoder_num_attention_heads: 2,
            decoder_intermediate_size: 32,
            ..Default::default()
        }
    }
    fn init_weights(&self, seed: u64, device: &Device) -> Result<Weights> {
        super::init_weights(self, seed, device)
    }
    fn load_checkpoint(&self, ck: &Checkpoint, device: &Device) -> Result<(Weights, String)> {
        super::load_checkpoint_weights(self, ck, device).map(|(w, l)| (w, l.to_string()))
    }
    fn build(
        &self,
        weights: &Weights,
        trainable: bool,
        device: &Device,
    ) -> Result<Box<dyn I2IModel>> {
        Ok(Box::new(Mae::new(
            self.clone(),
            weights,
            trainable,
            device,
        )?))
    }
}
