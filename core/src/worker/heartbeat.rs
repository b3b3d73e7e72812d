//! The background heartbeat: a task on the client's runtime that heart-beats every interval and raises
//! a shared [`AbortSignal`] when the coordinator answers ABORT, or has not answered for the heartbeat
//! timeout (the coordinator is gone). The training thread polls the signal between steps.
//!
//! Must not import tch, the model or train modules, or the coordinator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use isoclr_proto::v1::{Action, HeartbeatRequest};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{ErrorKind, Result, WorkerClient, WorkerError};

/// Raised once the job is aborted (or the coordinator is lost), with the reason. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AbortSignal {
    raised: Arc<AtomicBool>,
    reason: Arc<Mutex<Option<String>>>,
}

impl AbortSignal {
    /// Whether the job has been aborted.
    pub fn is_set(&self) -> bool {
        self.raised.load(Ordering::Acquire)
    }

    /// Why, once raised.
    pub fn reason(&self) -> Option<String> {
        self.reason.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Raises the signal; the first reason is kept.
    pub fn raise(&self, reason: impl Into<String>) {
        let mut slot = self.reason.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(reason.into());
        }
        self.raised.store(true, Ordering::Release);
    }

    /// `Err(WorkerError::Aborted)` with the reason once raised.
    pub fn check(&self) -> Result<()> {
        match self.is_set() {
            false => Ok(()),
            true => Err(WorkerError::Aborted {
                reason: self.reason().unwrap_or_default(),
            }),
        }
    }
}

/// A running heartbeat loop; dropping it stops the loop.
pub struct Heartbeat {
    step: Arc<AtomicU64>,
    signal: AbortSignal,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Tells the coordinator (with the next heartbeat) which step this rank is on.
    pub fn set_step(&self, step: u64) {
        self.step.store(step, Ordering::Relaxed);
    }

    /// The shared abort signal.
    pub fn signal(&self) -> AbortSignal {
        self.signal.clone()
    }

    /// `Err(WorkerError::Aborted)` once the job was aborted or the coordinator lost.
    pub fn check(&self) -> Result<()> {
        self.signal.check()
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts the loop on the client's runtime.
pub(super) fn start(client: &WorkerClient, rank: usize, interval: Duration, timeout: Duration) -> Heartbeat {
    let step = Arc::new(AtomicU64::new(0));
    let signal = AbortSignal::default();
    let task = client.runtime.spawn(beat(
        client.client.clone(),
        client.addr.clone(),
        rank,
        interval,
        timeout,
        client.rpc_timeout.min(timeout),
        step.clone(),
        signal.clone(),
    ));
    Heartbeat { step, signal, task }
}

#[allow(clippy::too_many_arguments)]
async fn beat(
    mut client: super::Client,
    addr: String,
    rank: usize,
    interval: Duration,
    timeout: Duration,
    call_timeout: Duration,
    step: Arc<AtomicU64>,
    signal: AbortSignal,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_answer = Instant::now();
    let mut last_error = String::from("none");
    loop {
        ticker.tick().await;
        let mut request = tonic::Request::new(HeartbeatRequest {
            rank: rank as u32,
            step: step.load(Ordering::Relaxed),
        });
        request.set_timeout(call_timeout);
        match tokio::time::timeout(call_timeout, client.heartbeat(request)).await {
            Ok(Ok(response)) => {
                let control = response.into_inner();
                last_answer = Instant::now();
                if control.action == Action::Abort as i32 {
                    warn!(rank, reason = %control.reason, "the coordinator aborted the job");
                    signal.raise(control.reason);
                    return;
                }
            }
            Ok(Err(status)) if ErrorKind::of(&status) == ErrorKind::Aborted => {
                signal.raise(status.message());
                return;
            }
            Ok(Err(status)) => last_error = format!("{}: {}", status.code(), status.message()),
            Err(_) => last_error = format!("no answer within {call_timeout:?}"),
        }
        let silent = last_answer.elapsed();
        if silent > timeout {
            let reason = format!(
                "lost the coordinator at {addr}: no heartbeat answered for {:.1} s (last error: {last_error})",
                silent.as_secs_f64()
            );
            warn!(rank, %reason, "aborting");
            signal.raise(reason);
            return;
        }
        if last_answer.elapsed() > interval {
            debug!(rank, error = %last_error, "heartbeat not answered");
        }
    }
}
