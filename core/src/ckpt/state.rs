//! `state.json`: where a run stands when a checkpoint is taken, and the checks that decide whether a stored
//! checkpoint belongs to the run that wants to resume from it. Plain data: the coordinator reads it to pick
//! the step a job resumes from, the trainer writes it next to its tensors.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{CheckpointError, CheckpointStore, LoadedCheckpoint, Result, step_dir};

/// Name of the state file in a checkpoint.
pub const STATE_FILE: &str = "state.json";

/// Version of the `state.json` layout.
pub const STATE_VERSION: u32 = 1;

/// `state.json`. The sampler, augmentations and dropout are pure functions of (seed, step), so the step is
/// the whole random state; the model and optimiser are in the checkpoint's safetensors files.
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

/// The first 16 characters of a fingerprint, for messages.
fn short(fingerprint: &str) -> &str {
    &fingerprint[..16.min(fingerprint.len())]
}

impl TrainState {
    /// The state file of a loaded checkpoint.
    ///
    /// Errors: [`CheckpointError::Corrupt`] when it is missing, does not parse, or names another step than
    /// its directory.
    pub fn from_checkpoint(loaded: &LoadedCheckpoint, url: &str) -> Result<Self> {
        let corrupt = |why: String| CheckpointError::Corrupt {
            file: format!("{}/{}/{STATE_FILE}", url.trim_end_matches('/'), step_dir(loaded.step)),
            why,
        };
        let raw = loaded.file(STATE_FILE).ok_or_else(|| corrupt("missing".into()))?;
        let state: TrainState = serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string()))?;
        if state.step != loaded.step {
            return Err(corrupt(format!(
                "says step {}, its directory step {}",
                state.step, loaded.step
            )));
        }
        Ok(state)
    }

    /// `state.json`'s bytes. Errors rather than saving an empty file.
    pub fn to_json(&self) -> Result<Bytes> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| CheckpointError::Invalid {
            why: format!("state.json cannot be written: {e}"),
        })?;
        Ok(Bytes::from(json))
    }

    /// Refuses a checkpoint of another dataset than the one with `fingerprint`.
    ///
    /// Errors: [`CheckpointError::Incompatible`] naming both fingerprints.
    pub fn check_dataset(&self, url: &str, fingerprint: &str) -> Result<()> {
        if self.dataset_fingerprint == fingerprint {
            return Ok(());
        }
        Err(CheckpointError::Incompatible {
            url: url.to_owned(),
            why: format!(
                "the checkpoint of step {} was trained on dataset {} but this run's dataset is {}; use \
                 another checkpoint.url or the original data",
                self.step,
                short(&self.dataset_fingerprint),
                short(fingerprint)
            ),
        })
    }
}

impl CheckpointStore {
    /// The newest usable checkpoint (see [`CheckpointStore::load_latest`]) with its state, checked against
    /// this run's dataset; `None` when the store holds no checkpoint.
    ///
    /// Errors: storage errors, no usable checkpoint, a damaged `state.json`, another dataset.
    pub fn resume_point(
        &self,
        verify: bool,
        dataset_fingerprint: &str,
    ) -> Result<Option<(LoadedCheckpoint, TrainState)>> {
        let Some(loaded) = self.load_latest(verify)? else {
            return Ok(None);
        };
        let state = TrainState::from_checkpoint(&loaded, self.url())?;
        state.check_dataset(self.url(), dataset_fingerprint)?;
        Ok(Some((loaded, state)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: u64, fingerprint: &str) -> TrainState {
        TrainState {
            format_version: STATE_VERSION,
            step,
            epoch: 0,
            seed: 1,
            batch_size: 4,
            lr: 1e-3,
            world_size: 2,
            dataset_fingerprint: fingerprint.into(),
            config: String::new(),
            code_version: "0".into(),
        }
    }

    fn save(store: &CheckpointStore, step: u64, state_json: Bytes) {
        store
            .save(
                step,
                vec![
                    ("model.safetensors".into(), Bytes::from_static(b"m")),
                    (STATE_FILE.into(), state_json),
                ],
            )
            .unwrap();
    }

    #[test]
    fn the_resume_point_is_the_newest_checkpoint_of_this_dataset() {
        let store = CheckpointStore::open("memory://", Default::default()).unwrap();
        assert_eq!(store.resume_point(true, "abc").unwrap(), None);
        save(&store, 4, state(4, "abc").to_json().unwrap());
        save(&store, 8, state(8, "abc").to_json().unwrap());
        let (loaded, found) = store.resume_point(true, "abc").unwrap().unwrap();
        assert_eq!((loaded.step, found), (8, state(8, "abc")));
        let err = store.resume_point(true, "0123456789abcdef-other").unwrap_err();
        assert!(matches!(err, CheckpointError::Incompatible { .. }), "{err}");
        assert!(
            err.to_string().contains("dataset is 0123456789abcdef;") && err.to_string().contains("step 8"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_or_mismatched_state_is_damage() {
        let store = CheckpointStore::open("memory://", Default::default()).unwrap();
        save(&store, 3, state(5, "abc").to_json().unwrap());
        let err = store.resume_point(true, "abc").unwrap_err();
        assert!(err.is_damage() && err.to_string().contains("says step 5"), "{err}");
        save(&store, 6, Bytes::from_static(b"{"));
        let err = store.resume_point(true, "abc").unwrap_err();
        assert!(err.is_damage() && err.to_string().contains("state.json"), "{err}");
    }
}
