//! The membership audit: can a loss-threshold attacker tell images that were in the training
//! data ("members") from held-out images of the same classes ("non-members")?
//!
//! The attack scores every image by its reconstruction loss under the model (lower loss → more
//! likely a member) and thresholds it. Its ROC AUC over every threshold is the Mann–Whitney
//! statistic: the probability that a random member has a lower loss than a random non-member,
//! ties counting one half. 0.5 means no trace of membership; 1 means the losses separate the two
//! groups completely; below 0.5 means members are reconstructed *worse* than unseen images (what
//! a method that over-shoots its forgetting can leave behind).

use anyhow::Result;

/// ROC AUC of the loss-threshold attack: P(loss(member) < loss(non-member)) + ½ P(equal), in
/// O(n log n) by ranking. `None` when a group is empty or a loss is not finite.
pub fn auc(member_loss: &[f64], nonmember_loss: &[f64]) -> Option<f64> {
    let (m, n) = (member_loss.len(), nonmember_loss.len());
    if m == 0 || n == 0 {
        return None;
    }
    if member_loss
        .iter()
        .chain(nonmember_loss)
        .any(|v| !v.is_finite())
    {
        return None;
    }
    // All losses ascending, members flagged; tied runs share their mean rank.
    let mut all: Vec<(f64, bool)> = member_loss
        .iter()
        .map(|&v| (v, true))
        .chain(nonmember_loss.iter().map(|&v| (v, false)))
        .collect();
    all.sort_by(|a, b| a.0.partial_cmp(&b.0).expect("finite"));
    // Sum of the non-members' ranks (1-based) when sorted ascending by loss: a non-member ranked
    // high (large loss) means members beat it.
    let mut rank_sum_non = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_non += mean_rank * all[i..=j].iter().filter(|x| !x.1).count() as f64;
        i = j + 1;
    }
    // U = pairs (member, non-member) with the member's loss lower (+½ per tie).
    let u = rank_sum_non - (n * (n + 1)) as f64 / 2.0;
    Some(u / (m * n) as f64)
}

/// A value and its bootstrap interval, if one was computed.
pub type WithInterval = (f64, Option<(f64, f64)>);

/// [`auc`] with a bootstrap interval (members and non-members resampled separately).
pub fn auc_with_interval(
    member_loss: &[f64],
    nonmember_loss: &[f64],
    resamples: usize,
    seed: u64,
) -> Result<Option<WithInterval>> {
    let Some(value) = auc(member_loss, nonmember_loss) else {
        return Ok(None);
    };
    let ci = super::bootstrap::interval(
        &[member_loss.len(), nonmember_loss.len()],
        resamples,
        seed,
        |idx| {
            let a: Vec<f64> = idx[0].iter().map(|&i| member_loss[i]).collect();
            let b: Vec<f64> = idx[1].iter().map(|&i| nonmember_loss[i]).collect();
            Ok(auc(&a, &b).unwrap_or(f64::NAN))
        },
    )?;
    Ok(Some((value, ci)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    /// The direct O(m·n) definition.
    fn auc_pairs(a: &[f64], b: &[f64]) -> f64 {
        let mut s = 0.0;
        for x in a {
            for y in b {
                s += if x < y {
                    1.0
                } else if x == y {
                    0.5
                } else {
                    0.0
                };
            }
        }
        s / (a.len() * b.len()) as f64
    }

    #[test]
    fn ranks_agree_with_the_pairwise_definition_ties_included() {
        let a = [0.1, 0.2, 0.2, 0.5, 0.9];
        let b = [0.2, 0.3, 0.9, 0.9];
        assert!((auc(&a, &b).unwrap() - auc_pairs(&a, &b)).abs() < 1e-12);
        assert_eq!(auc(&[1.0], &[2.0]), Some(1.0));
        assert_eq!(auc(&[2.0], &[1.0]), Some(0.0));
        assert_eq!(auc(&[1.0, 1.0], &[1.0]), Some(0.5));
        assert_eq!(auc(&[], &[1.0]), None);
        assert_eq!(auc(&[f64::NAN], &[1.0]), None);
    }

    /// A "model" that memorised one half of a set: its loss on those images is far below its
    /// loss on the other half, which it never saw → AUC near 1. The same loss distribution for
    /// both halves → AUC near 0.5, with an interval that contains 0.5.
    #[test]
    fn memorised_half_gives_auc_near_one_identical_distributions_near_half() {
        let mut rng = crate::util::rng("audit-test", 1);
        let noise = |rng: &mut rand_chacha::ChaCha8Rng| rng.random::<f64>() * 0.1;
        // Per-image "reconstruction loss" of a memorising model: members ≈ 0.01, others ≈ 0.2.
        let members: Vec<f64> = (0..200).map(|_| 0.01 + noise(&mut rng) * 0.1).collect();
        let others: Vec<f64> = (0..200).map(|_| 0.2 + noise(&mut rng)).collect();
        let (v, ci) = auc_with_interval(&members, &others, 200, 5)
            .unwrap()
            .unwrap();
        assert!(v > 0.99, "{v}");
        let (lo, _) = ci.unwrap();
        assert!(lo > 0.95, "{lo}");
        // No memorisation: both halves drawn from one distribution.
        let a: Vec<f64> = (0..300).map(|_| 0.2 + noise(&mut rng)).collect();
        let b: Vec<f64> = (0..300).map(|_| 0.2 + noise(&mut rng)).collect();
        let (v, ci) = auc_with_interval(&a, &b, 200, 5).unwrap().unwrap();
        let (lo, hi) = ci.unwrap();
        assert!((v - 0.5).abs() < 0.06, "{v}");
        assert!(lo < 0.5 && 0.5 < hi, "[{lo}, {hi}]");
        assert!(hi - lo < 0.2, "[{lo}, {hi}]");
    }
}
