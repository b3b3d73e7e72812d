//! Checkpoints in object storage: the layout, the manifest written last, the `LATEST` pointer, retention, and a
//! background uploader. Bytes, not tensors: the trainer turns its tensors into the files it hands over
//! (`model.safetensors`, `optimizer.safetensors`, `state.json`) and back. Must not import tch, the model or
//! train modules.
//!
//! # Layout
//! Under the checkpoint URL (`file:///runs/x/ckpt`, a plain path, `s3://bucket/prefix`, `gs://…`, `az://…`,
//! `memory://`):
//! ```text
//! step-00000100/model.safetensors      the caller's files, opaque bytes, uploaded first
//! step-00000100/optimizer.safetensors
//! step-00000100/state.json
//! step-00000100/manifest.json          written last: every file with its size and SHA-256
//! LATEST                               written after the manifest: "step-00000100"
//! ```
//! A checkpoint exists only once its manifest does: a directory without one is the remains of a save that
//! did not finish and is ignored (and deleted by the next save's retention once a newer checkpoint is
//! complete). `LATEST` only ever names a complete checkpoint; when it is missing or damaged, loading lists the
//! manifests instead. A damaged newest checkpoint (missing or truncated file, wrong checksum, missing
//! manifest) is skipped for the one before it, with a warning that names what was wrong.
//!
//! # One writer
//! Only one process saves into a URL (rank 0 of a job): retention deletes what it does not keep, and the
//! layout has no locking. Any number of processes may load.
//!
//! # Pieces
//! - [`CheckpointStore`]: open a URL, [`save`](CheckpointStore::save),
//!   [`load_latest`](CheckpointStore::load_latest), [`list_complete`](CheckpointStore::list_complete). Its
//!   API is synchronous (the training thread is): it owns a small tokio runtime, and must not be called
//!   from async code (use `spawn_blocking` there). Every storage call has a timeout and transient errors
//!   are retried with exponential back-off.
//! - [`AsyncSaver`]: the training loop hands over a snapshot and goes on; one save at a time in the
//!   background.
//! - [`CheckpointConfig`]: the `[checkpoint]` settings, validated; [`StoreOptions`] for the store itself.
//!
//! Credentials come only from the environment and the providers' standard chains (`AWS_*`,
//! `GOOGLE_*`, `AZURE_*` variables, instance metadata, web identity): they are never part of a URL, a
//! setting, a log line or an object this module writes.

mod config;
mod layout;
mod saver;
mod state;
mod storage;
mod store;
#[doc(hidden)]
pub mod suite;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use config::{CheckpointConfig, MIN_PART_SIZE, S3Options, StoreOptions};
pub use layout::{MANIFEST_FORMAT, MANIFEST_VERSION, Manifest, ManifestFile, step_dir};
pub use saver::{AsyncSaver, SaveFailure};
pub use state::{STATE_FILE, STATE_VERSION, TrainState};
pub use store::{CheckpointStore, CompleteCheckpoint, LoadedCheckpoint, SavedCheckpoint};

/// Errors of the checkpoint module. Each variant is a kind a caller can match on; messages name the
/// object or URL involved.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CheckpointError {
    /// A setting or URL is invalid, or a store cannot be built from it.
    #[error("invalid checkpoint setting {key}: {why}")]
    Config {
        /// The setting (`checkpoint.keep`, `url`, …).
        key: String,
        /// What is wrong.
        why: String,
    },
    /// The caller's input cannot be saved (a bad file name, a step beyond 8 digits).
    #[error("cannot save checkpoint: {why}")]
    Invalid {
        /// What is wrong.
        why: String,
    },
    /// An object does not exist.
    #[error("{object}: not found")]
    NotFound {
        /// The object's URL.
        object: String,
    },
    /// A storage call got no answer within its timeout, on every attempt.
    #[error("{op} {object}: no answer within {after:?} (attempts: {attempts})")]
    Timeout {
        /// The operation (`put`, `get`, `list`, `delete`, `wait`).
        op: &'static str,
        /// The object's URL.
        object: String,
        /// The timeout of one attempt.
        after: Duration,
        /// Attempts made.
        attempts: u32,
    },
    /// A storage call failed with a transient error on every attempt (network, server error).
    #[error("{op} {object}: storage unavailable after {attempts} attempts: {why}")]
    Unavailable {
        /// The operation.
        op: &'static str,
        /// The object's URL.
        object: String,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        why: String,
    },
    /// The store refused a call for good (permission denied, bad credentials, unsupported operation).
    #[error("{op} {object}: {why}")]
    Storage {
        /// The operation.
        op: &'static str,
        /// The object's URL.
        object: String,
        /// The store's error.
        why: String,
    },
    /// A checkpoint file or manifest is missing, truncated or does not match its checksum.
    #[error("{file} is damaged: {why}")]
    Corrupt {
        /// The file's URL.
        file: String,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint belongs to another run: another dataset.
    #[error("cannot resume from {url}: {why}")]
    Incompatible {
        /// The checkpoint URL.
        url: String,
        /// What differs.
        why: String,
    },
    /// Complete checkpoints exist but every one of them is damaged.
    #[error("no usable checkpoint under {url}: {why}")]
    NoUsableCheckpoint {
        /// The checkpoint URL.
        url: String,
        /// What was wrong with each.
        why: String,
    },
    /// [`AsyncSaver::submit`] while a save is in flight: the snapshot was not taken.
    #[error("a checkpoint save (step {in_flight}) is still in flight")]
    Busy {
        /// The step being saved.
        in_flight: u64,
    },
    /// A background save failed for good and `checkpoint.required` is set.
    #[error("the checkpoint of step {step} could not be saved and checkpoint.required is set: {why}")]
    SaveFailed {
        /// The step whose save failed.
        step: u64,
        /// Its error.
        why: String,
    },
    /// The module's runtime or background thread failed, or a blocking call was made from async code.
    #[error("checkpoint runtime: {0}")]
    Runtime(String),
}

impl CheckpointError {
    /// True for errors that a later attempt may not see (timeouts, unavailable storage).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Timeout { .. } | Self::Unavailable { .. })
    }

    /// True when the error says a checkpoint is damaged (and an older one may be used instead).
    pub fn is_damage(&self) -> bool {
        matches!(self, Self::Corrupt { .. })
    }
}

/// The module's result type.
pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;
