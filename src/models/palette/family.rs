//! Palette in the family registry: its checkpoint layout (`16_Network.pth`), config files,
//! geometry, initialisation, loading and construction.

use super::{Palette, PaletteConfig, MASK_GRID};
use crate::locate::Seg;
use crate::models::{Family, FamilyName, I2IModel, Weights};
use crate::weights::checkpoint::{Checkpoint, Layout};
use anyhow::Result;
use candle_core::Device;

impl Family for PaletteConfig {
    const NAME: FamilyName = FamilyName::Palette;
    fn param_shapes(&self) -> Result<std::collections::BTreeMap<String, Vec<usize>>> {
        super::weights::expected_shapes(self)
    }
    fn layout() -> &'static Layout {
        &super::LAYOUT
    }
    fn from_yaml_value(v: &serde_json::Value) -> std::result::Result<Self, (Vec<Seg>, String)> {
        PaletteConfig::from_yaml_value(v)
    }
    fn from_json(text: &str) -> Result<Self> {
        PaletteConfig::from_json(text)
    }
    /// The paper's 16-px cells at 256 px.
    fn mask_grid(&self) -> usize {
        MASK_GRID
    }
    fn image_size(&self) -> usize {
        self.unet.image_size
    }
    /// The hole holds N(0, 1) in [−1, 1]: its mean is grey.
    fn hole_fill(&self) -> [f32; 3] {
        [0.5; 3]
    }
    fn tiny() -> Self {
        let mut cfg = PaletteConfig::default();
        cfg.unet.inner_channel = 32;
        cfg.unet.channel_mults = vec![1, 1];
        cfg.unet.attn_res = vec![2];
        cfg.unet.res_blocks = 1;
        cfg.unet.image_size = 16;
        cfg
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
        Ok(Box::new(Palette::new(
            self.clone(),
            weights,
            trainable,
            device,
        )?))
    }
}
