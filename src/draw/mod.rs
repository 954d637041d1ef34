//! Text on pictures, shared by the report's charts and the pipeline's sample sheets: the font
//! (the embedded DejaVu Sans, or the TrueType file named by `I2I_UNLEARN_FONT`) and the labels of
//! sample sheets. A leaf: it uses no step of the pipeline.

pub mod grid;
pub mod sheet;

use anyhow::Result;
use plotters::style::{register_font, FontStyle};
use std::path::PathBuf;
use std::sync::OnceLock;

/// Register the chart font once: `I2I_UNLEARN_FONT` if set, else the embedded DejaVu Sans.
pub fn ensure_font() -> Result<()> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let (regular, bold): (&'static [u8], &'static [u8]) =
            match std::env::var_os("I2I_UNLEARN_FONT") {
                Some(p) => {
                    let bytes = std::fs::read(&p).map_err(|e| {
                        format!("I2I_UNLEARN_FONT={}: {e}", PathBuf::from(&p).display())
                    })?;
                    let b: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                    (b, b)
                }
                None => (dejavu::sans::regular(), dejavu::sans::bold()),
            };
        register_font("sans-serif", FontStyle::Normal, regular)
            .map_err(|_| "the chart font is not a TrueType font".to_string())?;
        register_font("sans-serif", FontStyle::Bold, bold)
            .map_err(|_| "the chart font is not a TrueType font".to_string())?;
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}
