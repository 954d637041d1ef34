//! A model's outputs on an evaluation set under a cell's mask and seed: the same inputs, masks
//! and per-image random streams for every model (the evaluated one and the retrain oracle).

use crate::config::grid::Cell;
use crate::config::Experiment;
use crate::data::ImageSet;
use crate::models::I2IModel;
use crate::unlearn::trainer;
use anyhow::Result;
use candle_core::Tensor;

/// One stream per image: its stable id mixed with the cell's seed.
fn image_rngs(ids: &[u64], seed: u64) -> Vec<rand_chacha::ChaCha8Rng> {
    ids.iter()
        .map(|&id| crate::util::rng("generate", crate::util::mix(&[id, seed])))
        .collect()
}

/// Generate a set in batches under the cell's mask and seed, with the experiment's batch size and
/// generation options (the evaluated model and the oracle alike). Outputs holding NaN or
/// infinite values are an error (callers name the model and the set), never a row.
pub fn generate(
    exp: &Experiment,
    cell: &Cell,
    model: &dyn I2IModel,
    set: &ImageSet,
) -> Result<Tensor> {
    let (mask, seed, batch, opts) = (cell.mask, cell.seed, exp.metrics.batch_size, &exp.generate);
    let grid = model.mask_grid();
    let mut outs = vec![];
    let mut start = 0;
    while start < set.len() {
        let b = batch.min(set.len() - start);
        let part = set.slice(start, b)?;
        let m = mask.batch(grid, &trainer::mask_keys(&part.ids, seed, None))?;
        let mut rngs = image_rngs(&part.ids, seed);
        outs.push(model.generate(&part.pixels, &m, &mut rngs, opts, &mut |_, _| {})?);
        start += b;
    }
    let out = Tensor::cat(&outs, 0)?;
    anyhow::ensure!(
        crate::models::is_finite(&out)?,
        "its outputs hold NaN or infinite values (generation); no row is written"
    );
    Ok(out)
}
