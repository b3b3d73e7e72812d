//! Training: the optimiser, learning-rate schedules, the one-device step ([`step`]) with gradient
//! synchronisation beside it ([`sync`]), and the one training loop ([`training_loop`]) that a single process
//! ([`run`]: `metrics.jsonl`, `config.toml`, `model.safetensors`) and every worker ([`worker_loop`]: the
//! coordinator's batches and decisions) run with their own components. [`tensor_failure`] is the step's
//! error boundary: a libtorch failure inside it (an out-of-memory) is an error, not a panic.

pub mod checkpointing;
pub mod collective;
pub mod optim;
pub mod run;
pub mod schedule;
pub mod snapshot;
pub mod step;
pub mod sync;
pub mod tensor_failure;
pub mod training_loop;
pub mod worker_loop;

use std::path::PathBuf;

pub use run::{TrainSummary, train};

pub use crate::run_dir::MODEL_FILE;

/// Errors of training.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Reading or building the dataset failed.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Building, saving or loading the model failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// An output could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A collective operation among the ranks failed (a lost peer, a timeout, NCCL).
    #[error("collective: {0}")]
    Collective(#[from] crate::dist::DistError),
    /// A tensor operation failed.
    #[error("{what}: {source}")]
    Tensor {
        /// What was being done.
        what: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// libtorch ran out of memory in a step: the largest micro-batch is named, and what to lower.
    #[error(
        "step {step}: {what}: out of memory with micro-batches of up to {lines} sequences × {padded_len} positions \
         ({message}); lower train.positions_per_pass (now {positions_per_pass}) or train.batch_size, or set \
         train.gradient_cache = true"
    )]
    OutOfMemory {
        /// What was being computed.
        what: &'static str,
        /// The step.
        step: u64,
        /// Sequences (lines) in the step's largest micro-batch.
        lines: usize,
        /// Its padded length.
        padded_len: usize,
        /// `train.positions_per_pass`.
        positions_per_pass: usize,
        /// libtorch's message.
        message: String,
    },
    /// Saving or loading a checkpoint failed, or the checkpoint belongs to another run.
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] crate::ckpt::CheckpointError),
    /// A call to the coordinator failed (a worker: registration, the batch stream, a report).
    #[error("{call}: {source}")]
    Coordinator {
        /// What was asked of the coordinator.
        call: &'static str,
        /// The client's error.
        #[source]
        source: crate::worker::WorkerError,
    },
    /// No batch for a step arrived (a worker's stream stalled or ended; the local builder stopped).
    #[error("no batch for step {step}: {why}")]
    NoBatch {
        /// The step waited for.
        step: u64,
        /// Why.
        why: String,
    },
    /// The job was aborted (another worker failed, the coordinator cancelled it): this worker stops.
    #[error("job aborted: {reason}")]
    Aborted {
        /// The coordinator's reason, naming the worker at fault.
        reason: String,
    },
    /// The requested device is not available, or the run is misconfigured.
    #[error("{0}")]
    Setup(String),
    /// A stop signal (SIGTERM, SIGUSR2) ended the run at a step boundary after checkpointing: resumable.
    #[error("stopped by a signal after step {step}; the run resumes from its checkpoint when started again")]
    Interrupted {
        /// Steps completed.
        step: u64,
    },
    /// The checkpoint to resume from is already at `train.steps`: nothing is left to train. Not a failure: a
    /// requeued or re-submitted job that had finished ends here.
    #[error("the run is complete: its checkpoint is at step {step} of train.steps = {steps}; nothing to do")]
    AlreadyComplete {
        /// The checkpoint's step.
        step: u64,
        /// `train.steps`.
        steps: u64,
    },
    /// The loss became NaN or infinite.
    #[error("step {step}: loss is {loss}; lower train.lr or check the data")]
    Diverged {
        /// Step at which it happened.
        step: u64,
        /// The loss value.
        loss: f64,
    },
}

/// Result alias of training.
pub type Result<T, E = TrainError> = std::result::Result<T, E>;

impl TrainError {
    /// Wraps an I/O error with its path.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TrainError {
        let path = path.into();
        move |source| TrainError::Io { path, source }
    }
}
