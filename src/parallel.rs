//! Work on one-thread rayon pools of its own: a batch split into shards ([`Shards`]), or
//! independent jobs handed to workers ([`run_on_workers`]).
//!
//! On 2 cores, two threads splitting every op of one batch hand work back and forth at every op
//! (and idle at every serial one); whole shards per core do not. Shards serve data-parallel
//! pre-training, sharded generation and the Inception extractor; workers serve the grid's
//! unlearning jobs. Each shard's or job's ops (candle's, ours) see a one-thread pool, so none of
//! them waits behind another's.

use anyhow::Result;
use std::ops::Range;

/// One one-thread rayon pool per shard.
pub struct Shards {
    pools: Vec<rayon::ThreadPool>,
}

impl Shards {
    /// `n` pools (at least one).
    pub fn new(n: usize) -> Result<Self> {
        let pools = (0..n.max(1))
            .map(|s| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(move |_| format!("shard-{s}"))
                    .build()
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Self { pools })
    }

    /// As many shards as the current rayon pool has threads (`RAYON_NUM_THREADS`).
    pub fn per_thread() -> Result<Self> {
        Self::new(rayon::current_num_threads())
    }

    /// [`Shards::per_thread`] on a CPU; one shard (the plain call) on a GPU, which takes a batch
    /// whole.
    pub fn for_device(device: &candle_core::Device) -> Result<Self> {
        if device.is_cpu() {
            Self::per_thread()
        } else {
            Self::new(1)
        }
    }

    pub fn len(&self) -> usize {
        self.pools.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    /// `0..n` cut into at most `len()` consecutive ranges, the first ones one longer where `n`
    /// does not divide evenly; no range is empty.
    pub fn ranges(&self, n: usize) -> Vec<Range<usize>> {
        let k = self.len().min(n);
        let base = n.checked_div(k).unwrap_or(0);
        let extra = n.checked_rem(k).unwrap_or(0);
        let mut start = 0;
        (0..k)
            .map(|i| {
                let len = base + usize::from(i < extra);
                let r = start..start + len;
                start += len;
                r
            })
            .collect()
    }

    /// `f(i, range_i)` for each range of [`Shards::ranges`]`(n)`, at the same time, each on its
    /// own pool; the results in shard order. The error of the lowest failing shard is returned.
    /// With one shard (or at most one item) it is `f(0, 0..n)` on the calling thread and its
    /// pool, every op split over that pool's threads as without shards.
    pub fn map<T: Send>(
        &self,
        n: usize,
        f: impl Fn(usize, Range<usize>) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let ranges = self.ranges(n);
        if ranges.len() <= 1 {
            return Ok(vec![f(0, 0..n)?]);
        }
        let f = &f;
        let parts: Vec<Result<T>> = std::thread::scope(|scope| {
            let handles: Vec<_> = ranges
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, r)| {
                    let pool = &self.pools[i];
                    let r = r.clone();
                    scope.spawn(move || pool.install(|| f(i, r)))
                })
                .collect();
            let mut parts = vec![self.pools[0].install(|| f(0, ranges[0].clone()))];
            parts.extend(
                handles
                    .into_iter()
                    .map(|h| h.join().expect("a shard's thread panicked")),
            );
            parts
        });
        parts.into_iter().collect()
    }
}

/// Runs `f(0)`, `f(1)`, … `f(n − 1)` on `workers` threads, each taking the next index in order
/// and running it on a rayon pool of its own: a job's ops (candle's, ours) then never wait
/// behind another job's, as they do when the jobs share one pool and steal each other's pieces.
/// Each pool has one thread, or `workers / n` when there are fewer jobs than workers, so that a
/// lone job still has every core. No new index is handed out after an error; the error of the
/// lowest index is returned.
pub fn run_on_workers(
    workers: usize,
    n: usize,
    f: impl Fn(usize) -> Result<()> + Sync,
) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors = std::sync::Mutex::new(Vec::<(usize, anyhow::Error)>::new());
    let threads = (workers / workers.min(n).max(1)).max(1);
    let work = || -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        while !failed.load(Ordering::SeqCst) {
            let i = next.fetch_add(1, Ordering::SeqCst);
            if i >= n {
                break;
            }
            if let Err(e) = pool.install(|| f(i)) {
                failed.store(true, Ordering::SeqCst);
                errors.lock().expect("errors lock").push((i, e));
            }
        }
        Ok(())
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(n)).map(|_| scope.spawn(work)).collect();
        for h in handles {
            h.join().expect("a worker panicked")?;
        }
        Ok::<(), anyhow::Error>(())
    })?;
    let mut errors = errors.into_inner().expect("errors lock");
    errors.sort_by_key(|(i, _)| *i);
    match errors.into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::{run_on_workers, Shards};
    use std::sync::Mutex;

    #[test]
    fn ranges_cover_every_item_once_in_order() {
        let s = Shards::new(3).unwrap();
        assert_eq!(s.ranges(8), vec![0..3, 3..6, 6..8]);
        assert_eq!(s.ranges(2), vec![0..1, 1..2]);
        assert_eq!(s.ranges(0), Vec::<std::ops::Range<usize>>::new());
        assert_eq!(Shards::new(0).unwrap().len(), 1);
    }

    /// Every shard runs on a one-thread pool of its own; results come back in shard order and
    /// the lowest failing shard's error wins.
    #[test]
    fn map_runs_each_shard_on_its_own_pool() {
        let s = Shards::new(4).unwrap();
        let out = s
            .map(10, |i, r| {
                assert_eq!(rayon::current_num_threads(), 1);
                Ok((i, r.len(), std::thread::current().name().map(String::from)))
            })
            .unwrap();
        let names: Vec<_> = out.iter().map(|(_, _, n)| n.clone().unwrap()).collect();
        assert_eq!(names, ["shard-0", "shard-1", "shard-2", "shard-3"]);
        assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), [3, 3, 2, 2]);
        let err = s
            .map(4, |i, _| {
                anyhow::ensure!(i < 1, "shard {i} failed");
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "shard 1 failed");
        // One shard: the caller's own pool (here the test's, RAYON_NUM_THREADS wide).
        let caller = rayon::current_num_threads();
        let one = Shards::new(1)
            .unwrap()
            .map(7, |i, r| Ok((i, r, rayon::current_num_threads())))
            .unwrap();
        assert_eq!(one, [(0, 0..7, caller)]);
    }

    /// Every job runs exactly once, each on a one-thread pool (the workers' threads shared out
    /// when there are fewer jobs); the lowest failing job's error is the run's, and no job is
    /// handed out after a failure is seen.
    #[test]
    fn workers_run_every_job_once_and_report_the_first_failure() {
        for (workers, n, threads) in [(2, 1, 2), (4, 2, 2), (3, 2, 1), (1, 3, 1)] {
            run_on_workers(workers, n, |_| {
                assert_eq!(
                    rayon::current_num_threads(),
                    threads,
                    "{workers} workers, {n} jobs"
                );
                Ok(())
            })
            .unwrap();
        }
        let seen = Mutex::new(Vec::new());
        run_on_workers(2, 9, |i| {
            assert_eq!(rayon::current_num_threads(), 1);
            seen.lock().unwrap().push(i);
            Ok(())
        })
        .unwrap();
        let mut seen = seen.into_inner().unwrap();
        seen.sort_unstable();
        assert_eq!(seen, (0..9).collect::<Vec<_>>());

        let started = Mutex::new(Vec::new());
        let err = run_on_workers(2, 50, |i| {
            started.lock().unwrap().push(i);
            if i == 3 || i == 4 {
                anyhow::bail!("job {i} failed");
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "job 3 failed");
        assert!(started.into_inner().unwrap().len() < 50);
    }
}
