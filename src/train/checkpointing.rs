//! The trainer's side of checkpoints: what a checkpoint holds (`model.safetensors`, `optimizer.safetensors`,
//! `state.json`), when one is taken, and resuming from the newest valid one.
//!
//! Storage (layout, manifest, LATEST, retention, retries) is `crate::ckpt`'s job; this module turns a trainer
//! into bytes and back, and decides whether a stored checkpoint belongs to this run.

use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::snapshot::TrainerSnapshot;
use super::step::Trainer;
use super::{Result, TrainError};
pub use crate::ckpt::TrainState;
use crate::ckpt::{AsyncSaver, CheckpointError, CheckpointStore, LoadedCheckpoint, STATE_FILE, STATE_VERSION};
use crate::config::Config;
use crate::run_dir::MODEL_FILE;

/// Checkpoints of one run: an asynchronous saver on the configured store.
#[derive(Debug)]
pub struct Checkpointing {
    store: Arc<CheckpointStore>,
    saver: AsyncSaver,
    every_steps: u64,
    config: Config,
}

impl Checkpointing {
    /// Opens the store of `checkpoint.url`; `None` when checkpoints are off.
    pub fn open(config: &Config) -> Result<Option<Self>> {
        let c = &config.checkpoint;
        let Some(url) = &c.url else { return Ok(None) };
        let store = Arc::new(CheckpointStore::open(url, c.store_options())?);
        let saver = AsyncSaver::new(store.clone(), c.required)?;
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
        let point = self
            .store
            .resume_point(self.config.checkpoint.verify, dataset_fingerprint)?;
        let Some((loaded, state)) = point else {
            return Ok(None);
        };
        self.restore(trainer, &loaded)?;
        info!(step = state.step, url = self.store.url(), "resumed from checkpoint");
        Ok(Some(state.step))
    }

    /// Restores the checkpoint of exactly `step` (the one a coordinator chose for the whole job), checking
    /// it as [`Checkpointing::resume`] does.
    pub fn resume_at(&self, trainer: &mut Trainer, step: u64, dataset_fingerprint: &str) -> Result<()> {
        let loaded = self.store.load(step, self.config.checkpoint.verify)?;
        TrainState::from_checkpoint(&loaded, self.store.url())
            .and_then(|state| state.check_dataset(self.store.url(), dataset_fingerprint))?;
        self.restore(trainer, &loaded)?;
        info!(step, url = self.store.url(), "resumed from checkpoint");
        Ok(())
    }

    fn restore(&self, trainer: &mut Trainer, loaded: &LoadedCheckpoint) -> Result<()> {
        let file = |name: &str| {
            loaded.file(name).map(|b| b.to_vec()).ok_or_else(|| {
                TrainError::Checkpoint(CheckpointError::Incompatible {
                    url: self.store.url().to_owned(),
                    why: format!("{} has no {name}", crate::ckpt::step_dir(loaded.step)),
                })
            })
        };
        let snapshot = TrainerSnapshot {
            model: file(MODEL_FILE)?,
            optimizer: file("optimizer.safetensors")?,
        };
        trainer.restore(&snapshot).map_err(|e| {
            TrainError::Checkpoint(CheckpointError::Incompatible {
                url: self.store.url().to_owned(),
                why: format!("it does not fit this model: {e}"),
            })
        })
    }

    /// Hands a snapshot of `trainer` after `completed` steps to the background uploader and returns at once.
    /// A periodic save is skipped (with a warning) while the previous one is still uploading, so training
    /// never waits on storage; a `final_save` (end of run, stop signal) first waits for it, and is retried
    /// through transient storage failures for up to `checkpoint.wait_timeout_s`, since nothing later
    /// replaces it. Errors only when `checkpoint.required` is set and a save failed for good.
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
        let files = vec![
            (MODEL_FILE.to_owned(), Bytes::from(snapshot.model)),
            ("optimizer.safetensors".to_owned(), Bytes::from(snapshot.optimizer)),
            (STATE_FILE.to_owned(), state.to_json()?),
        ];
        if final_save {
            self.saver
                .submit_final(state.step, files, self.config.checkpoint.wait_timeout())
                .map_err(TrainError::from)
        } else {
            self.saver.submit(state.step, files).map_err(TrainError::from)
        }
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
            Err(e) if self.config.checkpoint.required => Err(TrainError::Checkpoint(e)),
            Err(e) => {
                warn!(error = %e, "the last checkpoint did not complete; the previous one stays LATEST");
                Ok(())
            }
        }
    }
}

/// The run's checkpoints as the training loop sees them: saves of the state after a step, tagged with what
/// a resume checks (the dataset, the world size), or nothing at all when checkpoints are off or another rank
/// writes them.
#[derive(Debug)]
pub struct Checkpointer {
    saves: Option<Checkpointing>,
    fingerprint: String,
    world_size: usize,
    steps_per_epoch: u64,
}

impl Checkpointer {
    /// Saves through `saves` (none: every save is a no-op) for a run of `world_size` ranks on the dataset of
    /// `fingerprint`, `steps_per_epoch` global steps an epoch.
    pub fn new(saves: Option<Checkpointing>, fingerprint: &str, world_size: usize, steps_per_epoch: u64) -> Self {
        Self {
            saves,
            fingerprint: fingerprint.to_owned(),
            world_size,
            steps_per_epoch: steps_per_epoch.max(1),
        }
    }

    /// `checkpoint.every_steps`, when this process writes checkpoints.
    pub fn every_steps(&self) -> Option<u64> {
        self.saves.as_ref().map(|s| s.every_steps)
    }

    /// Saves the state after `completed` steps (see [`Checkpointing::save`]); a `final_save` also waits for
    /// the upload to finish.
    pub fn save(&self, trainer: &Trainer, completed: u64, lr: f64, final_save: bool) -> Result<()> {
        let Some(saves) = &self.saves else { return Ok(()) };
        let epoch = completed / self.steps_per_epoch;
        let state = train_state(&saves.config, completed, epoch, lr, self.world_size, &self.fingerprint);
        saves.save(trainer, state, final_save)?;
        if final_save {
            saves.finish()?;
        }
        Ok(())
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
