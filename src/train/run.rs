//! Training in one process: its set-up, its components of the training loop (the prefetching local
//! sampler, signals and the checkpoint cadence, the metrics file and progress bar) and its outputs in `--out`:
//! `metrics.jsonl`, `config.toml` (the resolved configuration) and `model.safetensors`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;
use tracing::info;

use super::checkpointing::{Checkpointer, Checkpointing};
use super::step::Trainer;
use super::training_loop::{self, Components, Controller, MetricsSink, StepSource};
use super::{Result, TrainError};
use crate::boundary::{Action, Boundary};
use crate::config::{Config, DeviceChoice};
use crate::data::batch::build_step;
use crate::data::{Augment, Dataset, PassLayout, Sampler, StepBatch};
use crate::dist::SingleProcess;
use crate::metrics::{MetricsFile, MetricsLine, StepMetrics};
use crate::run_dir::RunDir;
use crate::shutdown::Shutdown;

/// Batches prepared ahead of the step that uses them.
const PREFETCH: usize = 2;

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// Loss of the first step.
    pub first_loss: f64,
    /// Loss of the last step.
    pub last_loss: f64,
    /// Contrastive accuracy of the last step.
    pub last_accuracy: f64,
    /// Steps run.
    pub steps: u64,
    /// Sequences per second over the whole run after the first step.
    pub seq_per_s: f64,
    /// The trained weights.
    pub model_path: PathBuf,
    /// The metrics file.
    pub metrics_path: PathBuf,
    /// The dataset trained on.
    pub dataset_dir: PathBuf,
}

/// Picks the device the configuration asks for: the first GPU when it allows CUDA and there is one (as
/// for the worker of local rank 0).
pub fn select_device(choice: DeviceChoice) -> Result<Device> {
    super::collective::worker_device(choice, 0)
}

fn progress_bar(steps: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(steps);
    let style = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} steps {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// The batch the held-out groups are measured on: up to `train.batch_size` of those with two or more
/// transcripts (a single transcript's two views are identical without augmentation, a trivial match), the
/// first batch of a sampler over them alone, without augmentation, the same at every log line. `None` when
/// fewer than two such groups are held out.
fn held_out_batch(dataset: &Dataset, config: &Config) -> Result<Option<StepBatch>> {
    let groups: Vec<u32> = (dataset.held_out_groups().into_iter())
        .filter(|&g| dataset.groups[g as usize].transcripts.len() >= 2)
        .collect();
    if groups.len() < 2 {
        if dataset.holdout_fraction > 0.0 {
            tracing::warn!(
                held_out = groups.len(),
                "data.holdout_fraction holds out fewer than 2 groups with two or more transcripts: no held-out metrics"
            );
        }
        return Ok(None);
    }
    let t = &config.train;
    let sampler = Sampler::over(t.seed, t.batch_size.min(groups.len()), groups)?;
    Ok(Some(build_step(
        dataset,
        &sampler,
        &Augment::NONE,
        t.seed,
        0,
        PassLayout::of(config),
    )?))
}

/// Trains in this process on CPU or one GPU, writing outputs into `out`; a suspension requested of
/// `shutdown` ends the run at the next step boundary with a checkpoint ([`TrainError::Interrupted`]).
///
/// Errors on an unusable dataset or device, an unwritable output, or a loss that diverges.
pub fn train(config: &Config, out: &Path, shutdown: &Shutdown) -> Result<TrainSummary> {
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let run = RunDir::new(out);
    let config_path = run.config();
    std::fs::write(&config_path, config.to_toml()).map_err(TrainError::io(&config_path))?;
    crate::device::use_threads(config.train.threads);
    let device = select_device(config.train.device)?;
    let dataset = crate::data::resolve_dataset(&config.data, out)?;
    let t = &config.train;
    let sampler = dataset.training_sampler(t.seed, t.batch_size)?;
    let augment = Augment {
        mask_fraction: t.mask_fraction,
        max_shift: t.max_shift,
        max_len: dataset.manifest.max_len,
    };
    let held_out = held_out_batch(&dataset, config)?;
    let mut trainer = Trainer::new(config, device, sampler.steps_per_epoch());
    info!(
        ?device,
        parameters = trainer.model.parameter_count(),
        groups = dataset.groups.len(),
        transcripts = dataset.transcripts.len(),
        steps_per_epoch = sampler.steps_per_epoch(),
        held_out_groups = held_out.as_ref().map_or(0, |b| b.pairs.len()),
        "training"
    );
    let checkpoints = Checkpointing::open(config)?;
    let fingerprint = dataset.manifest.fingerprint.clone();
    let first_step = match &checkpoints {
        Some(c) => c.resume(&mut trainer, &fingerprint)?.unwrap_or(0),
        None => 0,
    };
    if first_step >= t.steps {
        return Err(TrainError::AlreadyComplete {
            step: first_step,
            steps: t.steps,
        });
    }
    let checkpointer = Checkpointer::new(checkpoints, &fingerprint, 1, sampler.steps_per_epoch());
    let mut controller = LocalController {
        shutdown: shutdown.clone(),
        end_step: t.steps,
        checkpoint_every: checkpointer.every_steps(),
    };
    let mut sink = LocalMetrics::open(out, first_step, config, held_out, sampler.steps_per_epoch())?;
    std::thread::scope(|scope| {
        // Batches are built on a separate thread so the step never waits for encoding in steady state.
        let (sender, receiver) = mpsc::sync_channel(PREFETCH);
        let (dataset, sampler, augment) = (&dataset, &sampler, &augment);
        scope.spawn(move || {
            for step in first_step..t.steps {
                let batch = build_step(dataset, sampler, augment, t.seed, step, PassLayout::of(config));
                if sender.send(batch).is_err() {
                    return; // the loop stopped early
                }
            }
        });
        let parts = Components {
            source: &mut Prefetched(receiver),
            sync: &mut SingleProcess,
            sink: &mut sink,
            controller: &mut controller,
            checkpointer: &checkpointer,
        };
        training_loop::run(&mut trainer, first_step, parts, Some(out))
    })?;
    let (first, last, seq_per_s) = sink.finish()?;
    Ok(TrainSummary {
        first_loss: first.loss,
        last_loss: last.loss,
        last_accuracy: last.accuracy,
        steps: t.steps,
        seq_per_s,
        model_path: run.model(),
        metrics_path: run.metrics(),
        dataset_dir: dataset.dir.clone(),
    })
}

/// Batches from the local builder thread.
struct Prefetched(mpsc::Receiver<crate::data::Result<StepBatch>>);

impl StepSource for Prefetched {
    fn next_batch(&mut self, step: u64) -> Result<StepBatch> {
        let batch = self.0.recv().map_err(|_| TrainError::NoBatch {
            step,
            why: "the batch builder stopped unexpectedly".into(),
        })?;
        Ok(batch?)
    }
}

/// Step boundaries of a single process: the run's end, stop signals and the checkpoint cadence.
struct LocalController {
    shutdown: Shutdown,
    end_step: u64,
    checkpoint_every: Option<u64>,
}

impl Controller for LocalController {
    fn decide(&mut self, metrics: &StepMetrics) -> Result<Action> {
        let boundary = Boundary {
            completed: metrics.step + 1,
            end_step: self.end_step,
            checkpoint_every: self.checkpoint_every,
            suspend_requested: self.shutdown.suspend_requested(),
            checkpoint_requested: false,
        };
        Ok(boundary.decide().0)
    }
}

/// A single process's metrics: `metrics.jsonl` and the progress bar (or log lines) every `train.log_every`
/// steps, with the held-out batch evaluated there, and the run's summary figures.
struct LocalMetrics {
    file: MetricsFile,
    path: PathBuf,
    bar: Option<ProgressBar>,
    held_out: Option<StepBatch>,
    log_every: u64,
    end_step: u64,
    steps_per_epoch: u64,
    start: Instant,
    /// When the window of the next line's throughput began, and the sequences trained in it.
    window: (Instant, u64),
    /// Sequences of one global step (two views of every pair).
    sequences_per_step: u64,
    first: Option<(StepMetrics, Instant)>,
    last: Option<StepMetrics>,
}

impl LocalMetrics {
    /// Continues `out`'s metrics from `first_step` (a resumed run keeps the lines of the steps before it).
    fn open(
        out: &Path,
        first_step: u64,
        config: &Config,
        held_out: Option<StepBatch>,
        steps_per_epoch: u64,
    ) -> Result<Self> {
        let path = RunDir::new(out).metrics();
        let file = MetricsFile::open(out, first_step).map_err(TrainError::io(&path))?;
        let bar = progress_bar(config.train.steps);
        if let Some(bar) = &bar {
            bar.set_position(first_step);
        }
        Ok(Self {
            file,
            path,
            bar,
            held_out,
            log_every: config.train.log_every,
            end_step: config.train.steps,
            steps_per_epoch: steps_per_epoch.max(1),
            start: Instant::now(),
            window: (Instant::now(), 0),
            sequences_per_step: 2 * config.train.batch_size as u64,
            first: None,
            last: None,
        })
    }

    /// The first and last steps' metrics, and the sequences per second over the run after its first step.
    fn finish(self) -> Result<(StepMetrics, StepMetrics, f64)> {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        let (Some((first, after_first)), Some(last)) = (self.first, self.last) else {
            return Err(TrainError::Setup("no step ran".into()));
        };
        let timed_steps = (last.step - first.step).max(1);
        let seconds = after_first.elapsed().as_secs_f64().max(1e-9);
        Ok((first, last, (timed_steps * self.sequences_per_step) as f64 / seconds))
    }
}

impl MetricsSink for LocalMetrics {
    fn record(&mut self, metrics: &StepMetrics, trainer: &Trainer) -> Result<()> {
        let step = metrics.step;
        self.first.get_or_insert((*metrics, Instant::now()));
        self.last = Some(*metrics);
        self.window.1 += self.sequences_per_step;
        if step.is_multiple_of(self.log_every) || step + 1 == self.end_step {
            let seq_per_s = self.window.1 as f64 / self.window.0.elapsed().as_secs_f64().max(1e-9);
            let (held_out_loss, held_out_accuracy) =
                self.held_out.as_ref().map(|b| trainer.evaluate(b)).transpose()?.unzip();
            self.window = (Instant::now(), 0);
            let line = MetricsLine {
                step,
                epoch: step / self.steps_per_epoch,
                loss: metrics.loss,
                accuracy: metrics.accuracy,
                lr: metrics.lr,
                grad_norm: metrics.grad_norm,
                seq_per_s,
                pad_fraction: metrics.pad_fraction,
                elapsed_s: self.start.elapsed().as_secs_f64(),
                world_size: None,
                step_time_s: None,
                data_wait_s: None,
                held_out_loss,
                held_out_accuracy,
                mlm_loss: metrics.mlm_loss,
            };
            self.file.write(&line).map_err(TrainError::io(&self.path))?;
            match &self.bar {
                Some(bar) => bar.set_message(format!(
                    "loss {:.4} acc {:.3}{} {seq_per_s:.0} seq/s",
                    metrics.loss,
                    metrics.accuracy,
                    held_out_accuracy
                        .map(|a| format!(" held-out acc {a:.3}"))
                        .unwrap_or_default()
                )),
                None => info!(
                    step,
                    loss = metrics.loss,
                    accuracy = metrics.accuracy,
                    held_out_loss,
                    held_out_accuracy,
                    mlm_loss = metrics.mlm_loss,
                    lr = metrics.lr,
                    seq_per_s,
                    "step"
                ),
            }
        }
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        Ok(())
    }
}
