//! Scoring of probe predictions on the test split: per size of the low-data curve, each method's metrics
//! averaged over its random draws, with bootstrap intervals over test rows, and paired comparisons of the
//! pre-trained encoder against each baseline. Knows no tensors: predictions in, numbers out.
//!
//! Intervals resample test rows (the population a reader generalises to); the statistic is the metric
//! averaged over draws, so the draw-to-draw spread (reported separately as `sd`) is not double-counted. The
//! comparison resamples the same rows for both methods (a paired bootstrap), which is what can tell two
//! correlated methods apart on one test set.

use serde::{Deserialize, Serialize};

use super::split::SubsetSize;
use super::{BootstrapOptions, Interval, ProbeError, Result, auprc, auroc, bootstrap_interval, pearson, r2, spearman};

/// A source of features (or a model) whose predictions are scored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The trained encoder's frozen embeddings with a linear probe.
    Pretrained,
    /// The same architecture with random weights, frozen, with a linear probe; batch norm uses its initial
    /// running statistics (the identity).
    Random,
    /// The same random weights with batch-norm statistics calibrated on the probe's own sequences
    /// (`isoclr::model::Model::calibrate_batch_norm`): the random baseline at its strongest fair form.
    RandomCalibrated,
    /// k-mer frequencies (k = 3…6) with a linear probe.
    Kmer,
    /// The same architecture trained from scratch on the labels.
    Supervised,
}

impl Method {
    /// Human-readable name for tables and legends.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pretrained => "IsoCLR (pre-trained)",
            Self::Random => "random weights",
            Self::RandomCalibrated => "random weights, calibrated BN",
            Self::Kmer => "k-mer (k=3-6)",
            Self::Supervised => "supervised from scratch",
        }
    }
}

/// The ground truth of the test rows.
#[derive(Debug, Clone, Copy)]
pub enum Truth<'a> {
    /// Real-valued targets (after the task's transform).
    Regression(&'a [f64]),
    /// Binary targets; predictions are scores (any monotone scale).
    Binary(&'a [bool]),
}

impl Truth<'_> {
    fn len(&self) -> usize {
        match self {
            Self::Regression(y) => y.len(),
            Self::Binary(y) => y.len(),
        }
    }

    /// The metrics reported for this kind of target; the first is the primary one.
    pub fn metric_names(&self) -> &'static [&'static str] {
        match self {
            Self::Regression(_) => &["pearson", "spearman", "r2"],
            Self::Binary(_) => &["auroc", "auprc"],
        }
    }

    /// Metric `name` of `predictions` on the rows `idx`.
    fn metric(&self, name: &str, predictions: &[f64], idx: &[usize]) -> Result<f64> {
        let pick = |v: &[f64]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
        let p = pick(predictions);
        match self {
            Self::Regression(y) => {
                let y = pick(y);
                match name {
                    "pearson" => pearson(&y, &p),
                    "spearman" => spearman(&y, &p),
                    _ => r2(&y, &p),
                }
            }
            Self::Binary(y) => {
                let y: Vec<bool> = idx.iter().map(|&i| y[i]).collect();
                match name {
                    "auroc" => auroc(&y, &p),
                    _ => auprc(&y, &p),
                }
            }
        }
    }

    /// The metric averaged over several prediction vectors (one per draw).
    fn mean_metric(&self, name: &str, draws: &[&[f64]], idx: &[usize]) -> Result<f64> {
        let mut sum = 0.0;
        for p in draws {
            sum += self.metric(name, p, idx)?;
        }
        Ok(sum / draws.len() as f64)
    }
}

/// One fitted draw's test predictions.
#[derive(Debug, Clone, PartialEq)]
pub struct DrawPredictions {
    /// Which draw of the subset size.
    pub draw: usize,
    /// Training rows it was fitted on.
    pub train_rows: usize,
    /// The chosen penalty (linear probes) or `None`.
    pub penalty: Option<f64>,
    /// Epochs trained (the supervised baseline) or `None`.
    pub epochs: Option<usize>,
    /// The seed of the random weights behind the features (random-weight baselines), else `None`.
    pub seed: Option<u64>,
    /// One prediction per test row.
    pub predictions: Vec<f64>,
}

/// One method's predictions at one subset size.
#[derive(Debug, Clone, PartialEq)]
pub struct SizePredictions {
    /// The size asked for.
    pub size: SubsetSize,
    /// Its draws (at least one).
    pub draws: Vec<DrawPredictions>,
}

/// A metric over the draws of one size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSummary {
    /// Metric name (`pearson`, `spearman`, `r2`, `auroc`, `auprc`).
    pub metric: String,
    /// Mean over draws.
    pub mean: f64,
    /// Standard deviation over draws (0 for one draw).
    pub sd: f64,
    /// Bootstrap interval over test rows of the mean over draws.
    pub interval: Interval,
}

/// One fitted draw, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DrawResult {
    /// Which draw.
    pub draw: usize,
    /// Training rows.
    pub train_rows: usize,
    /// Chosen penalty, when a linear probe.
    pub penalty: Option<f64>,
    /// Epochs trained, for the supervised baseline.
    pub epochs: Option<usize>,
    /// The seed of the random weights behind it (random-weight baselines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The primary metric on the test split.
    pub primary: f64,
}

/// How a subset size is named in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SizeName {
    /// A share of the training split.
    Fraction(f64),
    /// A number of training rows.
    Count(usize),
}

impl From<SubsetSize> for SizeName {
    fn from(size: SubsetSize) -> Self {
        match size {
            SubsetSize::Fraction(f) => Self::Fraction(f),
            SubsetSize::Count(c) => Self::Count(c),
        }
    }
}

impl std::fmt::Display for SizeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fraction(x) => write!(f, "{}%", x * 100.0),
            Self::Count(c) => write!(f, "{c} rows"),
        }
    }
}

/// One method at one size: its metrics and draws.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizeResult {
    /// The size asked for.
    pub size: SizeName,
    /// Mean training rows over the draws.
    pub train_rows: f64,
    /// Every metric of the target kind, primary first.
    pub metrics: Vec<MetricSummary>,
    /// The draws.
    pub draws: Vec<DrawResult>,
    /// A method run at several seeds (the random-weight baselines): the primary metric of each seed, the
    /// mean over its draws, in seed order; empty for one seed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<SeedMean>,
}

/// One seed's primary metric: the mean over its draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SeedMean {
    /// The seed.
    pub seed: u64,
    /// Mean of the primary metric over the seed's draws.
    pub mean: f64,
}

impl SizeResult {
    /// The primary metric's summary.
    pub fn primary(&self) -> Option<&MetricSummary> {
        self.metrics.first()
    }

    /// The seed whose mean is highest, for a method run at several seeds.
    pub fn best_seed(&self) -> Option<SeedMean> {
        self.seeds.iter().copied().max_by(|a, b| a.mean.total_cmp(&b.mean))
    }
}

/// The distinct seeds of `draws` in ascending order; empty unless there are at least two.
fn seeds_of(draws: &[DrawPredictions]) -> Vec<u64> {
    let mut seeds: Vec<u64> = draws.iter().filter_map(|d| d.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    if seeds.len() < 2 { Vec::new() } else { seeds }
}

/// One method's learning curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodResult {
    /// The method.
    pub method: Method,
    /// One entry per size, in the order given.
    pub sizes: Vec<SizeResult>,
}

/// The pre-trained encoder against one baseline at one size: a paired bootstrap of the difference in the
/// primary metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// The baseline.
    pub baseline: Method,
    /// A baseline run at several seeds is compared twice: with all its seeds' draws (`None`), and with its
    /// best seed's alone at this size (that seed), so that no lucky draw of random weights is averaged away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub best_seed: Option<u64>,
    /// The size.
    pub size: SizeName,
    /// Pre-trained minus baseline: estimate and interval.
    pub difference: Interval,
    /// The difference's interval lies above 0.
    pub pretrained_better: bool,
    /// The pre-trained encoder's own interval lies wholly above the baseline's (the intervals do not overlap):
    /// a stricter reading than the paired difference (not read for a best-seed comparison: false).
    pub intervals_disjoint: bool,
}

/// Everything scored for one target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetResults {
    /// The primary metric's name.
    pub primary_metric: String,
    /// Test rows.
    pub test_rows: usize,
    /// One curve per method.
    pub methods: Vec<MethodResult>,
    /// The pre-trained encoder against each baseline, at every size both have.
    pub comparisons: Vec<Comparison>,
    /// Cells and comparisons left out because a metric is undefined there (a constant prediction has no
    /// correlation, a test set of one class no AUROC), each with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undefined: Vec<String>,
}

impl TargetResults {
    /// The curve of `method`, if it ran.
    pub fn method(&self, method: Method) -> Option<&MethodResult> {
        self.methods.iter().find(|m| m.method == method)
    }
}

/// Scores every method's predictions against `truth` (test rows) and compares the pre-trained encoder with
/// each baseline.
///
/// # Errors
/// [`ProbeError::LengthMismatch`] when a prediction vector is not one value per test row;
/// [`ProbeError::Empty`] for a size without draws. A metric that is undefined for a method at a size (a
/// constant prediction has no correlation: [`ProbeError::Undefined`]) leaves that cell out, with why in
/// [`TargetResults::undefined`]; the rest is scored.
pub fn score(
    truth: Truth<'_>,
    predictions: &[(Method, Vec<SizePredictions>)],
    bootstrap: &BootstrapOptions,
) -> Result<TargetResults> {
    let n = truth.len();
    let mut methods = Vec::new();
    let mut undefined = Vec::new();
    for (method, sizes) in predictions {
        let mut results = Vec::new();
        for size in sizes {
            if size.draws.is_empty() {
                return Err(ProbeError::Empty {
                    what: "draws of a size",
                });
            }
            for d in &size.draws {
                super::check_len("predictions", n, d.predictions.len())?;
            }
            match score_size(truth, size, bootstrap) {
                Ok(result) => results.push(result),
                Err(e @ ProbeError::Undefined { .. }) => {
                    undefined.push(format!("{} at {}: {e}", method.label(), SizeName::from(size.size)));
                }
                Err(other) => return Err(other),
            }
        }
        methods.push(MethodResult {
            method: *method,
            sizes: results,
        });
    }
    let comparisons = compare(truth, predictions, &methods, bootstrap, &mut undefined)?;
    Ok(TargetResults {
        primary_metric: truth.metric_names()[0].to_owned(),
        test_rows: n,
        methods,
        comparisons,
        undefined,
    })
}

/// Every metric of one method at one size, with its draws and (several seeds) each seed's mean.
fn score_size(truth: Truth<'_>, size: &SizePredictions, bootstrap: &BootstrapOptions) -> Result<SizeResult> {
    let n = truth.len();
    let draws: Vec<&[f64]> = size.draws.iter().map(|d| d.predictions.as_slice()).collect();
    let all: Vec<usize> = (0..n).collect();
    let mut metrics = Vec::new();
    // The primary metric of each draw, kept for the per-draw results below.
    let mut primary_per_draw = Vec::new();
    for name in truth.metric_names() {
        let per_draw = draws
            .iter()
            .map(|p| truth.metric(name, p, &all))
            .collect::<Result<Vec<f64>>>()?;
        let interval = bootstrap_interval(n, bootstrap, |idx| truth.mean_metric(name, &draws, idx))?;
        let (mean, sd) = mean_sd(&per_draw);
        if primary_per_draw.is_empty() {
            primary_per_draw = per_draw;
        }
        metrics.push(MetricSummary {
            metric: (*name).to_owned(),
            mean,
            sd,
            interval,
        });
    }
    let seeds = (seeds_of(&size.draws).into_iter())
        .map(|seed| {
            let own: Vec<f64> = (size.draws.iter().zip(&primary_per_draw))
                .filter(|(d, _)| d.seed == Some(seed))
                .map(|(_, &p)| p)
                .collect();
            SeedMean {
                seed,
                mean: mean_sd(&own).0,
            }
        })
        .collect();
    let draw_results = size
        .draws
        .iter()
        .zip(primary_per_draw)
        .map(|(d, primary)| DrawResult {
            draw: d.draw,
            train_rows: d.train_rows,
            penalty: d.penalty,
            epochs: d.epochs,
            seed: d.seed,
            primary,
        })
        .collect();
    Ok(SizeResult {
        size: size.size.into(),
        train_rows: size.draws.iter().map(|d| d.train_rows as f64).sum::<f64>() / size.draws.len() as f64,
        metrics,
        draws: draw_results,
        seeds,
    })
}

/// Paired comparisons of the pre-trained method against every other method, size by size.
fn compare(
    truth: Truth<'_>,
    predictions: &[(Method, Vec<SizePredictions>)],
    scored: &[MethodResult],
    bootstrap: &BootstrapOptions,
    undefined: &mut Vec<String>,
) -> Result<Vec<Comparison>> {
    let primary = truth.metric_names()[0];
    let Some((_, pretrained)) = predictions.iter().find(|(m, _)| *m == Method::Pretrained) else {
        return Ok(Vec::new());
    };
    // A method's scored cell at a size; none where its metric was undefined (already reported).
    let scored_at = |method: Method, size: &SizeName| {
        (scored.iter())
            .find(|m| m.method == method)
            .and_then(|m| m.sizes.iter().find(|s| &s.size == size))
    };
    let mut out = Vec::new();
    for (baseline, sizes) in predictions.iter().filter(|(m, _)| *m != Method::Pretrained) {
        for size in sizes {
            let name: SizeName = size.size.into();
            let Some(ours) = pretrained.iter().find(|s| s.size == size.size) else {
                continue;
            };
            let (Some(ours_scored), Some(theirs_scored)) =
                (scored_at(Method::Pretrained, &name), scored_at(*baseline, &name))
            else {
                continue;
            };
            let best = theirs_scored.best_seed();
            let a: Vec<&[f64]> = ours.draws.iter().map(|d| d.predictions.as_slice()).collect();
            for best_seed in std::iter::once(None).chain(best.map(|b| Some(b.seed))) {
                let b: Vec<&[f64]> = (size.draws.iter())
                    .filter(|d| best_seed.is_none() || d.seed == best_seed)
                    .map(|d| d.predictions.as_slice())
                    .collect();
                let difference = match bootstrap_interval(truth.len(), bootstrap, |idx| {
                    Ok(truth.mean_metric(primary, &a, idx)? - truth.mean_metric(primary, &b, idx)?)
                }) {
                    Ok(d) => d,
                    Err(e @ ProbeError::Undefined { .. }) => {
                        undefined.push(format!("pre-trained vs {} at {name}: {e}", baseline.label()));
                        continue;
                    }
                    Err(other) => return Err(other),
                };
                let disjoint = match (ours_scored.primary(), theirs_scored.primary()) {
                    (Some(p), Some(q)) if best_seed.is_none() => p.interval.lower > q.interval.upper,
                    _ => false,
                };
                out.push(Comparison {
                    baseline: *baseline,
                    best_seed,
                    size: name.clone(),
                    difference,
                    pretrained_better: difference.lower > 0.0,
                    intervals_disjoint: disjoint,
                });
            }
        }
    }
    Ok(out)
}

/// Mean and (population) standard deviation.
/// A correlation over draws: mean and standard deviation, over the draws where it is defined.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DrawMean {
    /// Mean over the draws.
    pub mean: f64,
    /// Standard deviation over the draws.
    pub sd: f64,
    /// Draws where it is defined (a constant prediction has no correlation).
    pub draws: usize,
}

/// One method at one size, split by group: how well it ranks groups, and transcripts within a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupSkill {
    /// The method.
    pub method: Method,
    /// The size.
    pub size: SizeName,
    /// Pearson r of group means, prediction against truth, one point per test group.
    pub between: Option<DrawMean>,
    /// Pearson r of deviations from the group mean, prediction against truth, over the rows of test groups
    /// with two or more rows: isoform- and paralog-level skill.
    pub within: Option<DrawMean>,
}

/// A regression target's test rows split into between-group and within-group parts. An encoder trained to
/// pull a group's isoforms and paralogs together may rank genes well and the transcripts of one gene poorly;
/// labels measured per isoform (ribosome load) carry both parts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroupDecomposition {
    /// Test groups.
    pub groups: usize,
    /// Test rows in groups of two or more rows (the within-group part's rows).
    pub within_rows: usize,
    /// Share of the truth's variance (over test rows) that lies within groups.
    pub within_variance_share: f64,
    /// Every method at every size.
    pub skills: Vec<GroupSkill>,
}

/// Splits `y` (test rows, with their `groups`) and every method's predictions into group means and
/// deviations from them, and correlates each part. `None` when no test group has two rows.
///
/// # Errors
/// [`ProbeError::LengthMismatch`] when `groups` or a prediction vector is not one value per test row.
pub fn decompose_by_group(
    y: &[f64],
    groups: &[u32],
    predictions: &[(Method, Vec<SizePredictions>)],
) -> Result<Option<GroupDecomposition>> {
    super::check_len("groups", y.len(), groups.len())?;
    // Dense group indices in first-appearance order.
    let mut index = std::collections::HashMap::new();
    let dense: Vec<usize> = groups
        .iter()
        .map(|g| {
            let next = index.len();
            *index.entry(*g).or_insert(next)
        })
        .collect();
    let n_groups = index.len();
    let mut size = vec![0usize; n_groups];
    for &g in &dense {
        size[g] += 1;
    }
    let within_rows: Vec<usize> = (0..y.len()).filter(|&i| size[dense[i]] >= 2).collect();
    if within_rows.len() < 3 {
        return Ok(None);
    }
    let group_means = |v: &[f64]| {
        let mut sum = vec![0.0; n_groups];
        for (i, &g) in dense.iter().enumerate() {
            sum[g] += v[i];
        }
        sum.iter().zip(&size).map(|(s, &k)| s / k as f64).collect::<Vec<f64>>()
    };
    let deviations = |v: &[f64], means: &[f64]| within_rows.iter().map(|&i| v[i] - means[dense[i]]).collect::<Vec<_>>();
    let y_means = group_means(y);
    let y_dev = deviations(y, &y_means);
    let (y_mean, _) = mean_sd(y);
    let total: f64 = y.iter().map(|v| (v - y_mean).powi(2)).sum();
    let within: f64 = (0..y.len()).map(|i| (y[i] - y_means[dense[i]]).powi(2)).sum();
    let mut skills = Vec::new();
    for (method, sizes) in predictions {
        for s in sizes {
            let (mut between_r, mut within_r) = (Vec::new(), Vec::new());
            for d in &s.draws {
                super::check_len("predictions", y.len(), d.predictions.len())?;
                let p_means = group_means(&d.predictions);
                between_r.extend(pearson(&y_means, &p_means).ok());
                within_r.extend(pearson(&y_dev, &deviations(&d.predictions, &p_means)).ok());
            }
            let summary = |r: &[f64]| {
                (!r.is_empty()).then(|| {
                    let (mean, sd) = mean_sd(r);
                    DrawMean {
                        mean,
                        sd,
                        draws: r.len(),
                    }
                })
            };
            skills.push(GroupSkill {
                method: *method,
                size: s.size.into(),
                between: summary(&between_r),
                within: summary(&within_r),
            });
        }
    }
    Ok(Some(GroupDecomposition {
        groups: n_groups,
        within_rows: within_rows.len(),
        within_variance_share: if total > 0.0 { within / total } else { 0.0 },
        skills,
    }))
}

fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(preds: Vec<Vec<f64>>) -> Vec<DrawPredictions> {
        preds
            .into_iter()
            .enumerate()
            .map(|(draw, predictions)| DrawPredictions {
                draw,
                train_rows: 10,
                penalty: Some(1.0),
                epochs: None,
                seed: None,
                predictions,
            })
            .collect()
    }

    /// Deterministic pseudo-noise in [-0.5, 0.5).
    fn noise(i: usize, salt: usize) -> f64 {
        let x = ((i * 2_654_435_761 + salt * 40_503) % 1000) as f64;
        x / 1000.0 - 0.5
    }

    #[test]
    fn a_better_predictor_wins_the_paired_comparison() {
        let n = 200;
        let y: Vec<f64> = (0..n).map(|i| (i as f64 / 20.0).sin() + noise(i, 1)).collect();
        let good = |salt| (0..n).map(|i| y[i] + 0.3 * noise(i, salt)).collect::<Vec<f64>>();
        let bad = |salt| (0..n).map(|i| y[i] + 3.0 * noise(i, salt)).collect::<Vec<f64>>();
        let size = SubsetSize::Fraction(0.1);
        let preds = vec![
            (
                Method::Pretrained,
                vec![SizePredictions {
                    size,
                    draws: draws(vec![good(2), good(3)]),
                }],
            ),
            (
                Method::Kmer,
                vec![SizePredictions {
                    size,
                    draws: draws(vec![bad(4), bad(5)]),
                }],
            ),
        ];
        let r = score(Truth::Regression(&y), &preds, &BootstrapOptions::default()).unwrap();
        assert_eq!(r.primary_metric, "pearson");
        let ours = r.method(Method::Pretrained).unwrap().sizes[0]
            .primary()
            .unwrap()
            .clone();
        let theirs = r.method(Method::Kmer).unwrap().sizes[0].primary().unwrap().clone();
        // Independent check of the point estimate: the mean of the two draws' Pearson r.
        let direct = (pearson(&y, &good(2)).unwrap() + pearson(&y, &good(3)).unwrap()) / 2.0;
        assert!((ours.mean - direct).abs() < 1e-12);
        assert!((ours.interval.estimate - direct).abs() < 1e-12);
        assert!(ours.mean > theirs.mean);
        assert_eq!(r.comparisons.len(), 1);
        let c = &r.comparisons[0];
        assert!(c.pretrained_better && c.intervals_disjoint, "{c:?}");
        assert!((c.difference.estimate - (ours.mean - theirs.mean)).abs() < 1e-12);
        // Swapping the roles flips the verdict.
        let swapped = vec![
            (Method::Pretrained, preds[1].1.clone()),
            (Method::Kmer, preds[0].1.clone()),
        ];
        let r = score(Truth::Regression(&y), &swapped, &BootstrapOptions::default()).unwrap();
        assert!(!r.comparisons[0].pretrained_better);
    }

    /// A baseline at two seeds: one curve pooling both seeds' draws, each seed's mean beside it, and two
    /// comparisons, with the pooled draws and with the better seed's alone.
    #[test]
    fn a_baseline_at_several_seeds_is_pooled_and_compared_with_its_best_seed() {
        let n = 200;
        let y: Vec<f64> = (0..n).map(|i| (i as f64 / 15.0).cos() + noise(i, 11)).collect();
        let noisy = |amp: f64, salt| (0..n).map(|i| y[i] + amp * noise(i, salt)).collect::<Vec<f64>>();
        let size = SubsetSize::Count(30);
        let seeded = |seed, preds: Vec<Vec<f64>>| {
            let mut d = draws(preds);
            d.iter_mut().for_each(|d| d.seed = Some(seed));
            d
        };
        // Seed 8 is much the better random draw.
        let mut random = seeded(7, vec![noisy(4.0, 1), noisy(4.0, 2)]);
        random.extend(seeded(8, vec![noisy(1.0, 3), noisy(1.0, 4)]));
        let preds = vec![
            (
                Method::Pretrained,
                vec![SizePredictions {
                    size,
                    draws: draws(vec![noisy(2.0, 5), noisy(2.0, 6)]),
                }],
            ),
            (Method::Random, vec![SizePredictions { size, draws: random }]),
        ];
        let r = score(Truth::Regression(&y), &preds, &BootstrapOptions::default()).unwrap();
        let s = &r.method(Method::Random).unwrap().sizes[0];
        let r_of = |amp, salt| pearson(&y, &noisy(amp, salt)).unwrap();
        let (seed7, seed8) = ((r_of(4.0, 1) + r_of(4.0, 2)) / 2.0, (r_of(1.0, 3) + r_of(1.0, 4)) / 2.0);
        assert_eq!(s.draws.len(), 4);
        assert!((s.primary().unwrap().mean - (seed7 + seed8) / 2.0).abs() < 1e-12);
        assert_eq!(s.seeds.iter().map(|m| m.seed).collect::<Vec<_>>(), [7, 8]);
        assert!((s.seeds[0].mean - seed7).abs() < 1e-12 && (s.seeds[1].mean - seed8).abs() < 1e-12);
        assert_eq!(s.best_seed().map(|b| b.seed), Some(8));
        let ours = (r_of(2.0, 5) + r_of(2.0, 6)) / 2.0;
        let pooled = r.comparisons.iter().find(|c| c.best_seed.is_none()).unwrap();
        let best = r.comparisons.iter().find(|c| c.best_seed == Some(8)).unwrap();
        assert_eq!(r.comparisons.len(), 2);
        assert!((pooled.difference.estimate - (ours - (seed7 + seed8) / 2.0)).abs() < 1e-12);
        assert!((best.difference.estimate - (ours - seed8)).abs() < 1e-12);
        // Against the pooled draws the pre-trained predictor is ahead; against the best seed it is behind.
        assert!(
            pooled.difference.estimate > 0.0 && best.difference.estimate < 0.0,
            "{pooled:?} {best:?}"
        );
        assert!(!best.intervals_disjoint);
    }

    #[test]
    fn equal_predictors_are_not_called_different() {
        let n = 150;
        let y: Vec<f64> = (0..n).map(|i| noise(i, 7)).collect();
        let p: Vec<f64> = (0..n).map(|i| y[i] + noise(i, 8)).collect();
        let size = SubsetSize::Count(30);
        let same = SizePredictions {
            size,
            draws: draws(vec![p.clone()]),
        };
        let preds = vec![(Method::Pretrained, vec![same.clone()]), (Method::Random, vec![same])];
        let r = score(Truth::Regression(&y), &preds, &BootstrapOptions::default()).unwrap();
        let c = &r.comparisons[0];
        assert_eq!(c.difference.estimate, 0.0);
        assert!(!c.pretrained_better && !c.intervals_disjoint);
        assert_eq!(r.methods[0].sizes[0].metrics[0].sd, 0.0);
    }

    #[test]
    fn classification_uses_auroc_first() {
        let y: Vec<bool> = (0..100).map(|i| i % 3 == 0).collect();
        let scores: Vec<f64> = (0..100)
            .map(|i| if i % 3 == 0 { 1.0 } else { 0.0 } + noise(i, 2))
            .collect();
        let preds = vec![(
            Method::Pretrained,
            vec![SizePredictions {
                size: SubsetSize::Fraction(1.0),
                draws: draws(vec![scores.clone()]),
            }],
        )];
        let r = score(Truth::Binary(&y), &preds, &BootstrapOptions::default()).unwrap();
        let names: Vec<&str> = r.methods[0].sizes[0]
            .metrics
            .iter()
            .map(|m| m.metric.as_str())
            .collect();
        assert_eq!(names, ["auroc", "auprc"]);
        assert!((r.methods[0].sizes[0].metrics[0].mean - auroc(&y, &scores).unwrap()).abs() < 1e-12);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let y = vec![1.0, 2.0, 3.0];
        let preds = vec![(
            Method::Pretrained,
            vec![SizePredictions {
                size: SubsetSize::Count(2),
                draws: draws(vec![vec![1.0, 2.0]]),
            }],
        )];
        assert!(matches!(
            score(Truth::Regression(&y), &preds, &BootstrapOptions::default()),
            Err(ProbeError::LengthMismatch { .. })
        ));
    }

    #[test]
    fn group_decomposition_separates_gene_and_isoform_skill() {
        // Three groups of two rows; by hand: group means 2, 3.5 and 12, within-group sum of squares 14.5 of
        // a total 130.8333.
        let y = [1.0, 3.0, 5.0, 10.0, 14.0, 2.0];
        let groups = [7, 7, 8, 9, 9, 8];
        let size = |preds: Vec<f64>| SizePredictions {
            size: SubsetSize::Count(30),
            draws: draws(vec![preds]),
        };
        let predictions = vec![
            (Method::Pretrained, vec![size(y.to_vec())]),
            // Only the group means: perfect between groups, nothing to say within them.
            (Method::Random, vec![size(vec![2.0, 2.0, 3.5, 12.0, 12.0, 3.5])]),
            // Only deviations: r = 10 / √(10 · 14.5) within, no between-group signal.
            (Method::Kmer, vec![size(vec![-1.0, 1.0, 0.0, -2.0, 2.0, 0.0])]),
        ];
        let d = decompose_by_group(&y, &groups, &predictions).unwrap().unwrap();
        assert_eq!((d.groups, d.within_rows), (3, 6));
        assert!((d.within_variance_share - 14.5 / 130.833_333_333_333_33).abs() < 1e-12);
        let r = |k: usize| (d.skills[k].between.map(|m| m.mean), d.skills[k].within.map(|m| m.mean));
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
        assert!(close(r(0).0, 1.0) && close(r(0).1, 1.0), "{:?}", r(0));
        assert!(close(r(1).0, 1.0) && r(1).1.is_none(), "{:?}", r(1));
        assert!(
            r(2).0.is_none() && close(r(2).1, 10.0 / (10.0f64 * 14.5).sqrt()),
            "{:?}",
            r(2)
        );
        // No group with two rows: nothing to decompose.
        assert!(decompose_by_group(&y[..3], &[1, 2, 3], &[]).unwrap().is_none());
        assert!(decompose_by_group(&y, &groups[..5], &[]).is_err());
    }
}
