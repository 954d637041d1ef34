//! `i2i-unlearn selfcheck`: checks of the installation on a device.

use super::{device, DeviceArg};
use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct SelfcheckArgs {
    #[command(subcommand)]
    pub what: SelfcheckCommand,
}

pub fn run(args: SelfcheckArgs, progress: &Progress) -> Result<()> {
    let SelfcheckArgs { what } = args;
    match what {
        SelfcheckCommand::Grads { device: d } => {
            let reports = crate::selfcheck::grads(&device(d)?)?;
            let mut ok = true;
            for r in &reports {
                ok &= r.ok();
                println!("{}", serde_json::to_string(r)?);
            }
            if ok {
                progress.note(&format!(
                    "selfcheck grads on {d:?}: all {} (family, method) steps ok",
                    reports.len()
                ));
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                "selfcheck grads on {d:?}: some parameters got no gradient or moved when frozen (see the JSON lines)"
            ))
            }
        }
        SelfcheckCommand::InceptionWeights { out, variant } => {
            use crate::metrics::inception::Variant;
            let v = match variant.as_str() {
                "fid" => Variant::Fid,
                "imagenet" => Variant::ImageNet,
                other => return Err(user(format!("--variant {other}: use fid or imagenet"))),
            };
            crate::metrics::inception::formula::write_weights(v, &out)?;
            progress.note(&format!(
                "wrote formula {variant} InceptionV3 weights → {}",
                out.display()
            ));
            Ok(())
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum SelfcheckCommand {
    /// Gradients and frozen parameters of one step of every method.
    Grads {
        #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
        device: DeviceArg,
    },
    /// Write formula InceptionV3 weights (safetensors).
    InceptionWeights {
        #[arg(long, value_name = "FILE.safetensors")]
        out: PathBuf,
        /// `fid` (pytorch-fid's structure, 1008 classes) or `imagenet` (torchvision's, 1000).
        #[arg(long, default_value = "fid")]
        variant: String,
    },
}
