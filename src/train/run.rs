//! The single-process training loop and its outputs in `--out`:
//! `metrics.jsonl`, `config.toml` (the resolved configuration) and `model.safetensors`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tch::Device;
use tracing::info;

use super::checkpointing::{Checkpointing, train_state};
use super::step::{StepReport, Trainer};
use super::{Result, TrainError};
use crate::config::{Config, DeviceChoice};
use crate::data::batch::build_step;
use crate::data::{Augment, Dataset, Sampler, StepBatch};
use crate::dist::SingleProcess;
use crate::metrics::{METRICS_FILE, MetricsFile, MetricsLine};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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

/// A flag that SIGTERM (pre-emption) and SIGUSR2 (Slurm's warning before a time limit) set: the run ends at
/// the next step boundary with a checkpoint. Not SIGUSR1: NCCL may use it.
pub fn stop_flag() -> Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGUSR2] {
        signal_hook::flag::register(signal, stop.clone()).map_err(|e| TrainError::Setup(format!("signals: {e}")))?;
    }
    Ok(stop)
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
        config.pass_layout(),
    )?))
}

/// Trains in this process on CPU or one GPU, writing outputs into `out`.
///
/// Errors on an unusable dataset or device, an unwritable output, or a loss that diverges.
pub fn train(config: &Config, out: &Path) -> Result<TrainSummary> {
    std::fs::create_dir_all(out).map_err(TrainError::io(out))?;
    let config_path = out.join("config.toml");
    std::fs::write(&config_path, config.to_toml()).map_err(TrainError::io(&config_path))?;
    if config.train.threads > 0 {
        tch::set_num_threads(config.train.threads);
    }
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
    let stop = stop_flag()?;
    let metrics_path = out.join(METRICS_FILE);
    // A resumed run continues the metrics of the run it resumes.
    let mut metrics = MetricsFile::open(out, first_step).map_err(TrainError::io(&metrics_path))?;
    let bar = progress_bar(t.steps);
    if let Some(bar) = &bar {
        bar.set_position(first_step);
    }
    let sequences_per_step = 2 * t.batch_size as u64;

    let (first, last, seq_per_s) = std::thread::scope(|scope| -> Result<(StepReport, StepReport, f64)> {
        // Batches are built on a separate thread so the step never waits for encoding in steady state.
        let (sender, receiver) = mpsc::sync_channel(PREFETCH);
        let (dataset, sampler, augment) = (&dataset, &sampler, &augment);
        scope.spawn(move || {
            for step in first_step..t.steps {
                let batch = build_step(dataset, sampler, augment, t.seed, step, config.pass_layout());
                if sender.send(batch).is_err() {
                    return; // the loop stopped early
                }
            }
        });
        let start = Instant::now();
        let mut after_first = start;
        let (mut first, mut last) = (None, None);
        let mut since_log = (Instant::now(), 0u64);
        for step in first_step..t.steps {
            let batch = receiver
                .recv()
                .map_err(|_| TrainError::Setup("the batch builder stopped unexpectedly".into()))??;
            let report = trainer
                .train_step(&batch, &mut SingleProcess)
                .map_err(|e| TrainError::Setup(e.to_string()))?;
            if !report.loss.is_finite() {
                return Err(TrainError::Diverged {
                    step,
                    loss: report.loss,
                });
            }
            if step == first_step {
                after_first = Instant::now();
            }
            since_log.1 += sequences_per_step;
            first.get_or_insert(report);
            last = Some(report);
            if step % t.log_every == 0 || step + 1 == t.steps {
                let seq_per_s = since_log.1 as f64 / since_log.0.elapsed().as_secs_f64().max(1e-9);
                let (held_out_loss, held_out_accuracy) = held_out.as_ref().map(|b| trainer.evaluate(b)).unzip();
                since_log = (Instant::now(), 0);
                let line = MetricsLine {
                    step,
                    epoch: sampler.position(step).0,
                    loss: report.loss,
                    accuracy: report.accuracy,
                    lr: report.lr,
                    grad_norm: report.grad_norm,
                    seq_per_s,
                    pad_fraction: batch.pad_fraction(),
                    elapsed_s: start.elapsed().as_secs_f64(),
                    world_size: None,
                    step_time_s: None,
                    data_wait_s: None,
                    held_out_loss,
                    held_out_accuracy,
                    mlm_loss: report.mlm_loss,
                };
                metrics.write(&line).map_err(TrainError::io(&metrics_path))?;
                match &bar {
                    Some(bar) => bar.set_message(format!(
                        "loss {:.4} acc {:.3}{} {seq_per_s:.0} seq/s",
                        report.loss,
                        report.accuracy,
                        held_out_accuracy
                            .map(|a| format!(" held-out acc {a:.3}"))
                            .unwrap_or_default()
                    )),
                    None => info!(
                        step,
                        loss = report.loss,
                        accuracy = report.accuracy,
                        held_out_loss,
                        held_out_accuracy,
                        mlm_loss = report.mlm_loss,
                        lr = report.lr,
                        seq_per_s,
                        "step"
                    ),
                }
            }
            if let Some(bar) = &bar {
                bar.inc(1);
            }
            let completed = step + 1;
            let interrupted = stop.load(Ordering::Relaxed);
            if let Some(c) = &checkpoints
                && (c.due(completed) || interrupted || completed == t.steps)
            {
                let epoch = sampler.position(completed).0;
                let final_save = interrupted || completed == t.steps;
                c.save(
                    &trainer,
                    train_state(config, completed, epoch, report.lr, 1, &fingerprint),
                    final_save,
                )?;
            }
            if interrupted {
                if let Some(c) = &checkpoints {
                    c.finish()?;
                }
                return Err(TrainError::Interrupted { step: completed });
            }
        }
        if let Some(c) = &checkpoints {
            c.finish()?;
        }
        let timed_steps = (t.steps - first_step).saturating_sub(1).max(1);
        let seq_per_s = (timed_steps * sequences_per_step) as f64 / after_first.elapsed().as_secs_f64().max(1e-9);
        match (first, last) {
            (Some(first), Some(last)) => Ok((first, last, seq_per_s)),
            _ => Err(TrainError::Setup("no step ran".into())),
        }
    })?;
    if let Some(bar) = bar {
        bar.finish();
    }
    let model_path = out.join("model.safetensors");
    let tmp = out.join("model.safetensors.tmp");
    trainer.model.save(&tmp)?;
    std::fs::rename(&tmp, &model_path).map_err(TrainError::io(&model_path))?;
    Ok(TrainSummary {
        first_loss: first.loss,
        last_loss: last.loss,
        last_accuracy: last.accuracy,
        steps: t.steps,
        seq_per_s,
        model_path,
        metrics_path,
        dataset_dir: dataset.dir.clone(),
    })
}
