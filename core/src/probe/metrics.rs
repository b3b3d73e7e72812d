//! Scores of a probe's predictions on a test split, and a seeded percentile bootstrap interval for any of them.
//! Every metric checks its inputs and says when it is undefined rather than returning NaN.

use rand::{Rng, SeedableRng};

use super::{ProbeError, Result, check_finite, check_len};

/// Pearson's correlation coefficient of `x` and `y`.
///
/// # Errors
/// Empty, mismatched or non-finite inputs; [`ProbeError::Undefined`] when fewer than two values or either
/// input is constant.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_finite("x", x)?;
    check_finite("y", y)?;
    check_len("y", x.len(), y.len())?;
    if x.len() < 2 {
        return Err(ProbeError::Undefined {
            metric: "pearson r",
            why: "fewer than two values",
        });
    }
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(ProbeError::Undefined {
            metric: "pearson r",
            why: "an input is constant",
        });
    }
    // Clamped: rounding can put a perfect correlation a hair outside [-1, 1].
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman's rank correlation: Pearson's r of the ranks, tied values sharing their average rank.
///
/// # Errors
/// As [`pearson`]; a constant input is undefined.
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_finite("x", x)?;
    check_finite("y", y)?;
    check_len("y", x.len(), y.len())?;
    pearson(&average_ranks(x), &average_ranks(y)).map_err(|e| match e {
        ProbeError::Undefined { why, .. } => ProbeError::Undefined {
            metric: "spearman rho",
            why,
        },
        other => other,
    })
}

/// The coefficient of determination of predictions `y_pred` for `y_true`: 1 − SS_res / SS_tot. Negative when
/// the predictions are worse than the mean of `y_true`.
///
/// # Errors
/// Empty, mismatched or non-finite inputs; [`ProbeError::Undefined`] when `y_true` is constant.
pub fn r2(y_true: &[f64], y_pred: &[f64]) -> Result<f64> {
    check_finite("y_true", y_true)?;
    check_finite("y_pred", y_pred)?;
    check_len("y_pred", y_true.len(), y_pred.len())?;
    let mean = y_true.iter().sum::<f64>() / y_true.len() as f64;
    let ss_tot: f64 = y_true.iter().map(|y| (y - mean).powi(2)).sum();
    if ss_tot == 0.0 {
        return Err(ProbeError::Undefined {
            metric: "r2",
            why: "y_true is constant",
        });
    }
    let ss_res: f64 = y_true.iter().zip(y_pred).map(|(y, p)| (y - p).powi(2)).sum();
    Ok(1.0 - ss_res / ss_tot)
}

/// Area under the ROC curve: the Mann–Whitney probability that a random positive scores above a random
/// negative, ties counting one half.
///
/// # Errors
/// Empty, mismatched or non-finite inputs; [`ProbeError::Undefined`] unless both classes are present.
pub fn auroc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    check_finite("scores", scores)?;
    check_len("labels", scores.len(), labels.len())?;
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(ProbeError::Undefined {
            metric: "auroc",
            why: "needs both classes",
        });
    }
    let ranks = average_ranks(scores);
    let rank_sum: f64 = ranks.iter().zip(labels).filter(|(_, l)| **l).map(|(r, _)| r).sum();
    let (p, n) = (positives as f64, negatives as f64);
    Ok((rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// Area under the precision–recall curve as average precision: Σ (R_k − R_{k−1}) P_k over the distinct score
/// thresholds from the highest down (rows with tied scores enter together, so their order does not matter).
///
/// # Errors
/// Empty, mismatched or non-finite inputs; [`ProbeError::Undefined`] without a positive.
pub fn auprc(labels: &[bool], scores: &[f64]) -> Result<f64> {
    check_finite("scores", scores)?;
    check_len("labels", scores.len(), labels.len())?;
    let positives = labels.iter().filter(|&&l| l).count();
    if positives == 0 {
        return Err(ProbeError::Undefined {
            metric: "auprc",
            why: "needs a positive",
        });
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut true_pos, mut seen, mut ap) = (0usize, 0usize, 0.0);
    let mut i = 0;
    while i < order.len() {
        // One threshold: every row tied with order[i].
        let threshold = scores[order[i]];
        let mut new_pos = 0;
        while i < order.len() && scores[order[i]] == threshold {
            new_pos += usize::from(labels[order[i]]);
            seen += 1;
            i += 1;
        }
        true_pos += new_pos;
        ap += (new_pos as f64 / positives as f64) * (true_pos as f64 / seen as f64);
    }
    Ok(ap)
}

/// 1-based ranks, tied values sharing the average of the ranks they span.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Ranks start+1 ..= end, averaged.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &k in &order[start..end] {
            ranks[k] = rank;
        }
        start = end;
    }
    ranks
}

/// Settings of [`bootstrap_interval`].
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapOptions {
    /// Resamples drawn (default 1,000).
    pub resamples: usize,
    /// Seed of the resampling, so a report can be reproduced.
    pub seed: u64,
    /// Coverage of the interval (default 0.95).
    pub level: f64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self {
            resamples: 1000,
            seed: 0,
            level: 0.95,
        }
    }
}

/// A point estimate with a bootstrap percentile interval.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Interval {
    /// The statistic on the whole test split.
    pub estimate: f64,
    /// Lower percentile bound.
    pub lower: f64,
    /// Upper percentile bound.
    pub upper: f64,
    /// Resamples on which the statistic was defined (a resample of a rare class may lack positives); the
    /// bounds are percentiles of these.
    pub resamples_used: usize,
}

/// A percentile bootstrap interval for `statistic` over `n` test rows: each resample draws `n` row indices with
/// replacement and calls `statistic` with them; the point estimate calls it with `0..n`. Resamples on which the
/// statistic is [`ProbeError::Undefined`] are skipped and counted out of
/// [`resamples_used`](Interval::resamples_used). Percentiles interpolate linearly between order statistics.
///
/// ```
/// use isoclr_core::probe::{BootstrapOptions, bootstrap_interval, pearson};
/// let (y, p) = ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [1.1, 1.9, 3.2, 3.8, 5.3, 5.9]);
/// let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
/// let ci = bootstrap_interval(y.len(), &BootstrapOptions::default(), |idx| pearson(&pick(&y, idx), &pick(&p, idx)))
///     .unwrap();
/// assert!(ci.lower <= ci.estimate && ci.estimate <= ci.upper);
/// ```
///
/// # Errors
/// [`ProbeError::Empty`] for `n == 0`; [`ProbeError::InvalidOption`] for no resamples or a level outside (0, 1);
/// any error of `statistic` on the whole split; [`ProbeError::Undefined`] when fewer than half the resamples
/// were defined (the interval would describe a different population).
pub fn bootstrap_interval<F>(n: usize, options: &BootstrapOptions, statistic: F) -> Result<Interval>
where
    F: Fn(&[usize]) -> Result<f64>,
{
    if n == 0 {
        return Err(ProbeError::Empty {
            what: "bootstrap sample",
        });
    }
    if options.resamples == 0 {
        return Err(ProbeError::InvalidOption {
            name: "resamples",
            why: "must be at least 1".into(),
        });
    }
    if !(options.level > 0.0 && options.level < 1.0) {
        return Err(ProbeError::InvalidOption {
            name: "level",
            why: format!("{} is not in (0, 1)", options.level),
        });
    }
    let all: Vec<usize> = (0..n).collect();
    let estimate = statistic(&all)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.seed);
    let mut values = Vec::with_capacity(options.resamples);
    let mut idx = vec![0usize; n];
    for _ in 0..options.resamples {
        for slot in idx.iter_mut() {
            *slot = rng.random_range(0..n);
        }
        match statistic(&idx) {
            Ok(v) => values.push(v),
            Err(ProbeError::Undefined { .. }) => {}
            Err(other) => return Err(other),
        }
    }
    if values.len() * 2 < options.resamples {
        return Err(ProbeError::Undefined {
            metric: "bootstrap interval",
            why: "most resamples were undefined",
        });
    }
    values.sort_by(f64::total_cmp);
    let tail = (1.0 - options.level) / 2.0;
    Ok(Interval {
        estimate,
        lower: percentile(&values, tail),
        upper: percentile(&values, 1.0 - tail),
        resamples_used: values.len(),
    })
}

/// The `q` quantile of sorted non-empty `values`, interpolating linearly (numpy's default).
fn percentile(values: &[f64], q: f64) -> f64 {
    let pos = q * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol, "{a} vs {b}");
    }

    #[test]
    fn pearson_matches_hand_computed_value() {
        // x = 1..5, y = (2, 4, 5, 4, 5): sxy = 6, sxx = 10, syy = 6 → r = 6 / sqrt(60).
        let r = pearson(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 4.0, 5.0, 4.0, 5.0]).unwrap();
        close(r, 6.0 / 60f64.sqrt(), 1e-15);
        close(pearson(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap(), -1.0, 1e-15);
    }

    #[test]
    fn spearman_uses_average_ranks_for_ties() {
        assert_eq!(average_ranks(&[10.0, 20.0, 20.0, 5.0]), vec![2.0, 3.5, 3.5, 1.0]);
        // Ranks x = (1, 2, 3, 4), y = (1, 2.5, 2.5, 4): sxy = 4.5, sxx = 5, syy = 4.5 → rho = 4.5 / sqrt(22.5).
        let rho = spearman(&[1.0, 2.0, 3.0, 4.0], &[0.1, 7.0, 7.0, 9.0]).unwrap();
        close(rho, 4.5 / 22.5f64.sqrt(), 1e-15);
        // Monotone but not linear: rho is 1 (up to rounding), where Pearson's r is not.
        close(
            spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]).unwrap(),
            1.0,
            1e-15,
        );
        assert!(pearson(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0]).unwrap() < 0.99);
    }

    #[test]
    fn r2_matches_hand_computed_value() {
        // y = (1, 2, 3), mean 2, SS_tot = 2; predictions (1, 2, 4): SS_res = 1 → R² = 0.5.
        close(r2(&[1.0, 2.0, 3.0], &[1.0, 2.0, 4.0]).unwrap(), 0.5, 1e-15);
        // Predicting worse than the mean is negative.
        assert!(r2(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]).unwrap() < 0.0);
    }

    #[test]
    fn auroc_counts_ties_as_half() {
        // Positives score 0.8, 0.4; negatives 0.4, 0.1. Pairs: (0.8>0.4) 1, (0.8>0.1) 1, (0.4=0.4) 0.5,
        // (0.4>0.1) 1 → 3.5 / 4.
        let labels = [true, true, false, false];
        close(auroc(&labels, &[0.8, 0.4, 0.4, 0.1]).unwrap(), 0.875, 1e-15);
        close(auroc(&labels, &[0.5, 0.5, 0.5, 0.5]).unwrap(), 0.5, 1e-15);
        close(auroc(&labels, &[0.0, 0.1, 0.2, 0.3]).unwrap(), 0.0, 1e-15);
    }

    #[test]
    fn auprc_is_average_precision_with_tied_thresholds() {
        // Scores 0.9(+) 0.8(-) 0.7(+) 0.1(-): AP = 1/2 · 1 + 1/2 · 2/3 = 5/6.
        close(
            auprc(&[true, false, true, false], &[0.9, 0.8, 0.7, 0.1]).unwrap(),
            5.0 / 6.0,
            1e-15,
        );
        // A tie across classes at the top enters as one threshold: 0.9(+) 0.9(-) 0.2(+):
        // AP = 1/2 · 1/2 + 1/2 · 2/3 = 7/12, whatever the order of the tied rows.
        close(
            auprc(&[true, false, true], &[0.9, 0.9, 0.2]).unwrap(),
            7.0 / 12.0,
            1e-15,
        );
        close(
            auprc(&[false, true, true], &[0.9, 0.9, 0.2]).unwrap(),
            7.0 / 12.0,
            1e-15,
        );
    }

    #[test]
    fn metrics_reject_bad_input_with_typed_errors() {
        assert_eq!(pearson(&[], &[]), Err(ProbeError::Empty { what: "x" }));
        assert_eq!(
            pearson(&[1.0, 2.0], &[1.0]),
            Err(ProbeError::LengthMismatch {
                what: "y",
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            r2(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(ProbeError::NonFinite {
                what: "y_true",
                index: 1
            })
        );
        assert!(matches!(
            pearson(&[1.0, 1.0], &[1.0, 2.0]),
            Err(ProbeError::Undefined { .. })
        ));
        assert!(matches!(
            auroc(&[true, true], &[0.1, 0.2]),
            Err(ProbeError::Undefined { .. })
        ));
        assert!(matches!(
            auprc(&[false, false], &[0.1, 0.2]),
            Err(ProbeError::Undefined { .. })
        ));
        assert!(matches!(
            auroc(&[true], &[0.1, 0.2]),
            Err(ProbeError::LengthMismatch { .. })
        ));
    }

    /// y = x + noise with a fixed seed, for the bootstrap tests.
    fn noisy_line(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let x: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
        let y = x.iter().map(|v| v + 0.3 * (rng.random::<f64>() - 0.5)).collect();
        (x, y)
    }

    fn pearson_interval(x: &[f64], y: &[f64], seed: u64) -> Interval {
        let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
        let options = BootstrapOptions {
            seed,
            ..BootstrapOptions::default()
        };
        bootstrap_interval(x.len(), &options, |idx| pearson(&pick(x, idx), &pick(y, idx))).unwrap()
    }

    #[test]
    fn bootstrap_interval_contains_estimate_and_narrows_with_more_data() {
        let (xs, ys) = noisy_line(40, 1);
        let (xl, yl) = noisy_line(4000, 2);
        let small = pearson_interval(&xs, &ys, 7);
        let large = pearson_interval(&xl, &yl, 7);
        for ci in [small, large] {
            assert!(ci.lower < ci.estimate && ci.estimate < ci.upper, "{ci:?}");
            assert_eq!(ci.resamples_used, 1000);
        }
        // Width shrinks roughly as 1/sqrt(n): 100× the rows, well under half the width.
        assert!(
            large.upper - large.lower < 0.5 * (small.upper - small.lower),
            "{small:?} {large:?}"
        );
        // Seeded: the same seed gives the same interval.
        assert_eq!(pearson_interval(&xs, &ys, 7), small);
    }

    #[test]
    fn bootstrap_skips_undefined_resamples_and_rejects_bad_options() {
        // One positive in twenty: many resamples lack it and AUROC is undefined there.
        let labels: Vec<bool> = (0..20).map(|i| i == 3).collect();
        let scores: Vec<f64> = (0..20).map(|i| i as f64).collect();
        let stat = |idx: &[usize]| {
            let l: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
            let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            auroc(&l, &s)
        };
        let ci = bootstrap_interval(20, &BootstrapOptions::default(), stat).unwrap();
        assert!(ci.resamples_used < 1000 && ci.resamples_used > 500, "{ci:?}");
        assert_eq!(
            bootstrap_interval(0, &BootstrapOptions::default(), stat),
            Err(ProbeError::Empty {
                what: "bootstrap sample"
            })
        );
        let bad = BootstrapOptions {
            level: 1.0,
            ..BootstrapOptions::default()
        };
        assert!(matches!(
            bootstrap_interval(20, &bad, stat),
            Err(ProbeError::InvalidOption { name: "level", .. })
        ));
    }
}
