//! `i2i-unlearn check`: validate an experiment file and list its cells.

use crate::config::grid::{self, Shard};
use crate::progress::Progress;
use anyhow::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// The experiment file (YAML).
    pub experiment: PathBuf,
    #[arg(long, value_name = "K/N")]
    pub shard: Option<Shard>,
}

pub fn run(args: CheckArgs, _progress: &Progress) -> Result<()> {
    let CheckArgs { experiment, shard } = args;

    let exp = crate::config::load(&experiment)?;
    // Architectures given in the file are sized here (a checkpoint's, when the run reads it).
    for m in &exp.models {
        if let Ok(Some(c)) = m.family_config() {
            crate::models::size::check(&c, &format!("model `{}`", m.name))?;
        }
    }
    let all = grid::expand(&exp);
    let cells = match shard {
        Some(s) => s.select(all.clone()),
        None => all.clone(),
    };
    println!(
        "{}: valid; {} cells ({} selected), {} unlearned models to train ({} selected)",
        experiment.display(),
        all.len(),
        cells.len(),
        grid::unlearnings(&all),
        grid::unlearnings(&cells)
    );
    let oracles = cells
        .iter()
        .filter(|c| c.method.name == crate::unlearn::MethodName::Retrain)
        .map(|c| (c.dataset_idx, c.model_idx))
        .collect::<std::collections::BTreeSet<_>>();
    let committed = oracles
        .iter()
        .filter(|(_, m)| {
            exp.models[*m]
                .pretrained
                .as_ref()
                .is_some_and(|p| p.oracle.is_some())
        })
        .count();
    if oracles.len() > committed {
        println!(
            "plus {} retrain oracle(s): the original's pre-training again without the forget classes (cached like it)",
            oracles.len() - committed
        );
    }
    if committed > 0 {
        println!("plus {committed} committed retrain oracle(s) (`pretrained: {{oracle}}`)");
    }
    for n in grid::absent_rows(&exp) {
        println!("{n}");
    }
    // The price before the run: what it downloads (no network here) and what it computes.
    for l in crate::pipeline::downloads::render(&crate::pipeline::downloads::list(&exp, false)) {
        println!("{l}");
    }
    for l in crate::pipeline::price::render(&exp) {
        println!("{l}");
    }
    for c in cells {
        let a = match (c.alpha, c.epsilon) {
            (Some(a), _) => format!("α={a}"),
            (None, Some(e)) => format!("ε={e}"),
            (None, None) => "-".into(),
        };
        println!(
            "{}  {:<10} {:<10} {:<24} {:<8} {:<12} seed {}",
            c.id, c.dataset, c.model, c.label, a, c.mask, c.seed
        );
    }
    Ok(())
}
