//! The probe report: `report.json` (every number, with the checkpoint, the task definitions and the seeds),
//! `report.md` (tables a reader can scan) and one PNG of the low-data curves per task and target. Knows no
//! tensors.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::evaluate::{Comparison, DrawMean, GroupDecomposition, Method, SizeName, SizeResult, TargetResults};
use super::plot::{CurvePoint, CurveSeries, PlotError, plot_learning_curves};
use super::task::{ProbeTask, TaskKind, Transform};

/// Errors of writing a report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The report could not be serialised.
    #[error("report.json: {0}")]
    Json(#[from] serde_json::Error),
    /// A plot could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// How the rows of a target were split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitSummary {
    /// The split's seed.
    pub seed: u64,
    /// Training rows (the full training set of the curves).
    pub train_rows: usize,
    /// Validation rows (early stopping of the supervised baseline).
    pub validation_rows: usize,
    /// Test rows (every reported metric).
    pub test_rows: usize,
    /// Distinct groups over all three.
    pub groups: usize,
}

/// One target of a task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetReport {
    /// The target column.
    pub target: String,
    /// The split.
    pub split: SplitSummary,
    /// Caveats (skipped draws).
    pub notes: Vec<String>,
    /// Every metric of every method and size, and the comparisons.
    pub results: TargetResults,
    /// Regression targets: each method's skill between test groups and within them (`None` for
    /// classification, or when no test group has two rows).
    pub by_group: Option<GroupDecomposition>,
}

impl TargetReport {
    /// One line for a terminal: the primary metric of the pre-trained encoder, the stronger random baseline
    /// and the k-mer baseline on the largest training subset (the whole training split by default); the low-data end of
    /// the curves, where the methods differ most, is in the report with its intervals.
    pub fn summary_line(&self, task: &str) -> String {
        let r = &self.results;
        let at = |method| {
            r.method(method)
                .and_then(|c| c.sizes.iter().max_by(|a, b| a.train_rows.total_cmp(&b.train_rows)))
                .and_then(|s| s.primary().map(|p| format!("{:.3} at {}", p.mean, s.size)))
                .unwrap_or_else(|| "–".to_owned())
        };
        // The stronger random baseline: calibrated batch norm, where there is one, is the fair comparison.
        let random = [Method::Random, Method::RandomCalibrated]
            .into_iter()
            .filter_map(|m| {
                let c = r.method(m)?;
                let s = c.sizes.iter().max_by(|a, b| a.train_rows.total_cmp(&b.train_rows))?;
                Some((s.primary()?.mean, m))
            })
            .max_by(|a, b| a.0.total_cmp(&b.0))
            .map_or(Method::Random, |(_, m)| m);
        format!(
            "{task}/{}: {} pre-trained {}; {} {}; k-mer {}",
            self.target,
            r.primary_metric,
            at(Method::Pretrained),
            random.label(),
            at(random),
            at(Method::Kmer)
        )
    }
}

/// The wall time of one stage of a probe task and the rows it handled (embedded, fitted over all subsets,
/// trained on, or scored).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageTime {
    /// What ran.
    pub stage: String,
    /// Seconds it took.
    pub seconds: f64,
    /// Rows it handled.
    pub rows: usize,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskReport {
    /// The task as read (paths resolved).
    pub task: ProbeTask,
    /// Where the rows came from.
    pub source: String,
    /// Rows read.
    pub rows: usize,
    /// Caveats about the input (missing annotation tracks, unmatched labels).
    pub notes: Vec<String>,
    /// The effective rank (RankMe) of each embedding method's features over the task's rows, with their width.
    pub effective_rank: Vec<(Method, f64, usize)>,
    /// Wall time of each stage of the task (the probe runner's cost, docs/PERFORMANCE.md).
    pub timings: Vec<StageTime>,
    /// One entry per target.
    pub targets: Vec<TargetReport>,
}

/// A whole probe run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The encoder probed: a run directory, or a checkpoint URL and step.
    pub checkpoint: String,
    /// The isoclr version that made the report.
    pub isoclr_version: String,
    /// Bootstrap resamples of every interval.
    pub bootstrap_resamples: usize,
    /// Seed of the bootstrap.
    pub bootstrap_seed: u64,
    /// The first seed of the random-weight baselines (each task runs `baselines.random_seeds` from it).
    pub random_seed: u64,
    /// Wall time of the run.
    pub elapsed_s: f64,
    /// The tasks.
    pub tasks: Vec<TaskReport>,
}

/// File name of the learning-curve plot of one task and target.
pub fn plot_file_name(task: &str, target: &str) -> String {
    let clean: String = target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{task}.{clean}.png")
}

/// How a metric is named in prose.
fn metric_label(metric: &str) -> &str {
    match metric {
        "pearson" => "Pearson r",
        "spearman" => "Spearman ρ",
        "r2" => "R²",
        "auroc" => "AUROC",
        "auprc" => "AUPRC",
        other => other,
    }
}

impl Report {
    /// Writes `report.json`, `report.md` and the plots into `out` (created if missing). Each file is written
    /// to a temporary name and renamed, so a reader never sees half a report.
    pub fn write(&self, out: &Path) -> Result<(), ReportError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ReportError::Io { path, source }
        };
        std::fs::create_dir_all(out).map_err(io(out))?;
        for task in &self.tasks {
            for target in &task.targets {
                let series = curves(&target.results);
                if series.is_empty() {
                    continue; // every cell undefined: the report says why, there is nothing to draw
                }
                let path = out.join(plot_file_name(&task.task.name, &target.target));
                let title = format!("{}: {}", task.task.name, target.target);
                plot_learning_curves(&path, &title, metric_label(&target.results.primary_metric), &series)?;
            }
        }
        let json = serde_json::to_string_pretty(self)?;
        write_atomically(&out.join("report.json"), json.as_bytes()).map_err(io(&out.join("report.json")))?;
        write_atomically(&out.join("report.md"), self.markdown().as_bytes()).map_err(io(&out.join("report.md")))?;
        Ok(())
    }

    /// The Markdown report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Probe report\n");
        let _ = writeln!(md, "- Encoder: `{}`", self.checkpoint);
        let _ = writeln!(
            md,
            "- Intervals: 95 % percentile bootstrap over test rows ({} resamples, seed {}) of the metric \
             averaged over draws; ± is the standard deviation over draws.",
            self.bootstrap_resamples, self.bootstrap_seed
        );
        let _ = writeln!(
            md,
            "- Baselines: the same architecture with random weights, as initialised and with batch-norm statistics \
             calibrated on the task's sequences, each at the seeds from {} on (`baselines.random_seeds`: their \
             cells pool every seed's draws and add the range of the seeds' means; the pre-trained encoder is \
             compared with the pooled draws and with the best seed's alone), k-mer frequencies (k = 3-6), and \
             the same architecture trained from scratch on the labels (early stopping on the validation split), \
             each on the same splits and subsets.",
            self.random_seed
        );
        let _ = writeln!(md, "- isoclr {}; {:.0} s.\n", self.isoclr_version, self.elapsed_s);
        for task in &self.tasks {
            task.markdown(&mut md);
        }
        md
    }
}

impl TaskReport {
    fn markdown(&self, md: &mut String) {
        let t = &self.task;
        let _ = writeln!(md, "## Task `{}`\n", t.name);
        if !t.description.is_empty() {
            let _ = writeln!(md, "{}\n", t.description);
        }
        let kind = match t.kind {
            TaskKind::Regression => "regression (ridge)",
            TaskKind::Classification => "classification (logistic regression)",
        };
        let _ = writeln!(md, "- Input: {} ({} rows); {kind}", self.source, self.rows);
        if t.transform != Transform::None {
            let _ = writeln!(md, "- Targets {:?}-transformed before fitting", t.transform);
        }
        let _ = writeln!(
            md,
            "- Task file: `{}`; low-data draws: {} (seed {})",
            t.path.display(),
            t.low_data.draws,
            t.low_data.seed
        );
        for note in &self.notes {
            let _ = writeln!(md, "- Note: {note}");
        }
        if !self.effective_rank.is_empty() {
            let ranks: Vec<String> = (self.effective_rank.iter())
                .map(|(m, r, dim)| format!("{} {r:.1} of {dim}", m.label()))
                .collect();
            let _ = writeln!(md, "- Effective rank of the embeddings (RankMe): {}", ranks.join("; "));
        }
        if !self.timings.is_empty() {
            let stages: Vec<String> = (self.timings.iter())
                .map(|t| {
                    format!(
                        "{} {:.1} s ({:.0} rows/s)",
                        t.stage,
                        t.seconds,
                        t.rows as f64 / t.seconds.max(1e-9)
                    )
                })
                .collect();
            let _ = writeln!(md, "- Time: {}", stages.join("; "));
        }
        let _ = writeln!(md);
        for target in &self.targets {
            target.markdown(&t.name, md);
        }
    }
}

/// `mean ± sd [lower, upper]` of a method at a size, or a dash.
fn cell(results: &TargetResults, method: Method, size: &SizeName) -> String {
    results
        .method(method)
        .and_then(|m| m.sizes.iter().find(|s| &s.size == size))
        .and_then(|s| Some((s.primary()?, seed_range(s))))
        .map(|(m, seeds)| {
            let seeds = seeds.map_or_else(String::new, |(low, high, n)| format!("; {n} seeds {low:.3}–{high:.3}"));
            format!(
                "{:.3} ± {:.3} [{:.3}, {:.3}]{seeds}",
                m.mean, m.sd, m.interval.lower, m.interval.upper
            )
        })
        .unwrap_or_else(|| "–".into())
}

/// The lowest and highest seed mean and the number of seeds, for a method run at several seeds.
fn seed_range(size: &SizeResult) -> Option<(f64, f64, usize)> {
    let means = size.seeds.iter().map(|s| s.mean);
    let low = means.clone().min_by(f64::total_cmp)?;
    let high = means.max_by(f64::total_cmp)?;
    Some((low, high, size.seeds.len()))
}

fn comparison_cell(c: Option<&Comparison>) -> String {
    match c {
        Some(c) => format!(
            "{:+.3} [{:+.3}, {:+.3}]{}",
            c.difference.estimate,
            c.difference.lower,
            c.difference.upper,
            if c.pretrained_better { " ✓" } else { "" }
        ),
        None => "–".into(),
    }
}

impl TargetReport {
    fn markdown(&self, task: &str, md: &mut String) {
        let r = &self.results;
        let metric = metric_label(&r.primary_metric);
        let s = &self.split;
        let _ = writeln!(
            md,
            "### Target `{}`: {metric} on {} test rows\n",
            self.target, r.test_rows
        );
        let _ = writeln!(
            md,
            "Split seed {}: {} train / {} validation / {} test rows, {} groups (no group on two sides).\n",
            s.seed, s.train_rows, s.validation_rows, s.test_rows, s.groups
        );
        if curves(r).is_empty() {
            let _ = writeln!(md, "No curve to plot: every cell's {metric} is undefined (below).\n");
        } else {
            let _ = writeln!(md, "![low-data curves]({})\n", plot_file_name(task, &self.target));
        }
        let methods: Vec<Method> = r.methods.iter().map(|m| m.method).collect();
        // Sizes in the order of the pre-trained curve (it runs at every size).
        let sizes: Vec<(SizeName, f64)> = r
            .methods
            .first()
            .map(|m| m.sizes.iter().map(|s| (s.size.clone(), s.train_rows)).collect())
            .unwrap_or_default();
        let _ = write!(md, "| training set | rows |");
        for m in &methods {
            let _ = write!(md, " {} |", m.label());
        }
        let _ = writeln!(md, "\n|---|---:|{}", "---|".repeat(methods.len()));
        for (size, rows) in &sizes {
            let _ = write!(md, "| {size} | {rows:.0} |");
            for m in &methods {
                let _ = write!(md, " {} |", cell(r, *m, size));
            }
            let _ = writeln!(md);
        }
        let baselines: Vec<Method> = methods.iter().copied().filter(|m| *m != Method::Pretrained).collect();
        if !baselines.is_empty() && !r.comparisons.is_empty() {
            let _ = writeln!(
                md,
                "\nPre-trained minus baseline, {metric} (paired bootstrap; ✓ = interval above 0):\n"
            );
            // Each baseline, then (run at several seeds) its best seed alone.
            let mut columns: Vec<(Method, bool)> = Vec::new();
            for &b in &baselines {
                columns.push((b, false));
                if r.comparisons.iter().any(|c| c.baseline == b && c.best_seed.is_some()) {
                    columns.push((b, true));
                }
            }
            let _ = write!(md, "| training set |");
            for (b, best) in &columns {
                let _ = write!(md, " vs {}{} |", b.label(), if *best { ", best seed" } else { "" });
            }
            let _ = writeln!(md, "\n|---|{}", "---|".repeat(columns.len()));
            for (size, _) in &sizes {
                let _ = write!(md, "| {size} |");
                for (b, best) in &columns {
                    let c = (r.comparisons.iter())
                        .find(|c| c.baseline == *b && c.best_seed.is_some() == *best && &c.size == size);
                    let _ = match c.and_then(|c| c.best_seed) {
                        Some(seed) => write!(md, " {} (seed {seed}) |", comparison_cell(c)),
                        None => write!(md, " {} |", comparison_cell(c)),
                    };
                }
                let _ = writeln!(md);
            }
        }
        if let Some(d) = &self.by_group {
            let _ = writeln!(
                md,
                "\nBetween and within groups: {:.0} % of the test variance lies within groups ({} of {} test rows \
                 are in groups of two or more). Pearson r of group means / of deviations from the group mean \
                 (mean over draws):\n",
                100.0 * d.within_variance_share,
                d.within_rows,
                r.test_rows
            );
            let _ = write!(md, "| training set |");
            for m in &methods {
                let _ = write!(md, " {} |", m.label());
            }
            let _ = writeln!(md, "\n|---|{}", "---|".repeat(methods.len()));
            let r3 = |m: Option<DrawMean>| m.map_or_else(|| "–".to_owned(), |m| format!("{:.3}", m.mean));
            for (size, _) in &sizes {
                let _ = write!(md, "| {size} |");
                for m in &methods {
                    let skill = d.skills.iter().find(|s| s.method == *m && &s.size == size);
                    let _ = match skill {
                        Some(s) => write!(md, " {} / {} |", r3(s.between), r3(s.within)),
                        None => write!(md, " – |"),
                    };
                }
                let _ = writeln!(md);
            }
        }
        if let Some(full) = r.methods.first().and_then(|m| m.sizes.last()) {
            let _ = writeln!(md, "\nAll metrics at {} ({:.0} rows):\n", full.size, full.train_rows);
            let _ = write!(md, "| method |");
            for m in &full.metrics {
                let _ = write!(md, " {} |", metric_label(&m.metric));
            }
            let _ = writeln!(md, "\n|---|{}", "---|".repeat(full.metrics.len()));
            for m in &r.methods {
                if let Some(s) = m.sizes.iter().find(|s| s.size == full.size) {
                    let _ = write!(md, "| {} |", m.method.label());
                    for x in &s.metrics {
                        let _ = write!(
                            md,
                            " {:.3} [{:.3}, {:.3}] |",
                            x.mean, x.interval.lower, x.interval.upper
                        );
                    }
                    let _ = writeln!(md);
                }
            }
        }
        for note in &self.notes {
            let _ = writeln!(md, "\n- Note: {note}");
        }
        for why in &r.undefined {
            let _ = writeln!(md, "\n- Left out, undefined: {why}");
        }
        let _ = writeln!(md);
    }
}

/// The plotted curves: one per method, points sorted by training rows, bars at mean ± sd over draws, or for a
/// method run at several seeds from the lowest to the highest seed mean.
fn curves(results: &TargetResults) -> Vec<CurveSeries> {
    results
        .methods
        .iter()
        .filter_map(|m| {
            let mut points: Vec<CurvePoint> = m
                .sizes
                .iter()
                .filter_map(|s| {
                    let p = s.primary()?;
                    let (low, high, _) = seed_range(s).unwrap_or((p.mean - p.sd, p.mean + p.sd, 1));
                    Some(CurvePoint {
                        train_rows: s.train_rows.round().max(1.0) as usize,
                        mean: p.mean,
                        low,
                        high,
                    })
                })
                .collect();
            points.sort_by_key(|p| p.train_rows);
            (!points.is_empty()).then(|| CurveSeries {
                label: m.method.label().to_owned(),
                points,
            })
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::BootstrapOptions;
    use crate::probe::evaluate::{DrawPredictions, SizePredictions, Truth, decompose_by_group, score};
    use crate::probe::split::SubsetSize;

    fn report() -> Report {
        let y: Vec<f64> = (0..60).map(|i| (i as f64 * 0.37).sin()).collect();
        let noisy = |amp: f64, salt: usize| -> Vec<f64> {
            (0..60)
                .map(|i| y[i] + amp * (((i * 7919 + salt * 104_729) % 97) as f64 / 97.0 - 0.5))
                .collect()
        };
        let size = |size, preds: Vec<Vec<f64>>| SizePredictions {
            size,
            draws: preds
                .into_iter()
                .enumerate()
                .map(|(draw, predictions)| DrawPredictions {
                    draw,
                    train_rows: if size == SubsetSize::Count(30) { 30 } else { 7 },
                    penalty: Some(1.0),
                    epochs: None,
                    seed: None,
                    predictions,
                })
                .collect(),
        };
        let predictions = vec![
            (
                Method::Pretrained,
                vec![
                    size(SubsetSize::Fraction(0.1), vec![noisy(0.5, 1), noisy(0.5, 2)]),
                    size(SubsetSize::Count(30), vec![noisy(0.3, 3)]),
                ],
            ),
            (
                Method::Kmer,
                vec![size(SubsetSize::Fraction(0.1), vec![noisy(3.0, 4), noisy(3.0, 5)])],
            ),
        ];
        let results = score(Truth::Regression(&y), &predictions, &BootstrapOptions::default()).unwrap();
        let pairs: Vec<u32> = (0..60).map(|i| i / 2).collect();
        let by_group = decompose_by_group(&y, &pairs, &predictions).unwrap();
        let task = crate::probe::task::ProbeTask::from_toml_str(
            "name = \"hl\"\nkind = \"regression\"\n[input]\nsynthetic = \"half_life\"\n",
            Path::new("/tasks/hl.toml"),
        )
        .unwrap();
        Report {
            checkpoint: "runs/x".into(),
            isoclr_version: "0".into(),
            bootstrap_resamples: 1000,
            bootstrap_seed: 0,
            random_seed: 1,
            elapsed_s: 1.0,
            tasks: vec![TaskReport {
                task,
                source: "labels.tsv".into(),
                rows: 100,
                notes: vec!["3 label rows unmatched".into()],
                effective_rank: vec![(Method::Pretrained, 12.5, 64)],
                timings: Vec::new(),
                targets: vec![TargetReport {
                    target: "half life".into(),
                    split: SplitSummary {
                        seed: 0,
                        train_rows: 70,
                        validation_rows: 15,
                        test_rows: 60,
                        groups: 40,
                    },
                    notes: Vec::new(),
                    results,
                    by_group,
                }],
            }],
        }
    }

    #[test]
    fn the_summary_line_gives_the_largest_training_subset() {
        let r = report();
        let target = &r.tasks[0].targets[0];
        let largest = |method| {
            let sizes = &target.results.method(method).unwrap().sizes;
            let s = sizes.iter().find(|s| s.train_rows == 30.0).or(sizes.last()).unwrap();
            format!("{:.3} at {}", s.primary().unwrap().mean, s.size)
        };
        let line = target.summary_line("hl");
        assert_eq!(
            line,
            format!(
                "hl/half life: pearson pre-trained {}; random weights –; k-mer {}",
                largest(Method::Pretrained),
                largest(Method::Kmer)
            )
        );
        assert!(line.contains("at 30 rows"), "{line}");
    }

    #[test]
    fn writes_json_markdown_and_one_plot_per_target() {
        let dir = tempfile::tempdir().unwrap();
        let r = report();
        r.write(dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap()).unwrap();
        assert_eq!(json["tasks"][0]["targets"][0]["results"]["primary_metric"], "pearson");
        assert_eq!(json["tasks"][0]["task"]["name"], "hl");
        let plot = dir.path().join(plot_file_name("hl", "half life"));
        assert_eq!(plot.file_name().unwrap(), "hl.half_life.png");
        assert!(std::fs::metadata(&plot).unwrap().len() > 1000);
        let md = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
        for needle in [
            "## Task `hl`",
            "| 10% | 7 |",
            "| 30 rows | 30 |",
            "vs k-mer (k=3-6)",
            "Note: 3 label rows unmatched",
            "![low-data curves](hl.half_life.png)",
            "Between and within groups:",
        ] {
            assert!(md.contains(needle), "{needle:?} missing from\n{md}");
        }
        // The clearly better method is marked as such at the shared size, and the k-mer column has no
        // value at the size it did not run.
        let row = md
            .lines()
            .find(|l| l.starts_with("| 10% |") && l.contains('✓'))
            .unwrap();
        assert!(row.contains('+'), "{row}");
        let counts_row = md.lines().find(|l| l.starts_with("| 30 rows | 30 |")).unwrap();
        assert!(counts_row.ends_with("| – |"), "{counts_row}");
        // Group means and deviations: two numbers per method that ran, a dash where it did not.
        let group_rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 30 rows |")).collect();
        let split_row = group_rows.last().unwrap();
        assert!(split_row.contains(" / ") && split_row.ends_with("| – |"), "{split_row}");
        assert_eq!(json["tasks"][0]["targets"][0]["by_group"]["groups"], 30);
        assert!(!dir.path().join("report.partial").exists());
    }
}
