//! Single-node distributed mode (`isoclr train --workers N`): a coordinator in this process and N worker
//! processes on this machine, supervised so that a failure anywhere ends the whole job within a bound.
//!
//! Knows processes and the coordinator, not tensors: the workers are `isoclr worker` child processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info, warn};

use crate::config::Config;
use crate::coord::{Coordinator, CoordinatorOptions, CoordinatorOutcome};
use crate::worker::Token;

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
        .filter(|(_, s)| !s.is_some_and(|s| s.success()))
        .collect()
}

/// Runs a job of `workers` worker processes on this machine, with outputs in `out`; `isoclr` is the binary
/// the workers run. Returns once every process has ended.
pub fn run_local_job(
    config: &Config,
    out: &Path,
    workers: usize,
    isoclr: PathBuf,
) -> Result<CoordinatorOutcome, LaunchError> {
    std::fs::create_dir_all(out).map_err(|e| LaunchError::Worker(format!("{}: {e}", out.display())))?;
    let config_path = out.join("config.toml");
    std::fs::write(&config_path, config.to_toml())
        .map_err(|e| LaunchError::Worker(format!("{}: {e}", config_path.display())))?;
    let dataset = Arc::new(crate::data::resolve_dataset(&config.data, out)?);
    let token = Token::generate();
    let options = CoordinatorOptions::new(config.clone(), dataset, workers, token.clone(), out.to_owned());
    let grace = Duration::from_secs_f64(config.dist.heartbeat_timeout_s);
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
        info!(%addr, workers, "coordinator listening; starting workers");
        for local_rank in 0..workers {
            match spawn_worker(&isoclr, &addr, local_rank, &token) {
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
                        && !status.success()
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
        let served = coordinator.serve(shutdown_signal()).await;
        let _ = done_tx.send(());
        children = watcher
            .await
            .map_err(|e| LaunchError::Worker(format!("worker watcher failed: {e}")))?;
        served.map_err(LaunchError::from)
    });
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

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        warn!("cannot watch SIGTERM");
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
}
