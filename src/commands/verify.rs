//! `i2i-unlearn verify`: is a results folder sound?

use crate::error::user;
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// Results folders to check (each with cells/ and grid.json).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
}

/// Exit 0 when every folder is sound, 1 when anything is stale or corrupt (listed on stdout).
pub fn run(args: VerifyArgs, _progress: &Progress) -> Result<()> {
    let mut bad = 0;
    for d in &args.dirs {
        if !d.is_dir() {
            return Err(user(format!(
                "{} is not a folder (give the results folder of a run, e.g. results/quickstart)",
                d.display()
            )));
        }
        let v = crate::store::verify::verify(d)?;
        for p in &v.problems {
            println!("stale or corrupt: {p}");
        }
        if !v.missing.is_empty() {
            println!(
                "{}: {} cells of the grid have no record yet (an unfinished run; `run` computes them): {}",
                d.display(),
                v.missing.len(),
                v.missing.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
                    + if v.missing.len() > 5 { "; …" } else { "" }
            );
        }
        println!(
            "{}: {} files checked, {} stale or corrupt",
            d.display(),
            v.checked,
            v.problems.len()
        );
        bad += v.problems.len();
    }
    if bad > 0 {
        anyhow::bail!("{bad} stale or corrupt files (listed above): delete them and run the experiment again to recompute them");
    }
    Ok(())
}
