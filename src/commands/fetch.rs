//! `i2i-unlearn fetch`: download what a grid reads from the network.

use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// The experiment file (YAML).
    pub experiment: PathBuf,
    /// List what would be downloaded (source, size where the server says it, cached or not) and
    /// the compute, and download nothing. Works offline: what cannot be reached is said so.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: FetchArgs, progress: &Progress) -> Result<()> {
    let FetchArgs {
        experiment,
        dry_run,
    } = args;

    let exp = crate::config::load(&experiment)?;
    if dry_run {
        let list = crate::pipeline::downloads::list(&exp, true);
        for l in crate::pipeline::downloads::render(&list) {
            println!("{l}");
        }
        for l in crate::pipeline::price::render(&exp) {
            println!("{l}");
        }
        return Ok(());
    }
    let n = crate::pipeline::fetch(&exp, progress)?;
    progress.note(&format!(
        "{}: {n} items available offline; run it with HF_HUB_OFFLINE=1",
        experiment.display()
    ));
    Ok(())
}
