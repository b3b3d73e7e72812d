//! The probe runner: for each task, load its rows, embed them with the trained encoder (and the random-weight
//! baseline), compute k-mer features, fit linear probes on low-data subsets of the training split, train the
//! from-scratch baseline where asked, score everything on the test split and write the report.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;

use super::embed::{EmbedError, Encoder};
use super::evaluate::{DrawPredictions, Method, SizeName, SizePredictions, Truth, decompose_by_group, score};
use super::report::{Report, ReportError, SplitSummary, StageTime, TargetReport, TaskReport};
use super::split::{SplitError, Subset, low_data_subsets, split_by_group};
use super::supervised::{SupervisedError, SupervisedOptions, Targets, fit_supervised};
use super::task::{ProbeTask, TaskError, TaskInput, TaskKind};
use super::{BootstrapOptions, CvOptions, LogisticOptions, LogisticProbe, ProbeError, RidgeProbe, kmer, published};
use crate::config::Pooling;
use crate::data::table::{TableError, TranscriptTable};
use crate::data::{DataError, Dataset, Transcript};

/// Errors of a probe run; each names the task (and target, method and size where it applies).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// A task file is wrong.
    #[error(transparent)]
    Task(#[from] TaskError),
    /// An input table is wrong.
    #[error("task {task}: {source}")]
    Table {
        /// The task.
        task: String,
        /// The cause.
        #[source]
        source: TableError,
    },
    /// A dataset could not be read or made.
    #[error("task {task}: {source}")]
    Data {
        /// The task.
        task: String,
        /// The cause.
        #[source]
        source: DataError,
    },
    /// The input cannot serve this task (no rows, a bad target value, synthetic labels of a real dataset).
    #[error("task {task}: {why}")]
    Input {
        /// The task.
        task: String,
        /// What is wrong.
        why: String,
    },
    /// The rows could not be split.
    #[error("task {task}, target {target}: {source}")]
    Split {
        /// The task.
        task: String,
        /// The target.
        target: String,
        /// The cause.
        #[source]
        source: SplitError,
    },
    /// A probe fit or a metric failed.
    #[error("task {task}, target {target}, {method}: {source}")]
    Probe {
        /// The task.
        task: String,
        /// The target.
        target: String,
        /// The method and size.
        method: String,
        /// The cause.
        #[source]
        source: ProbeError,
    },
    /// Embedding failed.
    #[error("task {task}: {source}")]
    Embed {
        /// The task.
        task: String,
        /// The cause.
        #[source]
        source: EmbedError,
    },
    /// The supervised baseline failed.
    #[error("task {task}, target {target}, supervised baseline: {source}")]
    Supervised {
        /// The task.
        task: String,
        /// The target.
        target: String,
        /// The cause.
        #[source]
        source: SupervisedError,
    },
    /// Writing the report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// The stop flag was raised (SIGTERM or SIGUSR2 after training): no report is written.
    #[error("the probes were interrupted by a stop signal; no report was written")]
    Interrupted,
}

/// Settings of a probe run that are not part of a task.
#[derive(Debug, Clone)]
pub struct RunnerOptions {
    /// Where the encoders and the supervised baseline run.
    pub device: Device,
    /// Positions per encoder pass when embedding.
    pub positions_per_pass: usize,
    /// Bootstrap settings of every interval.
    pub bootstrap: BootstrapOptions,
    /// Where the synthetic default is found or made (a run directory holds it under `data/`).
    pub data_dir: PathBuf,
    /// The first seed of the random-weight baselines (`baselines.random_seeds` from here on).
    pub random_seed: u64,
    /// Show progress bars (off in tests and non-interactive logs).
    pub progress: bool,
    /// Checked before every fit: once a suspension is requested, the run ends with
    /// [`RunnerError::Interrupted`]. A training job passes its process's requests, so its stop signals still
    /// end it while it probes.
    pub stop: Option<crate::shutdown::Shutdown>,
}

impl RunnerOptions {
    fn check_stop(&self) -> Result<(), RunnerError> {
        match &self.stop {
            Some(shutdown) if shutdown.suspend_requested() => Err(RunnerError::Interrupted),
            _ => Ok(()),
        }
    }
}

/// Runs `tasks` with `encoder` and writes `report.json`, `report.md` and one PNG per task and target into
/// `out`. Returns the report.
pub fn run_probes(
    encoder: &Encoder,
    tasks: &[ProbeTask],
    out: &Path,
    options: &RunnerOptions,
) -> Result<Report, RunnerError> {
    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    for task in tasks {
        options.check_stop()?;
        tracing::info!(task = %task.name, "probe task");
        reports.push(run_task(encoder, task, options)?);
    }
    let report = Report {
        checkpoint: encoder.source.clone(),
        isoclr_version: env!("CARGO_PKG_VERSION").to_owned(),
        bootstrap_resamples: options.bootstrap.resamples,
        bootstrap_seed: options.bootstrap.seed,
        random_seed: options.random_seed,
        elapsed_s: started.elapsed().as_secs_f64(),
        tasks: reports,
    };
    report.write(out)?;
    Ok(report)
}

/// The rows of one task, read from its input.
fn load_input(encoder: &Encoder, task: &ProbeTask, options: &RunnerOptions) -> Result<TranscriptTable, RunnerError> {
    let table_err = |source| RunnerError::Table {
        task: task.name.clone(),
        source,
    };
    let data_err = |source| RunnerError::Data {
        task: task.name.clone(),
        source,
    };
    let training_dataset = || crate::data::resolve_dataset(&encoder.config.data, &options.data_dir).map_err(data_err);
    match &task.input {
        TaskInput::Table { path, targets } => {
            let names: Vec<&str> = targets.iter().map(String::as_str).collect();
            TranscriptTable::read(path, &names).map_err(table_err)
        }
        TaskInput::Labels { path, layout, dataset } => {
            let dataset = match dataset {
                Some(dir) => Dataset::open(dir).map_err(data_err)?,
                None => training_dataset()?,
            };
            published::join_labels(&dataset, path, &layout.layout()).map_err(table_err)
        }
        TaskInput::Synthetic(labels) => {
            if let Some(path) = &encoder.config.data.path {
                return Err(RunnerError::Input {
                    task: task.name.clone(),
                    why: format!(
                        "synthetic labels need an encoder trained on the synthetic default, this one was trained on {}",
                        path.display()
                    ),
                });
            }
            let dataset = training_dataset()?;
            let (synthetic, _) = crate::run_dir::RunDir::new(&options.data_dir).synthetic_data();
            let path = synthetic.join("labels").join(labels.file_name());
            published::join_labels(&dataset, &path, &labels.layout()).map_err(table_err)
        }
    }
}

/// A feature matrix over the task's rows (row-major, table order).
struct Features {
    method: Method,
    /// The seed of random weights (the random-weight baselines).
    seed: Option<u64>,
    values: Vec<f64>,
    dim: usize,
}

impl Features {
    fn rows(&self, idx: &[usize]) -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| self.values[i * self.dim..(i + 1) * self.dim].iter().copied())
            .collect()
    }
}

fn progress_bar(options: &RunnerOptions, len: usize, what: &str) -> Option<ProgressBar> {
    options.progress.then(|| {
        let bar = ProgressBar::new(len as u64).with_message(what.to_owned());
        if let Ok(style) = ProgressStyle::with_template("{msg:>28} [{bar:30}] {pos}/{len} {elapsed}") {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    })
}

fn embed_rows(
    encoder: &Encoder,
    transcripts: &[&Transcript],
    pooling: Pooling,
    options: &RunnerOptions,
    what: &str,
) -> Result<Vec<f64>, EmbedError> {
    let bar = progress_bar(options, transcripts.len(), what);
    let values = encoder.embed(transcripts, options.positions_per_pass, pooling, bar.as_ref())?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(values.into_iter().map(f64::from).collect())
}

fn run_task(encoder: &Encoder, task: &ProbeTask, options: &RunnerOptions) -> Result<TaskReport, RunnerError> {
    let table = load_input(encoder, task, options)?;
    if table.rows.is_empty() {
        return Err(RunnerError::Input {
            task: task.name.clone(),
            why: format!("{} has no rows", table.source),
        });
    }
    let transcripts: Vec<&Transcript> = table.rows.iter().map(|r| &r.transcript).collect();
    let embed_err = |source| RunnerError::Embed {
        task: task.name.clone(),
        source,
    };
    let pooling = task.pooling;
    let mut timings = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut lap = |stage: &str, rows: usize, timings: &mut Vec<StageTime>| {
        timings.push(StageTime {
            stage: stage.to_owned(),
            seconds: clock.elapsed().as_secs_f64(),
            rows,
        });
        clock = std::time::Instant::now();
    };
    let rows = transcripts.len();
    // One embedding method's features over every row.
    let embedded = |model: &Encoder, method: Method, seed: Option<u64>, what: &str| -> Result<Features, RunnerError> {
        Ok(Features {
            method,
            seed,
            values: embed_rows(model, &transcripts, pooling, options, what).map_err(embed_err)?,
            dim: model.dim(pooling),
        })
    };
    let mut features = vec![embedded(encoder, Method::Pretrained, None, "embedding (pre-trained)")?];
    lap("embedding (pre-trained)", rows, &mut timings);
    let calibrate = task.baselines.random_calibrated && encoder.config.model.norm == crate::config::Norm::Batch;
    for seed in random_seeds(task, options) {
        if task.baselines.random {
            let what = format!("embedding (random weights, seed {seed})");
            features.push(embedded(&encoder.random_like(seed), Method::Random, Some(seed), &what)?);
            lap(&what, rows, &mut timings);
        }
        if calibrate {
            let random = (encoder.random_like(seed))
                .calibrated(&transcripts, options.positions_per_pass, seed)
                .map_err(embed_err)?;
            let calibrated_rows = rows.min(super::embed::CALIBRATION_ROWS);
            lap(
                &format!("batch-norm calibration, seed {seed}"),
                calibrated_rows,
                &mut timings,
            );
            let what = format!("embedding (random, calibrated, seed {seed})");
            features.push(embedded(&random, Method::RandomCalibrated, Some(seed), &what)?);
            lap(&what, rows, &mut timings);
        }
    }
    if task.baselines.kmer {
        features.push(Features {
            method: Method::Kmer,
            seed: None,
            values: kmer::kmer_features(&transcripts).into_iter().map(f64::from).collect(),
            dim: kmer::KMER_FEATURES,
        });
        lap("k-mer features", rows, &mut timings);
    }
    let mut targets = Vec::new();
    for t in 0..table.targets.len() {
        targets.push(run_target(encoder, task, &table, t, &features, options, &mut timings)?);
    }
    // One rank per method: the mean over its seeds.
    let mut effective_rank: Vec<(Method, f64, usize)> = Vec::new();
    for f in features.iter().filter(|f| f.method != Method::Kmer) {
        let rank = super::rank::effective_rank(&f.values, f.dim);
        let seeds = features.iter().filter(|g| g.method == f.method).count() as f64;
        match effective_rank.iter_mut().find(|(m, _, _)| *m == f.method) {
            Some((_, sum, _)) => *sum += rank / seeds,
            None => effective_rank.push((f.method, rank / seeds, f.dim)),
        }
    }
    Ok(TaskReport {
        task: task.clone(),
        source: table.source.clone(),
        rows: table.rows.len(),
        notes: table.notes.clone(),
        effective_rank,
        timings,
        targets,
    })
}

fn run_target(
    encoder: &Encoder,
    task: &ProbeTask,
    table: &TranscriptTable,
    t: usize,
    features: &[Features],
    options: &RunnerOptions,
    timings: &mut Vec<StageTime>,
) -> Result<TargetReport, RunnerError> {
    let target = table.targets[t].clone();
    let input_err = |why: String| RunnerError::Input {
        task: task.name.clone(),
        why,
    };
    let observed = table.observed(t);
    if observed.len() < 3 {
        return Err(input_err(format!(
            "target {target} has {} rows with a value",
            observed.len()
        )));
    }
    let groups: Vec<u32> = observed.iter().map(|&i| table.rows[i].transcript.group).collect();
    let split = split_by_group(&groups, task.split, task.split_seed).map_err(|source| RunnerError::Split {
        task: task.name.clone(),
        target: target.clone(),
        source,
    })?;
    // Split indices point into `observed`; these are table rows.
    let to_rows = |idx: &[usize]| idx.iter().map(|&k| observed[k]).collect::<Vec<usize>>();
    let (train, validation, test) = (to_rows(&split.train), to_rows(&split.validation), to_rows(&split.test));
    let subsets = low_data_subsets(
        &train,
        &task.low_data.fractions,
        &task.low_data.counts,
        task.low_data.draws,
        task.low_data.seed,
    );
    let labels = Labels::read(table, task, t, &observed).map_err(input_err)?;
    if let Some(why) = labels.constant(&observed) {
        return Err(input_err(format!("target {target}: {why}: nothing to predict")));
    }
    let mut notes = Vec::new();
    let mut predictions: Vec<(Method, Vec<SizePredictions>)> = Vec::new();
    for f in features {
        let started = std::time::Instant::now();
        let mut fitted_rows = 0;
        let seed = f.seed.map_or_else(String::new, |s| format!(" (seed {s})"));
        let bar = progress_bar(options, subsets.len(), &format!("{target}: {}", f.method.label()));
        let mut by_size: Vec<SizePredictions> = Vec::new();
        let mut capped = 0;
        for subset in &subsets {
            options.check_stop()?;
            if f.method == Method::Kmer && subset.rows.len() > task.baselines.kmer_max_rows {
                capped += 1;
                continue;
            }
            let fitted =
                fit_linear(f, &labels, subset, &|i| table.rows[i].transcript.group, &test).map_err(|source| {
                    RunnerError::Probe {
                        task: task.name.clone(),
                        target: target.clone(),
                        method: format!(
                            "{}{seed} at {} draw {}",
                            f.method.label(),
                            SizeName::from(subset.size),
                            subset.draw
                        ),
                        source,
                    }
                })?;
            fitted_rows += subset.rows.len();
            match fitted {
                Some(draw) => push_draw(&mut by_size, subset, draw),
                None => notes.push(format!(
                    "{}{seed}: {} draw {} skipped: its training rows hold one class",
                    f.method.label(),
                    SizeName::from(subset.size),
                    subset.draw
                )),
            }
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if capped > 0 {
            notes.push(format!(
                "{}: {capped} subsets above baselines.kmer_max_rows = {} training rows not fitted",
                f.method.label(),
                task.baselines.kmer_max_rows
            ));
        }
        match predictions.iter_mut().find(|(m, _)| *m == f.method) {
            // Another seed of the same baseline: its draws join the same sizes.
            Some((_, sizes)) => {
                for size in by_size {
                    match sizes.iter_mut().find(|s| s.size == size.size) {
                        Some(s) => s.draws.extend(size.draws),
                        None => sizes.push(size),
                    }
                }
            }
            None => predictions.push((f.method, by_size)),
        }
        let seed = f.seed.map_or_else(String::new, |s| format!(", seed {s}"));
        timings.push(StageTime {
            stage: format!("{target}: linear probes (CV), {}{seed}", f.method.label()),
            seconds: started.elapsed().as_secs_f64(),
            rows: fitted_rows,
        });
    }
    if task.baselines.supervised {
        let started = std::time::Instant::now();
        let mut trained_rows = 0;
        let chosen: Vec<&Subset> = subsets
            .iter()
            .filter(|s| s.rows.len() <= task.supervised.max_rows && s.draw < task.supervised.draws)
            .collect();
        let bar = progress_bar(options, chosen.len(), &format!("{target}: supervised"));
        let mut by_size: Vec<SizePredictions> = Vec::new();
        for subset in chosen {
            options.check_stop()?;
            trained_rows += subset.rows.len();
            match fit_supervised_draw(encoder, task, table, &labels, subset, &validation, &test, options) {
                Ok(draw) => push_draw(&mut by_size, subset, draw),
                // Tiny subsets can hold one class or one value: nothing to learn, as for the linear probes.
                Err(e @ (SupervisedError::SingleClass { .. } | SupervisedError::ConstantTarget { .. })) => notes.push(
                    format!("supervised: {:?} draw {} skipped: {e}", subset.size, subset.draw),
                ),
                Err(source) => {
                    return Err(RunnerError::Supervised {
                        task: task.name.clone(),
                        target: target.clone(),
                        source,
                    });
                }
            }
            if let Some(bar) = &bar {
                bar.inc(1);
            }
        }
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        predictions.push((Method::Supervised, by_size));
        timings.push(StageTime {
            stage: format!("{target}: supervised from scratch"),
            seconds: started.elapsed().as_secs_f64(),
            rows: trained_rows,
        });
    }
    let started = std::time::Instant::now();
    let truth = labels.pick(&test);
    let scoring_err = |source| RunnerError::Probe {
        task: task.name.clone(),
        target: target.clone(),
        method: "scoring".into(),
        source,
    };
    let results = score(truth.as_truth(), &predictions, &options.bootstrap).map_err(scoring_err)?;
    timings.push(StageTime {
        stage: format!("{target}: scoring and bootstrap"),
        seconds: started.elapsed().as_secs_f64(),
        rows: test.len(),
    });
    let by_group = match &truth {
        Labels::Regression(y) => {
            let test_groups: Vec<u32> = test.iter().map(|&i| table.rows[i].transcript.group).collect();
            decompose_by_group(y, &test_groups, &predictions).map_err(scoring_err)?
        }
        Labels::Binary(_) => None,
    };
    Ok(TargetReport {
        target,
        split: SplitSummary {
            seed: split.seed,
            train_rows: train.len(),
            validation_rows: validation.len(),
            test_rows: test.len(),
            groups: {
                let mut g = groups.clone();
                g.sort_unstable();
                g.dedup();
                g.len()
            },
        },
        notes,
        results,
        by_group,
    })
}

/// A target's values by table row (rows without a value hold a placeholder and are never picked).
#[derive(Debug, Clone)]
enum Labels {
    Regression(Vec<f64>),
    Binary(Vec<bool>),
}

impl Labels {
    /// Why the target is the same on every row of `rows`, if it is.
    fn constant(&self, rows: &[usize]) -> Option<String> {
        match self {
            Self::Regression(y) => {
                let first = y[*rows.first()?];
                rows.iter()
                    .all(|&i| y[i] == first)
                    .then(|| format!("all {} rows have the value {first}", rows.len()))
            }
            Self::Binary(y) => {
                let first = y[*rows.first()?];
                rows.iter()
                    .all(|&i| y[i] == first)
                    .then(|| format!("all {} rows are of class {}", rows.len(), u8::from(first)))
            }
        }
    }

    /// Reads target `t` on the `observed` rows, transformed (regression) or checked to be 0/1
    /// (classification); the error names the row and column.
    fn read(table: &TranscriptTable, task: &ProbeTask, t: usize, observed: &[usize]) -> Result<Self, String> {
        let n = table.rows.len();
        let name = &table.targets[t];
        match task.kind {
            TaskKind::Regression => {
                let mut values = vec![0.0; n];
                for &i in observed {
                    let row = &table.rows[i];
                    let v = row.targets[t];
                    values[i] = task.transform.apply(v).ok_or_else(|| {
                        format!(
                            "{} {}: column `{name}`: {v} is outside the domain of the {:?} transform",
                            table.source,
                            row.place.described(),
                            task.transform
                        )
                    })?;
                }
                Ok(Self::Regression(values))
            }
            TaskKind::Classification => {
                let mut values = vec![false; n];
                for &i in observed {
                    let row = &table.rows[i];
                    values[i] = match row.targets[t] {
                        0.0 => false,
                        1.0 => true,
                        v => {
                            return Err(format!(
                                "{} {}: column `{name}`: {v} is not 0 or 1 (a classification target)",
                                table.source,
                                row.place.described()
                            ));
                        }
                    };
                }
                Ok(Self::Binary(values))
            }
        }
    }

    /// The values of `rows`, in that order.
    fn pick(&self, rows: &[usize]) -> Self {
        match self {
            Self::Regression(v) => Self::Regression(rows.iter().map(|&i| v[i]).collect()),
            Self::Binary(v) => Self::Binary(rows.iter().map(|&i| v[i]).collect()),
        }
    }

    fn as_truth(&self) -> Truth<'_> {
        match self {
            Self::Regression(v) => Truth::Regression(v),
            Self::Binary(v) => Truth::Binary(v),
        }
    }
}

/// Adds a fitted draw under its size (sizes in first-seen order).
/// The seeds of the random-weight baselines: `baselines.random_seeds` of them from the runner's seed on.
fn random_seeds(task: &ProbeTask, options: &RunnerOptions) -> impl Iterator<Item = u64> {
    (0..task.baselines.random_seeds as u64).map(move |k| options.random_seed.wrapping_add(k))
}

fn push_draw(by_size: &mut Vec<SizePredictions>, subset: &Subset, draw: DrawPredictions) {
    match by_size.iter_mut().find(|s| s.size == subset.size) {
        Some(s) => s.draws.push(draw),
        None => by_size.push(SizePredictions {
            size: subset.size,
            draws: vec![draw],
        }),
    }
}

/// Cross-validation folds for a subset: 5, or fewer when the subset has fewer groups; `None` when it has one
/// group (no held-out fold possible), and the fit then takes the middle of the penalty grid.
fn cv_options(groups: &[u32]) -> Option<CvOptions> {
    let mut distinct = groups.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let folds = distinct.len().min(CvOptions::default().folds);
    (folds >= 2).then(|| CvOptions {
        folds,
        ..CvOptions::default()
    })
}

/// The penalty used when cross-validation is impossible (one group): the grid's geometric middle.
const FALLBACK_PENALTY: f64 = 1.0;

/// Fits a linear probe on the subset's rows of `features` and predicts the test rows; `None` when a binary
/// target has one class in the subset.
fn fit_linear(
    features: &Features,
    labels: &Labels,
    subset: &Subset,
    groups_of: &dyn Fn(usize) -> u32,
    test: &[usize],
) -> Result<Option<DrawPredictions>, ProbeError> {
    let x = features.rows(&subset.rows);
    let groups: Vec<u32> = subset.rows.iter().map(|&i| groups_of(i)).collect();
    let x_test = features.rows(test);
    let cv = cv_options(&groups);
    let (penalty, predictions) = match labels.pick(&subset.rows) {
        Labels::Regression(y) => {
            let probe = match &cv {
                Some(cv) => RidgeProbe::fit_cv(&x, features.dim, &y, &groups, cv)?,
                None => RidgeProbe::fit(&x, features.dim, &y, FALLBACK_PENALTY)?,
            };
            (probe.penalty(), probe.predict(&x_test)?)
        }
        Labels::Binary(y) => {
            if y.iter().all(|&v| v) || y.iter().all(|&v| !v) {
                return Ok(None);
            }
            let options = LogisticOptions::default();
            let probe = match &cv {
                Some(cv) => LogisticProbe::fit_cv(&x, features.dim, &y, &groups, cv, &options)?,
                None => LogisticProbe::fit(&x, features.dim, &y, FALLBACK_PENALTY, &options)?,
            };
            (probe.penalty(), probe.decision_function(&x_test)?)
        }
    };
    Ok(Some(DrawPredictions {
        draw: subset.draw,
        train_rows: subset.rows.len(),
        penalty: Some(penalty),
        epochs: None,
        seed: features.seed,
        predictions,
    }))
}

impl Labels {
    fn as_targets(&self) -> Targets<'_> {
        match self {
            Self::Regression(v) => Targets::Regression(v),
            Self::Binary(v) => Targets::Binary(v),
        }
    }
}

/// Trains the architecture from scratch on the subset's labels (early stopping on the validation split) and
/// predicts the test rows.
#[allow(clippy::too_many_arguments)]
fn fit_supervised_draw(
    encoder: &Encoder,
    task: &ProbeTask,
    table: &TranscriptTable,
    labels: &Labels,
    subset: &Subset,
    validation: &[usize],
    test: &[usize],
    options: &RunnerOptions,
) -> Result<DrawPredictions, SupervisedError> {
    let transcripts = |rows: &[usize]| rows.iter().map(|&i| &table.rows[i].transcript).collect::<Vec<_>>();
    let s = &task.supervised;
    let settings = SupervisedOptions {
        max_epochs: s.max_epochs,
        patience: s.patience,
        lr: s.lr,
        weight_decay: s.weight_decay,
        batch_size: s.batch_size,
        // One initialisation per draw, shared across sizes, like the nested subsets.
        seed: options.random_seed.wrapping_add(subset.draw as u64),
        positions_per_pass: options.positions_per_pass,
    };
    let (train_y, validation_y) = (labels.pick(&subset.rows), labels.pick(validation));
    let fit = fit_supervised(
        &encoder.config.model,
        options.device,
        &transcripts(&subset.rows),
        train_y.as_targets(),
        &transcripts(validation),
        validation_y.as_targets(),
        &transcripts(test),
        &settings,
    )?;
    Ok(DrawPredictions {
        draw: subset.draw,
        train_rows: subset.rows.len(),
        penalty: None,
        epochs: Some(fit.epochs_run),
        seed: None,
        predictions: fit.test_predictions,
    })
}
