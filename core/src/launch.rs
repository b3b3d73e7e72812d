//! Single-node distributed mode (`isoclr train --workers N`): a coordinator in this process and N worker
//! processes on this machine, supervised so that a failure anywhere ends the whole job within a bound, and
//! a job whose worker died starts again from its latest checkpoint (up to `train.max_restarts` times).
//!
//! Knows processes, the coordinator and checkpoints' `state.json`, not tensors: the workers are
//! `isoclr worker` child processes.

use crate::shutdown::Shutdown;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::ckpt::{CheckpointError, CheckpointStore};
use crate::config::Config;
use crate::coord::{CoordError, Coordinator, CoordinatorOptions, CoordinatorOutcome};
use crate::data::Dataset;
use crate::worker::Token;

/// Exit status of a job (or process) stopped by SIGTERM/SIGUSR2 after its checkpoint (EX_TEMPFAIL): start it
/// again with the same configuration to resume.
pub const EXIT_RESUMABLE: i32 = 75;

/// Errors of a local job.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The dataset could not be made or read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The coordinator failed or aborted the job (names the worker when one was lost).
    #[error(transparent)]
    Coordinator(#[from] crate::coord::CoordError),
    /// A worker process could not be started or failed.
    #[error("{0}")]
    Worker(String),
    /// The checkpoint store could not be read, or holds a checkpoint of another run.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The latest checkpoint is already at `train.steps`: there is nothing left to train.
    #[error("the job is already complete: the checkpoint at {url} is at step {step} = train.steps")]
    AlreadyComplete {
        /// The checkpoint URL.
        url: String,
        /// Its step.
        step: u64,
    },
}

impl LaunchError {
    /// Whether starting the job again from its latest checkpoint may help: a worker died or failed, not the
    /// set-up, the data, a signal or an operator.
    pub fn is_restartable(&self) -> bool {
        match self {
            LaunchError::Worker(_) => true,
            LaunchError::Coordinator(e) => matches!(
                e,
                CoordError::WorkerLost { .. } | CoordError::WorkerFailed { .. } | CoordError::Aborted { .. }
            ),
            _ => false,
        }
    }
}

/// How often child processes are polled.
const POLL: Duration = Duration::from_millis(200);

fn spawn_worker(isoclr: &Path, addr: &str, local_rank: usize, token: &Token) -> Result<Child, LaunchError> {
    Command::new(isoclr)
        .args(["worker", "--coordinator", addr, "--local-rank", &local_rank.to_string()])
        // The secret travels in the environment, never on the command line where `ps` shows it.
        .env(crate::worker::TOKEN_ENV, token.expose())
        .stdin(Stdio::null())
        .spawn()
        .map_err(|e| LaunchError::Worker(format!("cannot start {} worker {local_rank}: {e}", isoclr.display())))
}

/// Whether a worker's exit status is an orderly end: finished (0) or suspended after its checkpoint.
fn ended_well(status: ExitStatus) -> bool {
    status.success() || status.code() == Some(EXIT_RESUMABLE)
}

/// Kills every child still running and reaps them all.
fn stop_children(children: &mut [Child]) {
    for child in children.iter_mut() {
        if matches!(child.try_wait(), Ok(None)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
}

/// Waits up to `deadline` for every child to exit by itself; returns the failures (index, status).
fn wait_children(children: &mut [Child], deadline: Duration) -> Vec<(usize, Option<ExitStatus>)> {
    let start = Instant::now();
    let mut statuses: Vec<Option<ExitStatus>> = vec![None; children.len()];
    while start.elapsed() < deadline && statuses.iter().any(Option::is_none) {
        for (i, child) in children.iter_mut().enumerate() {
            if statuses[i].is_none() {
                statuses[i] = child.try_wait().ok().flatten();
            }
        }
        std::thread::sleep(POLL);
    }
    stop_children(children);
    statuses
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.is_some_and(ended_well))
        .collect()
}

/// Runs a job of `workers` worker processes on this machine, with outputs in `out`; `isoclr` is the binary
/// the workers run. Resumes from the newest usable checkpoint under `checkpoint.url` when there is one, and
/// starts the job again that way when a worker dies, up to `train.max_restarts` times. Returns once every
/// process has ended; a job suspended by a request of `shutdown` returns an outcome with `suspended_after`
/// set.
pub fn run_local_job(
    config: &Config,
    out: &Path,
    workers: usize,
    isoclr: PathBuf,
    shutdown: &Shutdown,
) -> Result<CoordinatorOutcome, LaunchError> {
    std::fs::create_dir_all(out).map_err(|e| LaunchError::Worker(format!("{}: {e}", out.display())))?;
    let config_path = crate::run_dir::RunDir::new(out).config();
    std::fs::write(&config_path, config.to_toml())
        .map_err(|e| LaunchError::Worker(format!("{}: {e}", config_path.display())))?;
    let dataset = Arc::new(crate::data::resolve_dataset(&config.data, out)?);
    let max_restarts = config.train.max_restarts;
    let mut restarts = 0;
    loop {
        let start_step = resume_step(config, &dataset)?;
        match run_attempt(config, out, workers, &isoclr, dataset.clone(), start_step, shutdown) {
            Err(e) if e.is_restartable() && restarts < max_restarts => {
                restarts += 1;
                warn!(
                    error = %e,
                    restart = restarts,
                    max_restarts,
                    "the job failed; starting it again from its latest checkpoint"
                );
            }
            other => return other,
        }
    }
}

/// The step the job starts from: that of the newest usable checkpoint of this dataset, or 0.
pub fn resume_step(config: &Config, dataset: &Dataset) -> Result<u64, LaunchError> {
    let c = &config.checkpoint;
    let Some(url) = &c.url else { return Ok(0) };
    let store = CheckpointStore::open(url, c.store_options())?;
    let Some((_, state)) = store.resume_point(c.verify, &dataset.manifest.fingerprint)? else {
        return Ok(0);
    };
    if state.step >= config.train.steps {
        return Err(LaunchError::AlreadyComplete {
            url: url.clone(),
            step: state.step,
        });
    }
    info!(step = state.step, url = %url, "resuming the job from its checkpoint");
    Ok(state.step)
}

/// One start of the job: a coordinator from `start_step` and `workers` fresh worker processes.
fn run_attempt(
    config: &Config,
    out: &Path,
    workers: usize,
    isoclr: &Path,
    dataset: Arc<Dataset>,
    start_step: u64,
    shutdown: &Shutdown,
) -> Result<CoordinatorOutcome, LaunchError> {
    let token = Token::generate();
    let mut options = CoordinatorOptions::new(config.clone(), dataset, workers, token.clone(), out.to_owned());
    options.start_step = start_step;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| LaunchError::Worker(format!("cannot start the coordinator's runtime: {e}")))?;
    let mut children: Vec<Child> = Vec::new();
    let result = runtime.block_on(async {
        let coordinator = Coordinator::bind(options).await?;
        let addr = coordinator.local_addr().to_string();
        let handle = coordinator.handle();
        crate::coord::watch_shutdown(shutdown.clone(), handle.clone());
        info!(%addr, workers, start_step, "coordinator listening; starting workers");
        for local_rank in 0..workers {
            match spawn_worker(isoclr, &addr, local_rank, &token) {
                Ok(child) => children.push(child),
                Err(e) => {
                    handle.abort(&e.to_string());
                    return Err(e);
                }
            }
        }
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        // A worker that exits with an error aborts the job at once instead of after a heartbeat timeout.
        let mut watched: Vec<Child> = std::mem::take(&mut children);
        let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = tokio::task::spawn_blocking(move || {
            let mut reported = vec![false; watched.len()];
            loop {
                if done_rx.try_recv().is_ok() {
                    return watched;
                }
                for (i, child) in watched.iter_mut().enumerate() {
                    if let Ok(Some(status)) = child.try_wait()
                        && !ended_well(status)
                        && !reported[i]
                    {
                        reported[i] = true;
                        let why = format!("worker process {i} (pid {}) exited with {status}", pids[i]);
                        error!("{why}");
                        handle.abort(&why);
                    }
                }
                std::thread::sleep(POLL);
            }
        });
        let served = coordinator.serve().await;
        let _ = done_tx.send(());
        children = watcher
            .await
            .map_err(|e| LaunchError::Worker(format!("worker watcher failed: {e}")))?;
        served.map_err(LaunchError::from)
    });
    // After a good end rank 0 may still be completing the final checkpoint; after a failure every worker
    // has been told ABORT and only needs to notice it.
    let grace = match &result {
        Ok(_) => crate::coord::stop_grace(config),
        Err(_) => Duration::from_secs_f64(config.dist.heartbeat_timeout_s),
    };
    let failed = wait_children(&mut children, grace);
    let outcome = result?;
    if let Some((i, status)) = failed.first() {
        return Err(LaunchError::Worker(match status {
            Some(status) => format!("worker process {i} exited with {status}"),
            None => format!("worker process {i} did not exit within {grace:?} and was killed"),
        }));
    }
    Ok(outcome)
}
