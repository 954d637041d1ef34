//! An evaluation split held out of the training split (`val_from_train: {per_class, seed}`), for
//! sources that have no validation split of their own — a train-only hub copy of Places-365. It
//! stands in for the official validation images; that is a deviation from the paper's protocol,
//! and the source's description (recorded in every run's data manifest) says so.
//!
//! Per class, `per_class` training images drawn with `seed` are the held-out set, the same for
//! every run and every experiment seed. Validation draws come from it (seeded, nested: a larger
//! draw contains a smaller one); training draws skip it, so no held-out image is ever trained on.

use super::{DataSource, Draw, Split};
use anyhow::Result;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

/// `val_from_train:` of a dataset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldOutSpec {
    /// Training images per class held out as the evaluation split.
    pub per_class: usize,
    /// Seed of the hold-out draw (independent of the dataset's `sample_seed`).
    #[serde(default)]
    pub seed: u64,
}

pub struct HeldOut {
    inner: Box<dyn DataSource>,
    spec: HeldOutSpec,
    /// Per class: the held-out draw.
    held: Mutex<HashMap<usize, Draw>>,
}

impl HeldOut {
    pub fn new(inner: Box<dyn DataSource>, spec: HeldOutSpec) -> Self {
        Self {
            inner,
            spec,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self, class: usize) -> Result<Draw> {
        if let Some(d) = self.held.lock().expect("held lock").get(&class) {
            return Ok(d.clone());
        }
        let d = self
            .inner
            .draw(class, Split::Train, self.spec.per_class, self.spec.seed)?;
        self.held
            .lock()
            .expect("held lock")
            .insert(class, d.clone());
        Ok(d)
    }

    /// The inner source's needs for `needs`: validation draws become the hold-out draw, training
    /// draws grow by the hold-out (the held-out images are skipped afterwards).
    fn inner_needs(&self, needs: &[(usize, Split, usize)]) -> [Vec<(usize, Split, usize)>; 2] {
        let k = self.spec.per_class;
        let mut held = vec![];
        let mut train = vec![];
        for &(c, s, n) in needs {
            held.push((c, Split::Train, k));
            if s == Split::Train {
                train.push((c, Split::Train, n + k));
            }
        }
        held.sort_by_key(|x| x.0);
        held.dedup();
        [held, train]
    }
}

impl DataSource for HeldOut {
    fn describe(&self) -> String {
        format!(
            "{} — evaluation split: {} training images per class held out (seed {}), standing in for the official validation split (a deviation from the paper's protocol)",
            self.inner.describe(),
            self.spec.per_class,
            self.spec.seed
        )
    }

    fn classes(&self) -> Vec<String> {
        self.inner.classes()
    }

    fn prepare(&self, needs: &[(usize, Split, usize)], seed: u64) -> Result<()> {
        let [held, train] = self.inner_needs(needs);
        self.inner.prepare(&held, self.spec.seed)?;
        self.inner.prepare(&train, seed)
    }

    fn download(&self, needs: &[(usize, Split, usize)]) -> Result<()> {
        let [mut all, train] = self.inner_needs(needs);
        all.extend(train);
        self.inner.download(&all)
    }

    fn draw(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Draw> {
        let held = self.held(class)?;
        match split {
            Split::Val => {
                let mut d = held;
                let mut order: Vec<usize> = (0..d.images.len()).collect();
                order.shuffle(&mut crate::util::rng(
                    "held-out-val",
                    crate::util::mix(&[seed, class as u64]),
                ));
                order.truncate(n);
                let imgs = std::mem::take(&mut d.images);
                d.images = order.into_iter().map(|i| imgs[i].clone()).collect();
                d.available = d.available.min(self.spec.per_class);
                Ok(d)
            }
            Split::Train => {
                let skip: HashSet<u64> = held.images.iter().map(|r| r.id).collect();
                let k = self.spec.per_class;
                let mut d = self.inner.draw(class, Split::Train, n + k, seed)?;
                d.images.retain(|r| !skip.contains(&r.id));
                d.images.truncate(n);
                d.available = d.available.saturating_sub(k);
                Ok(d)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::RawImage;

    /// 20 training images per class, none for validation; seeded choice as real sources make.
    struct Fake;
    impl DataSource for Fake {
        fn describe(&self) -> String {
            "fake".into()
        }
        fn classes(&self) -> Vec<String> {
            vec!["a".into(), "b".into()]
        }
        fn draw(&self, class: usize, split: Split, n: usize, seed: u64) -> Result<Draw> {
            assert_eq!(
                split,
                Split::Train,
                "the hold-out only reads the train split"
            );
            let mut ids: Vec<u64> = (0..20).map(|i| class as u64 * 100 + i).collect();
            ids.shuffle(&mut crate::util::rng("fake", seed));
            ids.truncate(n);
            let images = ids
                .into_iter()
                .map(|id| RawImage {
                    id,
                    class,
                    width: 1,
                    height: 1,
                    rgb: vec![0; 3],
                })
                .collect();
            Ok(Draw {
                images,
                available: 20,
                failed: vec![],
            })
        }
    }

    fn ids(d: &Draw) -> Vec<u64> {
        d.images.iter().map(|r| r.id).collect()
    }

    #[test]
    fn held_out_images_are_never_trained_on_and_val_draws_nest() {
        let h = HeldOut::new(
            Box::new(Fake),
            HeldOutSpec {
                per_class: 5,
                seed: 3,
            },
        );
        let val = h.draw(1, Split::Val, 4, 0).unwrap();
        let val_all = h.draw(1, Split::Val, 9, 0).unwrap();
        assert_eq!(val.images.len(), 4);
        assert_eq!((val_all.images.len(), val_all.available), (5, 5));
        assert_eq!(ids(&val), ids(&val_all)[..4]);
        for seed in 0..6 {
            let t = h.draw(1, Split::Train, 15, seed).unwrap();
            assert_eq!((t.images.len(), t.available), (15, 15));
            assert!(ids(&t).iter().all(|i| !ids(&val_all).contains(i)));
        }
        // The same hold-out from a fresh source: fixed by its own seed, not the draw's.
        let again = HeldOut::new(
            Box::new(Fake),
            HeldOutSpec {
                per_class: 5,
                seed: 3,
            },
        );
        let v2 = again.draw(1, Split::Val, 9, 7).unwrap();
        let mut a = ids(&v2);
        let mut b = ids(&val_all);
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
        assert!(h.describe().contains("a deviation"));
    }
}
