//! A group's unlearning jobs (one per unlearned model, each with its pending cells) on the run's
//! workers. Several workers may share the output folder: a job is computed by the worker that
//! claims it (`claims/` of the folder, see [`crate::store::claim`]); a job another worker holds
//! is deferred, then waited for, and whatever it did not finish is computed here.

use super::cell::{self, CellCounter};
use super::group::Group;
use super::RunOptions;
use crate::config::grid::Cell;
use crate::config::Experiment;
use crate::store::claim::Claim;
use crate::store::Store;
use anyhow::Result;
use std::sync::Mutex;

/// What a group's jobs did, and how the group ended.
pub struct GroupTotals {
    /// Seconds of unlearning, summed over jobs (they may run in parallel).
    pub unlearn_seconds: f64,
    /// Seconds of evaluation, summed over cells.
    pub eval_seconds: f64,
    /// Unlearned models trained by this run.
    pub unlearned: usize,
    /// Cells evaluated by this run.
    pub cells: usize,
    pub result: Result<()>,
}

/// Run every job of a group: as many at once as there are workers (independent jobs on pools of
/// their own beat splitting each op over threads on small models: measured 1.45× more steps
/// per second on 2 cores).
pub fn run_group(
    exp: &Experiment,
    group: &Group,
    jobs: &[Vec<&Cell>],
    opts: &RunOptions,
    store: &Store,
    counter: &CellCounter,
) -> GroupTotals {
    let claims = store.run_dir().claims();
    let totals = Mutex::new(GroupTotals {
        unlearn_seconds: 0.0,
        eval_seconds: 0.0,
        unlearned: 0,
        cells: 0,
        result: Ok(()),
    });
    let deferred = Mutex::new(Vec::<usize>::new());
    let run_claimed = |cells: &Vec<&Cell>| -> Result<()> {
        let todo: Vec<&Cell> = cells
            .iter()
            .copied()
            .filter(|c| !store.is_done(&c.id))
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let r = cell::run_unlearned(exp, group, &todo, opts, store, counter)?;
        let mut t = totals.lock().expect("totals lock");
        t.unlearn_seconds += r.unlearn_seconds;
        t.eval_seconds += r.eval_seconds;
        t.unlearned += r.unlearned as usize;
        t.cells += todo.len();
        Ok(())
    };
    let run_one = |i: usize| -> Result<()> {
        let cells = &jobs[i];
        match Claim::try_take(&claims, &cells[0].unlearn_key)? {
            Some(_held) => run_claimed(cells),
            None => {
                deferred.lock().expect("deferred lock").push(i);
                Ok(())
            }
        }
    };
    let res = if opts.jobs > 1 {
        crate::parallel::run_on_workers(opts.jobs, jobs.len(), run_one)
    } else {
        (0..jobs.len()).try_for_each(run_one)
    };
    // What another worker held: wait for it, then compute whatever it did not finish.
    let res = res.and_then(|_| {
        let mut later = deferred.into_inner().expect("deferred lock");
        later.sort_unstable();
        for i in later {
            let cells = &jobs[i];
            let _held = Claim::wait_take(&claims, &cells[0].unlearn_key, || {
                opts.progress.note(&format!(
                    "{}: another worker holds it; waiting",
                    cells[0].label
                ))
            })?;
            run_claimed(cells)?;
        }
        Ok(())
    });
    let mut t = totals.into_inner().expect("totals lock");
    t.result = res;
    t
}
