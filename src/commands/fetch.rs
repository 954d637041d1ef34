//! `i2i-unlearn fetch`: download what a grid reads from the network.

use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The experiment file (YAML).
    pub experiment: PathBuf,
}

pub fn run(args: FetchArgs, progress: &Progress) -> Result<()> {
    let FetchArgs { experiment } = args;

    let exp = crate::config::load(&experiment)?;
    let n = crate::pipeline::fetch(&exp, progress)?;
    progress.note(&format!(
        "{}: {n} items available offline; run it with HF_HUB_OFFLINE=1",
        experiment.display()
    ));
    Ok(())
}
