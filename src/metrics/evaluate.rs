//! The metrics of a generated set against its ground truth, one function per metric, each
//! returning its rows with their protocol; [`evaluate_set`] runs the enabled ones.

use super::{
    bootstrap, extract, fid, is, kid, mean_cosine, np_random, Extracted, ExtractorRef, Extractors,
    IsRule, MetricValue, MetricsSpec, SHUFFLE_SEED,
};
use crate::names::MetricId;
use anyhow::Result;
use candle_core::Tensor;
use std::collections::BTreeMap;

/// Features per extractor.
pub type FeatureSets = BTreeMap<ExtractorRef, Extracted>;

/// FID / IS / similarity / KID of generated images against their ground truth (`truth` holds
/// the ground truth's features per extractor), with bootstrap intervals over the
/// generated / truth pairs (`spec.bootstrap` resamples, drawn from `seed`); also returns the
/// generated images' features per extractor.
pub fn evaluate_set(
    spec: &MetricsSpec,
    extractors: &Extractors,
    generated: &Tensor,
    truth: &FeatureSets,
    seed: u64,
) -> Result<(Vec<MetricValue>, FeatureSets)> {
    let mut gen = FeatureSets::new();
    for r in spec.extractors() {
        let want_logits = spec.is == Some(r);
        gen.insert(
            r,
            extract(extractors[&r], generated, spec.batch_size, want_logits)?,
        );
    }
    let ctx = SetCtx {
        spec,
        extractors,
        gen: &gen,
        truth,
        seed,
    };
    let mut out = vec![];
    if let Some(r) = spec.fid {
        out.push(fid_row(&ctx, r)?);
    }
    if let Some(r) = spec.is {
        out.extend(is_rows(&ctx, r)?);
    }
    if let Some(r) = spec.clip {
        out.push(clip_row(&ctx, r)?);
    }
    if let Some(r) = spec.kid {
        out.extend(kid_rows(&ctx, r)?);
    }
    Ok((out, gen))
}

/// What every metric of a set reads.
struct SetCtx<'a> {
    spec: &'a MetricsSpec,
    extractors: &'a Extractors<'a>,
    gen: &'a FeatureSets,
    truth: &'a FeatureSets,
    seed: u64,
}

impl SetCtx<'_> {
    /// The bootstrap stream of a metric.
    fn boot(&self, m: MetricId) -> u64 {
        crate::util::mix(&[self.seed, crate::util::fnv1a64(m.as_str().as_bytes())])
    }
    /// The protocol's note on the interval over `n` pairs.
    fn ci_note(&self, n: usize) -> String {
        if self.spec.bootstrap > 0 {
            format!(
                "; 95% bootstrap interval over the {n} generated/truth pairs ({} resamples)",
                self.spec.bootstrap
            )
        } else {
            String::new()
        }
    }
}

/// FID between the generated images and their ground truth.
fn fid_row(c: &SetCtx, r: ExtractorRef) -> Result<MetricValue> {
    fid_pair(
        MetricId::Fid,
        "generated-vs-truth",
        &c.gen[&r],
        &c.truth[&r],
        &c.extractors[&r].protocol(),
        c.spec.bootstrap,
        c.boot(MetricId::Fid),
    )
}

/// The Inception Score of the generated images and its split std, by the extractor's rule.
fn is_rows(c: &SetCtx, r: ExtractorRef) -> Result<Vec<MetricValue>> {
    let spec = c.spec;
    let g = &c.gen[&r];
    let logits = g.logits.as_ref().ok_or_else(|| {
        anyhow::anyhow!("the extractor has no classifier head for the Inception Score")
    })?;
    let ex = c.extractors[&r];
    let rule = ex.is_rule();
    let perm = np_random::RandomState::new(SHUFFLE_SEED).permutation(g.n);
    let score = |logits: &[f32]| -> Result<(f64, f64)> {
        match rule {
            IsRule::TorchFidelity => {
                is::inception_score(logits, g.classes, spec.is_splits, Some(&perm))
            }
            IsRule::Paper => {
                is::inception_score_with(logits, g.classes, spec.is_splits, None, is::Splits::Floor)
            }
        }
    };
    let (mean, std) = score(logits)?;
    let how = match rule {
        IsRule::TorchFidelity => format!(
            "{} splits after numpy RandomState({SHUFFLE_SEED}).permutation",
            spec.is_splits
        ),
        IsRule::Paper => format!(
            "{} contiguous splits of floor(N/{}) (the paper's official code)",
            spec.is_splits, spec.is_splits
        ),
    };
    // The same rule on each resample of the generated images.
    let ci = bootstrap::interval_bias_corrected(
        &[g.n],
        spec.bootstrap,
        c.boot(MetricId::Is),
        mean,
        |idx| Ok(score(&bootstrap::gather_rows(logits, g.classes, &idx[0]))?.0),
    )?;
    let p = format!(
        "IS, {}, {} classes, f64 softmax, {how}{}",
        ex.protocol(),
        g.classes,
        if spec.bootstrap > 0 {
            format!(
                "; 95% bootstrap interval over the {} generated images ({} resamples, percentile shifted by the resamples' bias)",
                g.n, spec.bootstrap
            )
        } else {
            String::new()
        }
    );
    Ok(vec![
        MetricValue {
            metric: MetricId::Is.as_str().into(),
            value: mean,
            n: g.n,
            protocol: p.clone(),
            ci,
        },
        MetricValue {
            metric: MetricId::IsSplitStd.as_str().into(),
            value: std,
            n: g.n,
            protocol: p,
            ci: None,
        },
    ])
}

/// The mean cosine similarity between each output's embedding and its own ground truth's.
fn clip_row(c: &SetCtx, r: ExtractorRef) -> Result<MetricValue> {
    let (g, t) = (&c.gen[&r], &c.truth[&r]);
    let per_pair: Vec<f64> = (0..g.n)
        .map(|i| {
            let rows = i * g.dim..(i + 1) * g.dim;
            mean_cosine(&g.features[rows.clone()], &t.features[rows], g.dim)
        })
        .collect();
    let ci = bootstrap::interval(&[g.n], c.spec.bootstrap, c.boot(MetricId::Clip), |idx| {
        Ok(idx[0].iter().map(|&i| per_pair[i]).sum::<f64>() / g.n as f64)
    })?;
    Ok(MetricValue {
        metric: MetricId::Clip.as_str().into(),
        value: mean_cosine(&g.features, &t.features, g.dim),
        n: g.n,
        protocol: format!(
            "mean cosine(generated, own truth), {}{}",
            c.extractors[&r].protocol(),
            c.ci_note(g.n)
        ),
        ci,
    })
}

/// KID between the generated images and their ground truth, and its subset std.
fn kid_rows(c: &SetCtx, r: ExtractorRef) -> Result<Vec<MetricValue>> {
    let (g, t) = (&c.gen[&r], &c.truth[&r]);
    let (mean, std) = kid::kid(&g.features, &t.features, g.dim, 100, 1000, SHUFFLE_SEED)?;
    let p = format!(
        "KID generated-vs-truth, {}, (x.y/d+1)^3 kernel, 100 subsets of {}, numpy RandomState({SHUFFLE_SEED})",
        c.extractors[&r].protocol(),
        g.n.min(t.n).min(1000)
    );
    Ok(vec![
        MetricValue {
            metric: MetricId::Kid.as_str().into(),
            value: mean,
            n: g.n,
            protocol: p.clone(),
            ci: None,
        },
        MetricValue {
            metric: MetricId::KidSubsetStd.as_str().into(),
            value: std,
            n: g.n,
            protocol: p,
            ci: None,
        },
    ])
}

/// The Fréchet distance between two feature sets of paired images (row i of `a` and of `b` come
/// from the same input), with its bootstrap interval over the pairs: `metric` names the row,
/// `what` the two sets in the protocol.
pub fn fid_pair(
    metric: MetricId,
    what: &str,
    a: &Extracted,
    b: &Extracted,
    extractor_protocol: &str,
    resamples: usize,
    seed: u64,
) -> Result<MetricValue> {
    anyhow::ensure!(
        a.n == b.n && a.dim == b.dim,
        "the two sets of a Fréchet distance differ: {} × {} vs {} × {}",
        a.n,
        a.dim,
        b.n,
        b.dim
    );
    let value = fid::frechet_distance(
        &fid::Stats::from_rows(&a.features, a.dim)?,
        &fid::Stats::from_rows(&b.features, b.dim)?,
    )?;
    let ci = bootstrap::interval_bias_corrected(&[a.n], resamples, seed, value, |idx| {
        let x = fid::Stats::from_rows(&bootstrap::gather_rows(&a.features, a.dim, &idx[0]), a.dim)?;
        let y = fid::Stats::from_rows(&bootstrap::gather_rows(&b.features, b.dim, &idx[0]), b.dim)?;
        fid::frechet_distance(&x, &y)
    })?;
    let small = if a.n < a.dim {
        "; N < d: singular covariances, biased"
    } else {
        ""
    };
    let interval = if resamples > 0 {
        format!(
            "; 95% bootstrap interval over the {} pairs ({resamples} resamples, percentile shifted by the resamples' bias)",
            a.n
        )
    } else {
        String::new()
    };
    Ok(MetricValue {
        metric: metric.as_str().into(),
        value,
        n: a.n,
        protocol: format!(
            "FID {what}, {extractor_protocol}, f64 stats, symmetric-eigen sqrt{small}{interval}"
        ),
        ci,
    })
}
