//! Work split into shards of a batch, each shard computed on a one-thread rayon pool of its own.
//!
//! On 2 cores, two threads splitting every op of one batch hand work back and forth at every op
//! (and idle at every serial one); whole shards per core do not. Used by data-parallel
//! pre-training and by sharded generation. Each shard's ops (candle's, ours) see a one-thread
//! pool, so none of them waits behind another shard's.

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
    pub fn map<T: Send>(
        &self,
        n: usize,
        f: impl Fn(usize, Range<usize>) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let ranges = self.ranges(n);
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
            let mut parts = Vec::with_capacity(ranges.len());
            if let Some(r) = ranges.first() {
                parts.push(self.pools[0].install(|| f(0, r.clone())));
            }
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

#[cfg(test)]
mod tests {
    use super::Shards;

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
    }
}
