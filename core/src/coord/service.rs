//! The gRPC service: each handler checks and updates the job's [`Job`] state under one short lock and maps
//! errors to status codes through [`CoordError::to_status`]. Batch streams plan their steps on tokio's
//! blocking pool and feed a channel of `dist.prefetch` messages, so planning never runs on the executor.
//!
//! The job token is checked by the interceptor in front of this service (see `server`): no handler here
//! runs for an unauthenticated call. Must not import tch, the model or train modules.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use isoclr_proto::v1::{
    Control, HeartbeatRequest, Peer, RegisterRequest, RegisterResponse, ShardMessage, ShutdownRequest,
    ShutdownResponse, StepReport, StreamBatchesRequest,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::{debug, info, warn};

use super::plan::Planner;
use super::state::{Decision, Job, Member};
use super::{CoordError, ErrorKind};
use crate::metrics::StepMetrics;

/// What every handler shares: the job state (with a change signal) and the job's fixed facts.
pub(super) struct Shared {
    job: Mutex<Job>,
    /// Bumped after every state change; rendezvous waiters, streams and `serve` watch it.
    pub(super) changed: watch::Sender<u64>,
    /// Completed metrics lines, to `serve`'s writer.
    pub(super) lines: mpsc::UnboundedSender<StepMetrics>,
    pub(super) planner: Planner,
    pub(super) facts: JobFacts,
}

/// The job's fixed facts, handed to workers at the rendezvous.
pub(super) struct JobFacts {
    pub(super) world_size: usize,
    pub(super) job_id: String,
    pub(super) config_toml: String,
    pub(super) out_dir: PathBuf,
    pub(super) start_step: u64,
    pub(super) end_step: u64,
    pub(super) prefetch: usize,
    pub(super) steps_per_epoch: u64,
    pub(super) dataset_fingerprint: String,
}

impl Shared {
    pub(super) fn new(job: Job, lines: mpsc::UnboundedSender<StepMetrics>, planner: Planner, facts: JobFacts) -> Self {
        Self {
            job: Mutex::new(job),
            changed: watch::Sender::new(0),
            lines,
            planner,
            facts,
        }
    }

    /// Runs `f` on the job under the lock, then signals a change.
    pub(super) fn with_job<R>(&self, f: impl FnOnce(&mut Job) -> R) -> R {
        let result = {
            let mut job = self.job.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut job)
        };
        self.changed.send_modify(|version| *version = version.wrapping_add(1));
        result
    }

    /// Reads the job under the lock without signalling.
    pub(super) fn read_job<R>(&self, f: impl FnOnce(&Job) -> R) -> R {
        let job = self.job.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&job)
    }

    /// Resolves with the failure's reason once the job has failed.
    async fn failed(&self, changes: &mut watch::Receiver<u64>) -> String {
        loop {
            if let Some(reason) = self.read_job(|job| job.failure_reason().map(str::to_owned)) {
                return reason;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

fn control(decision: Decision, step: u64) -> Control {
    Control {
        action: decision.action as i32,
        reason: decision.reason,
        step,
    }
}

fn to_usize(value: u32) -> usize {
    value as usize
}

/// The coordinator's gRPC service.
pub(super) struct Service {
    pub(super) shared: Arc<Shared>,
}

type ShardStream = Pin<Box<dyn Stream<Item = Result<ShardMessage, Status>> + Send>>;

#[tonic::async_trait]
impl isoclr_proto::Coordinator for Service {
    #[tracing::instrument(skip_all, fields(worker = %request.get_ref().host, pid = request.get_ref().pid))]
    async fn register(&self, request: Request<RegisterRequest>) -> Result<Response<RegisterResponse>, Status> {
        let r = request.into_inner();
        let member = Member {
            host: r.host,
            pid: r.pid,
            local_rank: r.local_rank,
            device: r.device,
            ring_address: r.ring_address,
            requested_rank: r.requested_rank.map(to_usize),
            nccl_offer: r.nccl_unique_id_offer,
        };
        let (host, pid) = (member.host.clone(), member.pid);
        let mut changes = self.shared.changed.subscribe();
        let id = self
            .shared
            .with_job(|job| job.register(member, Instant::now()))
            .map_err(|e| e.to_status())?;
        info!(worker = %host, pid, "worker registered");
        let assignment = loop {
            if let Some(answer) = self.shared.read_job(|job| job.assignment(id)) {
                break answer.map_err(|e| e.to_status())?;
            }
            if changes.changed().await.is_err() {
                return Err(isoclr_proto::status(
                    ErrorKind::Unavailable,
                    "coordinator shutting down",
                ));
            }
        };
        let f = &self.shared.facts;
        info!(rank = assignment.rank, worker = %host, pid, world_size = f.world_size, "rendezvous");
        let peers: Vec<Peer> = assignment
            .members
            .iter()
            .enumerate()
            .map(|(rank, m)| Peer {
                rank: rank as u32,
                host: m.host.clone(),
                pid: m.pid,
                local_rank: m.local_rank,
                device: m.device.clone(),
                ring_address: m.ring_address.clone(),
            })
            .collect();
        Ok(Response::new(RegisterResponse {
            rank: assignment.rank as u32,
            world_size: f.world_size as u32,
            ring_addresses: peers.iter().map(|p| p.ring_address.clone()).collect(),
            nccl_unique_id: assignment.nccl_id,
            job_id: f.job_id.clone(),
            config_toml: f.config_toml.clone(),
            out_dir: f.out_dir.display().to_string(),
            start_step: f.start_step,
            peers,
            steps_per_epoch: f.steps_per_epoch,
            dataset_fingerprint: f.dataset_fingerprint.clone(),
        }))
    }

    type StreamBatchesStream = ShardStream;

    #[tracing::instrument(skip_all, fields(rank = request.get_ref().rank))]
    async fn stream_batches(
        &self,
        request: Request<StreamBatchesRequest>,
    ) -> Result<Response<Self::StreamBatchesStream>, Status> {
        let StreamBatchesRequest { rank, from_step } = request.into_inner();
        let rank = rank as usize;
        self.shared
            .with_job(|job| job.stream_started(rank, from_step, Instant::now()))
            .map_err(|e| e.to_status())?;
        info!(rank, from_step, "batch stream opened");
        let (sender, receiver) = mpsc::channel(self.shared.facts.prefetch.max(1));
        tokio::spawn(stream_shards(self.shared.clone(), rank, from_step, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(rank = request.get_ref().rank))]
    async fn heartbeat(&self, request: Request<HeartbeatRequest>) -> Result<Response<Control>, Status> {
        let HeartbeatRequest { rank, step } = request.into_inner();
        let decision = self
            .shared
            .with_job(|job| job.heartbeat(rank as usize, Instant::now()))
            .map_err(|e| e.to_status())?;
        Ok(Response::new(control(decision, step)))
    }

    #[tracing::instrument(level = "debug", skip_all, fields(rank = request.get_ref().rank, step = request.get_ref().step))]
    async fn report(&self, request: Request<StepReport>) -> Result<Response<Control>, Status> {
        let report = request.into_inner();
        let (rank, step) = (report.rank, report.step);
        let (decision, lines) = self
            .shared
            .with_job(|job| job.report(report, Instant::now()))
            .map_err(|e| e.to_status())?;
        debug!(rank, step, action = %decision.action, "report");
        for line in lines {
            // `serve` owns the receiver for the whole job; after it returns nobody needs the lines.
            let _ = self.shared.lines.send(line);
        }
        Ok(Response::new(control(decision, step)))
    }

    #[tracing::instrument(skip_all, fields(rank = request.get_ref().rank))]
    async fn shutdown(&self, request: Request<ShutdownRequest>) -> Result<Response<ShutdownResponse>, Status> {
        let ShutdownRequest {
            rank,
            reason,
            exit_status,
        } = request.into_inner();
        let rank = rank as usize;
        self.shared
            .with_job(|job| job.shutdown(rank, exit_status, &reason, Instant::now()))
            .map_err(|e| e.to_status())?;
        if exit_status == 0 {
            info!(rank, %reason, "worker shut down");
        } else {
            warn!(rank, exit_status, %reason, "worker failed");
        }
        Ok(Response::new(ShutdownResponse {}))
    }
}

/// Feeds `rank`'s stream: plans each step on the blocking pool and queues it, at most `dist.prefetch`
/// messages beyond what the transport has taken. Ends after the last step; on a failure of the job it sends
/// ABORTED; when the worker goes away before the end it reports the broken stream (which fails the job
/// unless the rank was told to stop or suspend).
async fn stream_shards(
    shared: Arc<Shared>,
    rank: usize,
    from_step: u64,
    sender: mpsc::Sender<Result<ShardMessage, Status>>,
) {
    let mut changes = shared.changed.subscribe();
    for step in from_step..shared.facts.end_step {
        let planner = shared.planner.clone();
        let planned = tokio::task::spawn_blocking(move || planner.plan(step, rank));
        let message = tokio::select! {
            planned = planned => match planned {
                Ok(Ok(message)) => message,
                Ok(Err(error)) => {
                    let error = CoordError::Data(error);
                    let status = error.to_status();
                    shared.with_job(|job| job.abort(error));
                    let _ = sender.try_send(Err(status));
                    return;
                }
                Err(join) => {
                    let error = CoordError::Aborted { reason: format!("planning step {step} for rank {rank} failed: {join}") };
                    let _ = sender.try_send(Err(error.to_status()));
                    shared.with_job(|job| job.abort(error));
                    return;
                }
            },
            reason = shared.failed(&mut changes) => {
                let _ = sender.try_send(Err(isoclr_proto::status(ErrorKind::Aborted, reason)));
                return;
            }
        };
        tokio::select! {
            sent = sender.send(Ok(message)) => if sent.is_err() {
                shared.with_job(|job| job.stream_broken(rank, step));
                return;
            },
            reason = shared.failed(&mut changes) => {
                let _ = sender.try_send(Err(isoclr_proto::status(ErrorKind::Aborted, reason)));
                return;
            }
        }
    }
    debug!(rank, "batch stream complete");
}
