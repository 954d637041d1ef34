//! Generation split into shards of a batch, each shard on a one-thread pool of its own
//! ([`crate::parallel::Shards`]). Every family generates each image from its own pixels, mask and
//! random stream, so a shard's outputs are the batch's rows up to float rounding (a test per family
//! checks it: at tiny shapes MAE's matrix products round a few values by their row count, 1.2e-7
//! measured; MAE-base's outputs were bit for bit the same on 1 and 2 shards). The pipeline's
//! evaluation does not use it: its numbers stay the same bits for any thread count.

use super::{GenerateOptions, I2IModel};
use crate::masks::BatchMask;
use crate::parallel::Shards;
use anyhow::Result;
use candle_core::Tensor;
use rand_chacha::ChaCha8Rng;
use std::sync::Mutex;

/// [`I2IModel::generate`] of the batch, as consecutive shards computed at the same time.
/// `on_step` hears the first shard's sampling steps (every shard takes the same steps). With one
/// shard (or one image) it is the plain call.
pub fn generate_in_shards(
    model: &dyn I2IModel,
    shards: &Shards,
    pixels: &Tensor,
    mask: &BatchMask,
    rngs: &mut [ChaCha8Rng],
    opts: &GenerateOptions,
    on_step: &mut dyn FnMut(usize, usize),
) -> Result<Tensor> {
    let n = mask.len();
    anyhow::ensure!(
        rngs.len() == n,
        "{n} masks but {} random streams",
        rngs.len()
    );
    let ranges = shards.ranges(n);
    if ranges.len() <= 1 {
        return model.generate(pixels, mask, rngs, opts, on_step);
    }
    // Each shard locks only its own streams: the locks are never contended.
    let mut streams = vec![];
    let mut rest = rngs;
    for r in &ranges {
        let (head, tail) = rest.split_at_mut(r.len());
        streams.push(Mutex::new(head));
        rest = tail;
    }
    let (tx, rx) = std::sync::mpsc::channel::<(usize, usize)>();
    let parts = std::thread::scope(|scope| {
        let streams = &streams;
        let work = scope.spawn(move || {
            shards.map(n, |i, r| {
                let mut rngs = streams[i].lock().expect("a shard's streams");
                let x = pixels.narrow(0, r.start, r.len())?;
                let m = mask.slice(r.start, r.len());
                let tx = tx.clone();
                model.generate(&x, &m, &mut rngs, opts, &mut |s, t| {
                    if i == 0 {
                        let _ = tx.send((s, t));
                    }
                })
            })
        });
        // The sender lives in the work's closure: the loop ends when every shard is done.
        for (s, t) in rx {
            on_step(s, t);
        }
        work.join().expect("a generation shard panicked")
    })?;
    Ok(Tensor::cat(&parts, 0)?)
}
