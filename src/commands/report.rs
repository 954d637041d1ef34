//! `i2i-unlearn report`: tables and charts rebuilt from stored cells.

use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Results folders (each with cells/ and grid.json).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the report (default: the first folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Show each value's 95% bootstrap interval over images in table.md and table.tex
    /// (`metrics.bootstrap` resamples, stored with every cell; charts always draw them).
    #[arg(long)]
    pub ci: bool,
}

pub fn run(args: ReportArgs, progress: &Progress) -> Result<()> {
    let ReportArgs { dirs, out, ci } = args;

    for d in &dirs {
        if !d.is_dir() {
            return Err(user(format!(
                "{} is not a folder (give the results folder of a run, e.g. results/quickstart)",
                d.display()
            )));
        }
    }
    let out = out.unwrap_or_else(|| dirs[0].clone());
    let s = crate::report::build(&dirs, &out, crate::report::ReportOptions { ci }, progress)?;
    if s.cells == 0 {
        return Err(user(format!(
            "no finished cells in {} (run the experiment first)",
            dirs.iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    println!("{}", out.join("table.md").display());
    Ok(())
}
