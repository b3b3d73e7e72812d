//! The coordinator: registers the job's workers and completes their rendezvous, plans every global step
//! once from the dataset index and the seeded sampler and streams each rank its shard, tracks heartbeats and
//! streams, decides at each step boundary whether the job continues, checkpoints, stops or aborts, writes
//! the job's `metrics.jsonl` and shows one progress bar for the job.
//!
//! Layout: [`state`] is the job's bookkeeping as a plain synchronous state machine (no I/O, unit-tested);
//! `plan` turns steps into wire messages; `service` is the gRPC service on top of both; `server` binds,
//! serves and shuts down; `metrics` writes `metrics.jsonl` and the progress display.
//!
//! Must not import tch or the `model` / `train` modules: the coordinator runs without libtorch.

mod metrics;
mod plan;
mod server;
mod service;
pub mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use isoclr_proto::{ErrorKind, Token};
pub use plan::Planner;
pub use server::{Coordinator, CoordinatorHandle, run_coordinator, stop_grace, watch_shutdown};

use crate::config::Config;
use crate::data::{DataError, Dataset};

/// Errors of the coordinator. [`CoordError::kind`] gives the kind a caller (or a gRPC status) matches on.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// A worker stopped heart-beating or its batch stream broke.
    #[error("worker rank {rank} (host {host}, pid {pid}) lost: {why}")]
    WorkerLost {
        /// The worker's rank.
        rank: usize,
        /// Its host name.
        host: String,
        /// Its process id.
        pid: u32,
        /// What was observed.
        why: String,
    },
    /// A worker shut down before the job's end (with a non-zero status, or zero before STOP).
    #[error("worker rank {rank} (host {host}, pid {pid}) failed with exit status {status}: {reason}")]
    WorkerFailed {
        /// The worker's rank.
        rank: usize,
        /// Its host name.
        host: String,
        /// Its process id.
        pid: u32,
        /// The exit status it reported.
        status: i32,
        /// The reason it gave.
        reason: String,
    },
    /// Not every worker registered in time.
    #[error("rendezvous: {registered} of {world_size} workers registered within {timeout:?}{who}")]
    RendezvousTimeout {
        /// Workers that did register.
        registered: usize,
        /// Workers expected.
        world_size: usize,
        /// The rendezvous timeout.
        timeout: Duration,
        /// Who registered, for the message (`" (registered: …)"` or empty).
        who: String,
    },
    /// The job was aborted through [`CoordinatorHandle::abort`] or a planning failure.
    #[error("job aborted: {reason}")]
    Aborted {
        /// Why.
        reason: String,
    },
    /// A stop signal arrived before the rendezvous completed: nothing was trained, the job can be started
    /// again as it was.
    #[error("stopped by a signal before every worker had registered; start the job again to resume")]
    Interrupted,
    /// An operator cancelled the job (SIGINT): it ends without a checkpoint and is not restarted.
    #[error("job cancelled by {signal}")]
    Cancelled {
        /// The signal.
        signal: String,
    },
    /// A request that does not fit the job (a rank outside the world, a step past the end).
    #[error("{0}")]
    InvalidRequest(String),
    /// A request out of order (streaming before the rendezvous, registering after it).
    #[error("{0}")]
    OutOfOrder(String),
    /// A rank claimed twice, or a second stream for one rank.
    #[error("{0}")]
    Duplicate(String),
    /// The bind address is unusable.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from `dist.bind`.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS set-up failed (unreadable certificate or key, or rejected by rustls).
    #[error("TLS: {0}")]
    Tls(String),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Planning a step failed (the batch does not split, a group refers to a missing transcript).
    #[error(transparent)]
    Data(#[from] DataError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(String),
}

impl CoordError {
    /// The kind callers and gRPC status codes match on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoordError::WorkerLost { .. } | CoordError::WorkerFailed { .. } | CoordError::Aborted { .. } => {
                ErrorKind::Aborted
            }
            CoordError::RendezvousTimeout { .. } => ErrorKind::Timeout,
            CoordError::Interrupted | CoordError::Cancelled { .. } => ErrorKind::Unavailable,
            CoordError::InvalidRequest(_) => ErrorKind::InvalidArgument,
            CoordError::OutOfOrder(_) => ErrorKind::FailedPrecondition,
            CoordError::Duplicate(_) => ErrorKind::AlreadyExists,
            CoordError::Bind { .. }
            | CoordError::Tls(_)
            | CoordError::Io { .. }
            | CoordError::Data(_)
            | CoordError::Transport(_) => ErrorKind::Internal,
        }
    }

    /// This error as the gRPC status a handler returns.
    pub fn to_status(&self) -> tonic::Status {
        isoclr_proto::status(self.kind(), self.to_string())
    }
}

/// Result alias of the coordinator.
pub type Result<T, E = CoordError> = std::result::Result<T, E>;

/// How the coordinator shows the job's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Progress {
    /// A progress bar when stderr is a terminal, tracing lines every `train.log_every` steps otherwise.
    #[default]
    Auto,
    /// Tracing lines only.
    Log,
    /// Nothing (tests, benchmarks).
    Off,
}

/// Everything the coordinator needs to run one job.
#[derive(Debug, Clone)]
pub struct CoordinatorOptions {
    /// The job's resolved configuration: `dist.*` for serving, `train.*` for the sampler and augmentation.
    pub config: Config,
    /// The dataset index; workers receive transcripts in their shards and need no copy.
    pub dataset: Arc<Dataset>,
    /// Number of workers (ranks).
    pub world_size: usize,
    /// The job's secret; every RPC must carry it.
    pub token: Token,
    /// The job's output directory: `metrics.jsonl` goes here, and workers are told it.
    pub out_dir: PathBuf,
    /// Identifies the job in logs and to the workers.
    pub job_id: String,
    /// First step to run (non-zero when resuming).
    pub start_step: u64,
    /// When set, the bound `host:port` is written here once the coordinator listens (for launchers).
    pub addr_file: Option<PathBuf>,
    /// An NCCL unique id to hand every worker; when `None`, the offer of the worker that becomes rank 0 is
    /// handed out instead.
    pub nccl_unique_id: Option<Vec<u8>>,
    /// How progress is shown.
    pub progress: Progress,
}

impl CoordinatorOptions {
    /// Options with the usual defaults: job id from the process id and time, start at step 0, no address
    /// file, no NCCL id, automatic progress display.
    pub fn new(config: Config, dataset: Arc<Dataset>, world_size: usize, token: Token, out_dir: PathBuf) -> Self {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        Self {
            config,
            dataset,
            world_size,
            token,
            out_dir,
            job_id: format!("isoclr-{since_epoch}-{}", std::process::id()),
            start_step: 0,
            addr_file: None,
            nccl_unique_id: None,
            progress: Progress::Auto,
        }
    }
}

/// What a job that ended well reports.
#[derive(Debug, Clone)]
pub struct CoordinatorOutcome {
    /// The address the coordinator listened on.
    pub addr: SocketAddr,
    /// Steps completed (reported by every rank).
    pub steps: u64,
    /// From the rendezvous to the last shutdown.
    pub elapsed: Duration,
    /// The job's `metrics.jsonl`.
    pub metrics_path: PathBuf,
    /// Sequences per second over the job after its first step (all ranks together).
    pub seq_per_s: f64,
    /// Set when the job was suspended (a stop signal) rather than finished: the steps completed, whose
    /// checkpoint the job resumes from.
    pub suspended_after: Option<u64>,
}
