//! The training loop that the single process and every worker run: take a batch, train one step, record
//! it, do what the step boundary asks. What differs between the modes lives in the components, which
//! decide for themselves:
//!
//! | component | single process | worker |
//! |---|---|---|
//! | [`StepSource`] | the local prefetching sampler | the coordinator's batch stream |
//! | [`GradientSync`] | the identity | TCP ring or NCCL |
//! | [`MetricsSink`] | `metrics.jsonl`, progress bar, log | none: the coordinator writes the job's metrics |
//! | [`Controller`] | signals and [`crate::boundary`] | the coordinator's decision |
//! | [`Checkpointer`] | saves when checkpoints are on | rank 0 saves |

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::checkpointing::Checkpointer;
use super::step::Trainer;
use super::sync::GradientSync;
use super::{Result, TrainError};
use crate::boundary::Action;
use crate::data::StepBatch;
use crate::metrics::StepMetrics;

/// Where a step's batch comes from.
pub trait StepSource {
    /// The batch of `step`, waiting for it as long as the source allows.
    fn next_batch(&mut self, step: u64) -> Result<StepBatch>;
}

/// Where a step's metrics go.
pub trait MetricsSink {
    /// Records `metrics` of a step trained by `trainer` (which a sink may use to evaluate).
    fn record(&mut self, metrics: &StepMetrics, trainer: &Trainer) -> Result<()>;
}

/// The coordinator records every rank's metrics itself: a worker's sink keeps nothing.
impl MetricsSink for () {
    fn record(&mut self, _: &StepMetrics, _: &Trainer) -> Result<()> {
        Ok(())
    }
}

/// Who decides what happens after a step.
pub trait Controller {
    /// The action after the step of `metrics`: continue, checkpoint, suspend or stop. A failed job is an
    /// error, not an action.
    fn decide(&mut self, metrics: &StepMetrics) -> Result<Action>;
}

/// The components of one run of the loop.
pub struct Components<'a> {
    /// The batches.
    pub source: &'a mut dyn StepSource,
    /// The other ranks.
    pub sync: &'a mut dyn GradientSync,
    /// The metrics.
    pub sink: &'a mut dyn MetricsSink,
    /// The step boundaries.
    pub controller: &'a mut dyn Controller,
    /// The checkpoints.
    pub checkpointer: &'a Checkpointer,
}

/// Trains from `first_step` until the controller says stop, then writes the final weights into `model_dir`
/// (when given: one rank writes them) and returns the steps completed.
///
/// Errors: [`TrainError::Interrupted`] after a suspension's checkpoint is complete, [`TrainError::Diverged`]
/// on a non-finite loss, and whatever a component reports.
pub fn run(trainer: &mut Trainer, first_step: u64, parts: Components, model_dir: Option<&Path>) -> Result<u64> {
    let Components {
        source,
        sync,
        sink,
        controller,
        checkpointer,
    } = parts;
    let mut step = first_step;
    loop {
        let waited = Instant::now();
        let batch = source.next_batch(step)?;
        let data_wait_s = waited.elapsed().as_secs_f64();
        let started = Instant::now();
        let report = trainer.train_step(&batch, sync.collective())?;
        if !report.loss.is_finite() {
            return Err(TrainError::Diverged {
                step,
                loss: report.loss,
            });
        }
        sync.step_completed();
        let step_time_s = started.elapsed().as_secs_f64();
        let metrics = StepMetrics {
            step,
            loss: report.loss,
            accuracy: report.accuracy,
            lr: report.lr,
            grad_norm: report.grad_norm,
            mlm_loss: report.mlm_loss,
            pad_fraction: batch.pad_fraction(),
            seq_per_s: 2.0 * batch.pairs.len() as f64 / (step_time_s + data_wait_s).max(1e-9),
            step_time_s,
            data_wait_s,
        };
        sink.record(&metrics, trainer)?;
        let completed = step + 1;
        match controller.decide(&metrics)? {
            Action::Continue => {}
            Action::Checkpoint => checkpointer.save(trainer, completed, report.lr, false)?,
            Action::Suspend => {
                checkpointer.save(trainer, completed, report.lr, true)?;
                return Err(TrainError::Interrupted { step: completed });
            }
            Action::Stop => {
                checkpointer.save(trainer, completed, report.lr, true)?;
                if let Some(dir) = model_dir {
                    save_model(trainer, dir)?;
                }
                return Ok(completed);
            }
            Action::Abort => {
                return Err(TrainError::Aborted {
                    reason: format!("after step {step}"),
                });
            }
        }
        step = completed;
    }
}

/// Writes `trainer`'s weights to the run directory `dir` through a temporary file, so a reader never sees
/// half a file.
pub fn save_model(trainer: &Trainer, dir: &Path) -> Result<PathBuf> {
    let run = crate::run_dir::RunDir::new(dir);
    let (path, tmp) = (run.model(), run.model_being_written());
    trainer.model.save(&tmp)?;
    std::fs::rename(&tmp, &path).map_err(TrainError::io(&path))?;
    Ok(path)
}
