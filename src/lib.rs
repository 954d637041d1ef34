//! i2i-unlearn: an experiment harness for machine unlearning in image-to-image generative models.
//!
//! Data flows one way: `config` → `data` → `models` → `unlearn` → generation → `metrics` → `store`
//! → `report`. Each concept with variants is one trait with a small registry:
//! [`data::DataSource`], [`models::I2IModel`], [`unlearn::Method`], [`metrics::Extractor`].

pub mod cli;
pub mod config;
pub mod data;
pub mod error;
pub mod hub;
pub mod inpaint;
pub mod masks;
pub mod metrics;
pub mod models;
pub mod nn;
pub mod pipeline;
pub mod pretrain;
pub mod progress;
pub mod report;
pub mod store;
pub mod train;
pub mod unlearn;
pub mod util;
