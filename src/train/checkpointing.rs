//! The trainer's side of checkpoints: what a checkpoint holds (`model.safetensors`, `optimizer.safetensors`,
//! `state.json`), when one is taken, and resuming from the newest valid one.
//!
//! Storage (layout, manifest, LATEST, retention, retries) is `crate::ckpt`'s job; this module turns a trainer
//! into bytes and back, and decides whether a stored checkpoint belongs to this run.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::snapshot::TrainerSnapshot;
use super::step::Trainer;
use super::{Result, TrainError};
use crate::ckpt::{AsyncSaver, CheckpointStore};
use crate::config::Config;

/// Version of `state.json`.
const STATE_VERSION: u32 = 1;

/// `state.json`: where the run stands. The sampler, augmentations and dropout are pure functions of
/// (seed, step), so the step is the whole random state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Layout version.
    pub format_version: u32,
    /// Steps completed: the next step to run.
    pub step: u64,
    /// Epoch of the next step.
    pub epoch: u64,
    /// The sampler's seed.
    pub seed: u64,
    /// Groups per global batch.
    pub batch_size: usize,
    /// Learning rate of the last step taken.
    pub lr: f64,
    /// Processes that trained (the global batch is the coordinator's, so this may change on resume).
    pub world_size: usize,
    /// Fingerprint of the dataset trained on.
    pub dataset_fingerprint: String,
    /// The resolved configuration, as TOML.
    pub config: String,
    /// isoclr version that wrote it.
    pub code_version: String,
}

/// Checkpoints of one run: an asynchronous saver on the configured store.
#[derive(Debug)]
pub struct Checkpointing {
    store: Arc<CheckpointStore>,
    saver: AsyncSaver,
    every_steps: u64,
    config: Config,
}

fn ckpt_error(e: crate::ckpt::CheckpointError) -> TrainError {
    TrainError::Setup(format!("checkpoint: {e}"))
}

impl Checkpointing {
    /// Opens the store of `checkpoint.url`; `None` when checkpoints are off.
    pub fn open(config: &Config) -> Result<Option<Self>> {
        let c = &config.checkpoint;
        let Some(url) = &c.url else { return Ok(None) };
        let store = Arc::new(CheckpointStore::open(url, c.store_options()).map_err(ckpt_error)?);
        let saver = AsyncSaver::new(store.clone(), c.required).map_err(ckpt_error)?;
        Ok(Some(Self {
            store,
            saver,
            every_steps: c.every_steps,
            config: config.clone(),
        }))
    }

    /// Restores the newest valid checkpoint into `trainer` and returns the next step, or `None` when the
    /// store holds none. Refuses a checkpoint of another dataset or model shape, naming the difference.
    pub fn resume(&self, trainer: &mut Trainer, dataset_fingerprint: &str) -> Result<Option<u64>> {
        let Some(loaded) = self
            .store
            .load_latest(self.config.checkpoint.verify)
            .map_err(ckpt_error)?
        else {
            return Ok(None);
        };
        let file = |name: &str| {
            loaded.file(name).ok_or_else(|| {
                TrainError::Setup(format!(
                    "checkpoint {} has no {name}",
                    crate::ckpt::step_dir(loaded.step)
                ))
            })
        };
        let state: TrainState = serde_json::from_slice(file("state.json")?)
            .map_err(|e| TrainError::Setup(format!("checkpoint step {}: state.json: {e}", loaded.step)))?;
        if state.dataset_fingerprint != dataset_fingerprint {
            return Err(TrainError::Setup(format!(
                "the checkpoint at {} (step {}) was trained on dataset {} but this run's dataset is {}; \
                 use another checkpoint.url or the original data",
                self.store.url(),
                state.step,
                &state.dataset_fingerprint[..16.min(state.dataset_fingerprint.len())],
                &dataset_fingerprint[..16.min(dataset_fingerprint.len())]
            )));
        }
        let snapshot = TrainerSnapshot {
            model: file("model.safetensors")?.to_vec(),
            optimizer: file("optimizer.safetensors")?.to_vec(),
        };
        trainer.restore(&snapshot).map_err(|e| {
            TrainError::Setup(format!(
                "the checkpoint at {} does not fit this model: {e}",
                self.store.url()
            ))
        })?;
        info!(step = state.step, url = self.store.url(), "resumed from checkpoint");
        Ok(Some(state.step))
    }

    /// Whether a checkpoint is due after `completed` steps.
    pub fn due(&self, completed: u64) -> bool {
        completed.is_multiple_of(self.every_steps)
    }

    /// Hands a snapshot of `trainer` after `completed` steps to the background uploader and returns at once.
    /// A periodic save is skipped (with a warning) while the previous one is still uploading, so training
    /// never waits on storage; a `final_save` (end of run, stop signal) first waits for it. Errors only when
    /// `checkpoint.required` is set and a save failed for good.
    pub fn save(&self, trainer: &Trainer, state: TrainState, final_save: bool) -> Result<()> {
        if let Some(busy) = self.saver.in_flight() {
            if !final_save {
                warn!(
                    step = state.step,
                    uploading = busy,
                    "checkpoint skipped: the previous one is still uploading"
                );
                return Ok(());
            }
            self.finish()?;
        }
        let snapshot = trainer.snapshot()?;
        let state_json = serde_json::to_vec_pretty(&state).map_err(|e| TrainError::Setup(e.to_string()))?;
        let files = vec![
            ("model.safetensors".to_owned(), Bytes::from(snapshot.model)),
            ("optimizer.safetensors".to_owned(), Bytes::from(snapshot.optimizer)),
            ("state.json".to_owned(), Bytes::from(state_json)),
        ];
        self.saver.submit(state.step, files).map_err(ckpt_error)
    }

    /// Waits (bounded by `checkpoint.wait_timeout_s`) for the save in flight.
    pub fn finish(&self) -> Result<()> {
        match self.saver.wait(self.config.checkpoint.wait_timeout()) {
            Ok(Some(saved)) => {
                if let Some(failure) = self.saver.last_error() {
                    warn!(
                        ?failure,
                        latest = saved.step,
                        "a checkpoint save failed; the newest complete one is older"
                    );
                } else {
                    info!(step = saved.step, dir = saved.dir, "checkpoint complete");
                }
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) if self.config.checkpoint.required => Err(ckpt_error(e)),
            Err(e) => {
                warn!(error = %e, "the last checkpoint did not complete; the previous one stays LATEST");
                Ok(())
            }
        }
    }
}

/// The state after `completed` steps.
pub fn train_state(
    config: &Config,
    completed: u64,
    epoch: u64,
    lr: f64,
    world_size: usize,
    fingerprint: &str,
) -> TrainState {
    TrainState {
        format_version: STATE_VERSION,
        step: completed,
        epoch,
        seed: config.train.seed,
        batch_size: config.train.batch_size,
        lr,
        world_size,
        dataset_fingerprint: fingerprint.to_owned(),
        config: config.to_toml(),
        code_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}
