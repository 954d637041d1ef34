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
    /// The metric of the Pareto chart (D_R against D_F, one point per α or retain budget ε):
    /// fid (default), is, clip, mia_auc.
    #[arg(long, value_name = "METRIC", value_parser = parse_metric)]
    pub pareto: Option<crate::names::MetricId>,
    /// `paper`: merge the folders of several experiments (E1–E8 of experiments/paper/) into the
    /// paper's layout under OUT/paper/: one table per inpainting mask with a block per family,
    /// the α table, the outpainting curves, the t-SNE and the qualitative figure per family.
    #[arg(long, value_enum)]
    pub layout: Option<Layout>,
}

/// The report layouts besides the default (one table per dataset × model × mask × α).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Layout {
    Paper,
}

fn parse_metric(s: &str) -> std::result::Result<crate::names::MetricId, String> {
    crate::names::MetricId::parse(s).ok_or_else(|| {
        let ids: Vec<&str> = crate::names::MetricId::ALL
            .iter()
            .map(|m| m.as_str())
            .collect();
        format!("unknown metric `{s}`; valid: {}", ids.join(", "))
    })
}

pub fn run(args: ReportArgs, progress: &Progress) -> Result<()> {
    let ReportArgs {
        dirs,
        out,
        ci,
        pareto,
        layout,
    } = args;

    for d in &dirs {
        if !d.is_dir() {
            return Err(user(format!(
                "{} is not a folder (give the results folder of a run, e.g. results/quickstart)",
                d.display()
            )));
        }
    }
    let out = out.unwrap_or_else(|| dirs[0].clone());
    if layout == Some(Layout::Paper) {
        crate::report::build_paper(&dirs, &out, progress)?;
        println!("{}", out.join("paper").join("paper.md").display());
        return Ok(());
    }
    let s = crate::report::build(
        &dirs,
        &out,
        crate::report::ReportOptions { ci, pareto },
        progress,
    )?;
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
