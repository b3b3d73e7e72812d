//! The training loop of one worker process: register with the coordinator, join the collective ring,
//! train on the shards it streams, report each step and obey its step-boundary decisions.
//!
//! The coordinator owns the dataset and the sampler; this loop owns the model. Batches arrive decoded and
//! encoded by the worker client's background thread, so the training thread never waits on the network in
//! steady state.
//!
//! Checkpoints: every rank holds the same model and optimiser state bit for bit (gradients are summed
//! before every update), so rank 0 alone writes a checkpoint when the coordinator answers CHECKPOINT,
//! SUSPEND or STOP; on resume rank 0 alone loads the step the coordinator names and broadcasts the model and
//! optimiser state to the others. A stop signal (SIGTERM,
//! SIGUSR2) only sets a flag that the next report carries to the coordinator, which suspends the whole job
//! at one step boundary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use tch::Device;
use tracing::{info, warn};

use super::checkpointing::{Checkpointer, Checkpointing};
use super::collective::{
    BackendFacts, WorkerCollective, choose_backend, devices_distinct, nccl_offer, registered_device, worker_device,
};
use super::step::Trainer;
use super::sync::WorkerSync;
use super::training_loop::{self, Components, Controller, StepSource};
use super::{Result, TrainError};
use crate::boundary::Action;
use crate::config::Config;
use crate::data::{PassLayout, StepBatch};
use crate::dist::tcp::{RingConfig, RingListener, TcpRing};
use crate::metrics::StepMetrics;
use crate::run_dir::RunDir;
use crate::shutdown::Shutdown;
use crate::worker::{ClientTls, Heartbeat, Registration, Rendezvous, Token, WorkerClient, WorkerError};

/// How a worker finds its coordinator and identifies itself.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The coordinator's `host:port`.
    pub coordinator: String,
    /// The job's secret.
    pub token: Token,
    /// TLS settings when the coordinator serves TLS.
    pub tls: Option<ClientTls>,
    /// Index of this worker on its host (the GPU it uses).
    pub local_rank: u32,
    /// A rank to ask for (e.g. Slurm's SLURM_PROCID); the coordinator assigns one otherwise.
    pub requested_rank: Option<u32>,
    /// Address to bind the collective ring listener (`IP:0` picks a port).
    pub ring_bind: SocketAddr,
    /// RPC timeout before the configuration is known.
    pub rpc_timeout: Duration,
    /// How long to wait for every worker to register.
    pub rendezvous_timeout: Duration,
}

fn setup(what: &str) -> impl FnOnce(String) -> TrainError + '_ {
    move |why| TrainError::Setup(format!("{what}: {why}"))
}

/// A failed call to the coordinator, named.
fn coordinator(call: &'static str) -> impl FnOnce(WorkerError) -> TrainError {
    move |source| TrainError::Coordinator { call, source }
}

/// The heartbeat's news of an abort, as the error that ends this worker.
fn aborted(e: WorkerError) -> TrainError {
    match e {
        WorkerError::Aborted { reason } => TrainError::Aborted { reason },
        other => TrainError::Coordinator {
            call: "heartbeat",
            source: other,
        },
    }
}

/// Runs one worker until the coordinator says stop (Ok, the model's path), suspends the job
/// ([`TrainError::Interrupted`] once rank 0's checkpoint is complete) or something fails (Err, after telling
/// the coordinator): a lost peer, an abort, a collective timeout.
///
/// A suspension requested of `shutdown` is carried by the next report to the coordinator, which suspends the
/// whole job at one step boundary.
pub fn run_worker(opts: WorkerOptions, shutdown: &Shutdown) -> Result<PathBuf> {
    let listener = TcpRing::bind(opts.ring_bind).map_err(|e| setup("ring listener")(e.to_string()))?;
    let ring_address = listener
        .local_addr()
        .map_err(|e| setup("ring listener")(e.to_string()))?
        .to_string();
    let client = WorkerClient::connect(&opts.coordinator, &opts.token, opts.tls.clone(), opts.rpc_timeout)
        .map_err(coordinator("connect"))?;
    let device_name = registered_device(opts.local_rank);
    let mut registration = Registration::this_process(opts.local_rank, &device_name, &ring_address);
    registration.requested_rank = opts.requested_rank;
    registration.nccl_unique_id_offer = nccl_offer(opts.local_rank);
    let rendezvous = client
        .register(&registration, opts.rendezvous_timeout)
        .map_err(coordinator("rendezvous"))?;
    let rank = rendezvous.rank;
    let config = rendezvous.config.clone();
    // Heart-beat from here on: joining the ring and the first broadcast can take longer than the timeout.
    let d = &config.dist;
    let heartbeat = client.start_heartbeat(
        rank,
        Duration::from_secs_f64(d.heartbeat_interval_s),
        Duration::from_secs_f64(d.heartbeat_timeout_s),
    );
    let result = train_as_rank(
        &client,
        &heartbeat,
        &rendezvous,
        &config,
        (listener, opts.local_rank),
        opts.token.expose().as_bytes(),
        shutdown,
    );
    let (status, reason) = match &result {
        Ok(_) => (0, "finished".to_owned()),
        Err(TrainError::Interrupted { step }) => (0, format!("suspended after step {step}")),
        Err(e) => (1, e.to_string()),
    };
    if let Err(e) = client.shutdown(rank, &reason, status) {
        warn!(rank, error = %e, "could not tell the coordinator this worker is leaving");
    }
    result
}

fn train_as_rank(
    client: &WorkerClient,
    heartbeat: &Heartbeat,
    rendezvous: &Rendezvous,
    config: &Config,
    ring: (RingListener, u32),
    token: &[u8],
    shutdown: &Shutdown,
) -> Result<PathBuf> {
    let rank = rendezvous.rank;
    let d = &config.dist;
    let secs = Duration::from_secs_f64;
    crate::device::use_threads(config.train.threads);
    let (mut comm, device) = join_collectives(rendezvous, config, ring, token)?;
    let mut trainer = Trainer::new(config, device, rendezvous.steps_per_epoch);
    let checkpointer = start_from_the_jobs_state(&mut trainer, rendezvous, config, &mut comm)?;
    let batches = client
        .batches(rank, rendezvous.start_step, PassLayout::of(config), d.prefetch)
        .map_err(coordinator("batch stream"))?;
    info!(
        rank,
        world_size = rendezvous.world_size,
        parameters = trainer.model.parameter_count(),
        "worker training"
    );
    let parts = Components {
        source: &mut CoordinatorStream {
            batches,
            heartbeat,
            timeout: secs(d.heartbeat_timeout_s),
        },
        sync: &mut WorkerSync::new(comm, secs(d.collective_timeout_s)),
        sink: &mut (),
        controller: &mut CoordinatorControl {
            client,
            heartbeat,
            rank,
            shutdown,
        },
        checkpointer: &checkpointer,
    };
    let model_dir = (rank == 0).then_some(rendezvous.out_dir.as_path());
    training_loop::run(&mut trainer, rendezvous.start_step, parts, model_dir)?;
    Ok(RunDir::new(&rendezvous.out_dir).model())
}

/// Meets the other ranks on the TCP ring (`listener`, this worker's `local_rank` on its host), then joins
/// the collective backend the configuration and the machine allow; returns it with this rank's device.
fn join_collectives(
    rendezvous: &Rendezvous,
    config: &Config,
    (listener, local_rank): (RingListener, u32),
    token: &[u8],
) -> Result<(WorkerCollective, Device)> {
    let d = &config.dist;
    let secs = Duration::from_secs_f64;
    let peers: Vec<SocketAddr> = (rendezvous.ring_addresses.iter())
        .map(|a| a.parse().map_err(|e| setup("ring address")(format!("{a}: {e}"))))
        .collect::<Result<_>>()?;
    // Generous while every rank starts up; tightened after the first step.
    let start_up = RingConfig {
        connect_timeout: secs(d.rendezvous_timeout_s),
        op_timeout: secs(d.rendezvous_timeout_s),
    };
    let rank = rendezvous.rank;
    let ring = TcpRing::connect(listener, rank, peers, token, start_up).map_err(|e| setup("ring")(e.to_string()))?;
    let device = worker_device(config.train.device, local_rank)?;
    let backend = choose_backend(BackendFacts {
        requested: d.backend,
        cuda: device.is_cuda(),
        world_size: rendezvous.world_size,
        nccl_built: cfg!(feature = "nccl"),
        unique_id: rendezvous.nccl_unique_id.as_ref().is_some_and(|id| !id.is_empty()),
        devices_distinct: devices_distinct(&rendezvous.peers),
    })?;
    let unique_id = rendezvous.nccl_unique_id.as_deref();
    let comm = WorkerCollective::join(backend, ring, unique_id, device, secs(d.rendezvous_timeout_s))
        .map_err(|e| setup("collectives")(e.to_string()))?;
    info!(rank, ?device, backend = comm.name(), "collectives joined");
    Ok((comm, device))
}

/// Puts every rank at the job's starting state: rank 0 alone reads the checkpoint of the step the
/// coordinator resumes from (see the module's documentation) and hands it to the others; returns the
/// checkpoints of this rank (rank 0 writes them, the others none).
fn start_from_the_jobs_state(
    trainer: &mut Trainer,
    rendezvous: &Rendezvous,
    config: &Config,
    comm: &mut WorkerCollective,
) -> Result<Checkpointer> {
    let (rank, step) = (rendezvous.rank, rendezvous.start_step);
    let resuming = step > 0;
    if resuming && config.checkpoint.url.is_none() {
        return Err(TrainError::Setup(format!(
            "the coordinator resumes at step {step} but checkpoint.url is not set"
        )));
    }
    let fingerprint = &rendezvous.dataset_fingerprint;
    let checkpoints = if rank == 0 { Checkpointing::open(config)? } else { None };
    if let Some(c) = checkpoints.as_ref().filter(|_| resuming) {
        c.resume_at(trainer, step, fingerprint)?;
    }
    trainer.broadcast_state(comm.collective(), resuming)?;
    if resuming && rank > 0 {
        info!(rank, step, "resumed with rank 0's state");
    }
    let (world_size, steps_per_epoch) = (rendezvous.world_size, rendezvous.steps_per_epoch);
    Ok(Checkpointer::new(checkpoints, fingerprint, world_size, steps_per_epoch))
}

/// The batches the coordinator streams to this rank, while its heartbeat says the job lives.
struct CoordinatorStream<'a> {
    batches: Receiver<crate::worker::Result<StepBatch>>,
    heartbeat: &'a Heartbeat,
    timeout: Duration,
}

impl StepSource for CoordinatorStream<'_> {
    fn next_batch(&mut self, step: u64) -> Result<StepBatch> {
        self.heartbeat.check().map_err(aborted)?;
        self.heartbeat.set_step(step);
        match self.batches.recv_timeout(self.timeout) {
            Ok(batch) => batch.map_err(coordinator("batch")),
            Err(RecvTimeoutError::Timeout) => Err(TrainError::NoBatch {
                step,
                why: format!("none within {} s", self.timeout.as_secs_f64()),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(TrainError::NoBatch {
                step,
                why: "the batch stream ended".into(),
            }),
        }
    }
}

/// Step boundaries decided by the coordinator for the whole job: every report carries this process's stop
/// signal, every answer is the same on every rank.
struct CoordinatorControl<'a> {
    client: &'a WorkerClient,
    heartbeat: &'a Heartbeat,
    rank: usize,
    shutdown: &'a Shutdown,
}

impl Controller for CoordinatorControl<'_> {
    fn decide(&mut self, metrics: &StepMetrics) -> Result<Action> {
        let stop_requested = self.shutdown.suspend_requested();
        // After an abort the coordinator may already be gone: the heartbeat knows the real reason.
        let control = match self.client.report(self.rank, metrics, stop_requested) {
            Ok(control) => control,
            Err(e) => {
                self.heartbeat.check().map_err(aborted)?;
                return Err(coordinator("report")(e));
            }
        };
        match control.action {
            Action::Abort => Err(TrainError::Aborted { reason: control.reason }),
            action => Ok(action),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abort_heard_by_the_heartbeat_is_an_abort_and_anything_else_names_the_call() {
        let abort = WorkerError::Aborted {
            reason: "rank 1 on node7 (pid 42) lost".into(),
        };
        match aborted(abort) {
            TrainError::Aborted { reason } => assert!(reason.contains("rank 1"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let silent = WorkerError::Timeout {
            call: "heartbeat",
            after: Duration::from_secs(3),
        };
        let error = aborted(silent);
        assert!(
            matches!(error, TrainError::Coordinator { call: "heartbeat", .. }),
            "{error:?}"
        );
        assert!(error.to_string().starts_with("heartbeat: "), "{error}");
    }
}
