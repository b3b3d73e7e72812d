//! Binding, serving and ending: [`Coordinator::bind`] listens on `dist.bind` (port 0 picks a free port;
//! the bound address is logged and written to the address file), with TLS when `dist.tls_cert`/`tls_key`
//! are set and the job-token interceptor in front of every RPC. [`Coordinator::serve`] runs the job to its
//! end — every worker shut down after STOP — or to its first failure, which every worker hears as ABORT
//! before `serve` returns the error naming the worker. Both ends are bounded in time.
//!
//! Must not import tch, the model or train modules.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use isoclr_proto::{CoordinatorServer, MAX_MESSAGE_BYTES, ServerAuth};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use super::metrics::{Metrics, MetricsSettings};
use super::plan::Planner;
use super::service::{JobFacts, Service, Shared};
use super::state::{Job, Limits};
use super::{CoordError, CoordinatorOptions, CoordinatorOutcome, Result};
use crate::metrics::StepMetrics;
use crate::shutdown::Shutdown;

/// How long `serve` waits for the gRPC server to close its connections after the job ended.
const SERVER_CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// A coordinator listening for its workers; [`Coordinator::serve`] runs the job.
pub struct Coordinator {
    shared: Arc<Shared>,
    /// Taken when the server starts.
    listener: Option<TcpListener>,
    addr: SocketAddr,
    tls: Option<ServerTlsConfig>,
    metrics: Metrics,
    lines: mpsc::UnboundedReceiver<StepMetrics>,
    token: isoclr_proto::Token,
    heartbeat_interval: Duration,
    heartbeat_timeout: Duration,
    /// How long ranks told STOP or SUSPEND may take to shut down: rank 0 first completes its checkpoint.
    stop_grace: Duration,
}

/// Controls a running coordinator from outside the gRPC API. Cheap to clone.
#[derive(Clone)]
pub struct CoordinatorHandle {
    shared: Arc<Shared>,
}

impl CoordinatorHandle {
    /// Asks for a checkpoint: the next step boundary not yet decided answers CHECKPOINT to every rank.
    pub fn request_checkpoint(&self) {
        self.shared.with_job(|job| job.request_checkpoint());
    }

    /// Asks to suspend the job: the next step boundary not yet decided answers SUSPEND to every rank, which
    /// checkpoint and shut down, and `serve` returns an outcome with `suspended_after` set. Before the
    /// rendezvous there is nothing to save: the job ends at once with [`CoordError::Interrupted`].
    pub fn request_suspend(&self) {
        self.shared.with_job(|job| {
            if job.rendezvous_complete() {
                job.request_suspend();
            } else {
                job.abort(CoordError::Interrupted);
            }
        });
    }

    /// Cancels the job for `signal` (an operator's SIGINT): every worker hears ABORT, no checkpoint is
    /// taken, and `serve` returns [`CoordError::Cancelled`].
    pub fn cancel(&self, signal: &str) {
        let signal = signal.to_owned();
        self.shared.with_job(|job| job.abort(CoordError::Cancelled { signal }));
    }

    /// Aborts the job: every worker's next heartbeat or report answers ABORT with `reason`.
    pub fn abort(&self, reason: &str) {
        let reason = reason.to_owned();
        self.shared.with_job(|job| job.abort(CoordError::Aborted { reason }));
    }
}

fn seconds(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::MAX)
}

/// How long ranks told STOP or SUSPEND may take to shut down: a heartbeat timeout, plus the wait for the
/// final checkpoint when checkpoints are on.
pub fn stop_grace(config: &crate::config::Config) -> Duration {
    let checkpoint = if config.checkpoint.enabled() {
        config.checkpoint.wait_timeout()
    } else {
        Duration::ZERO
    };
    seconds(config.dist.heartbeat_timeout_s) + checkpoint
}

/// Reads the TLS identity named by the configuration.
fn server_tls(cert: &Path, key: &Path) -> Result<ServerTlsConfig> {
    let read = |path: &Path| std::fs::read(path).map_err(|e| CoordError::Tls(format!("{}: {e}", path.display())));
    let identity = Identity::from_pem(read(cert)?, read(key)?);
    Ok(ServerTlsConfig::new().identity(identity))
}

/// Writes `addr` to `path` atomically (a temporary file renamed into place), so a reader never sees half.
fn write_addr_file(path: &Path, addr: SocketAddr) -> Result<()> {
    let io = |source| CoordError::Io {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{addr}\n")).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Coordinator {
    /// Checks the options and listens on `dist.bind`; the rendezvous timeout runs from here.
    ///
    /// Errors: a batch size that does not split into `world_size` shards or fit the dataset
    /// ([`CoordError::Data`]), an unusable address ([`CoordError::Bind`]), unreadable TLS files
    /// ([`CoordError::Tls`]), an unwritable output directory or address file ([`CoordError::Io`]), no
    /// workers or no step left to run ([`CoordError::InvalidRequest`]).
    pub async fn bind(opts: CoordinatorOptions) -> Result<Self> {
        let dist = &opts.config.dist;
        let train = &opts.config.train;
        if opts.world_size == 0 {
            return Err(CoordError::InvalidRequest("a job needs at least one worker".into()));
        }
        if opts.start_step >= train.steps {
            return Err(CoordError::InvalidRequest(format!(
                "start step {} is not before train.steps = {}",
                opts.start_step, train.steps
            )));
        }
        let planner = Planner::new(&opts.config, opts.dataset.clone(), opts.world_size)?;
        let bind_error = |source| CoordError::Bind {
            addr: dist.bind.clone(),
            source,
        };
        let listener = TcpListener::bind(dist.bind.as_str()).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let tls = match (&dist.tls_cert, &dist.tls_key) {
            (Some(cert), Some(key)) => Some(server_tls(cert, key)?),
            _ => None,
        };
        let metrics = Metrics::create(MetricsSettings {
            out_dir: &opts.out_dir,
            progress: opts.progress,
            start_step: opts.start_step,
            end_step: train.steps,
            log_every: train.log_every,
            steps_per_epoch: planner.sampler().steps_per_epoch(),
            world_size: opts.world_size,
            sequences_per_step: 2 * train.batch_size as u64,
        })?;
        let job = Job::new(job_limits(&opts), opts.nccl_unique_id.clone(), Instant::now());
        let (line_sender, lines) = mpsc::unbounded_channel();
        let facts = job_facts(&opts, &planner);
        let shared = Arc::new(Shared::new(job, line_sender, planner, facts));
        if let Some(path) = &opts.addr_file {
            write_addr_file(path, addr)?;
        }
        info!(
            %addr,
            tls = tls.is_some(),
            job = %opts.job_id,
            world_size = opts.world_size,
            steps = train.steps,
            "coordinator listening"
        );
        Ok(Self {
            shared,
            listener: Some(listener),
            addr,
            tls,
            metrics,
            lines,
            token: opts.token,
            heartbeat_interval: seconds(dist.heartbeat_interval_s),
            heartbeat_timeout: seconds(dist.heartbeat_timeout_s),
            stop_grace: stop_grace(&opts.config),
        })
    }

    /// The address the coordinator listens on (with the port chosen when `dist.bind` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle to request checkpoints, suspend or abort the job.
    pub fn handle(&self) -> CoordinatorHandle {
        CoordinatorHandle {
            shared: self.shared.clone(),
        }
    }

    /// Serves the job until every worker has shut down after the last step or a suspension (`Ok`), or the
    /// job fails. [`CoordinatorHandle`] (and [`watch_shutdown`]) suspend or abort it from outside.
    ///
    /// After a failure every remaining worker is told
    /// ABORT (at most about two heartbeat intervals) before this returns the failure:
    /// [`CoordError::WorkerLost`] or [`CoordError::WorkerFailed`] naming the worker's rank, host and pid,
    /// [`CoordError::RendezvousTimeout`], [`CoordError::Aborted`], [`CoordError::Interrupted`]; also
    /// [`CoordError::Io`] when `metrics.jsonl` cannot be written and [`CoordError::Transport`] when the
    /// server fails.
    pub async fn serve(mut self) -> Result<CoordinatorOutcome> {
        let started = Instant::now();
        let (mut server, stop_server) = self.start_server()?;
        let server_ended = self.supervise(&mut server).await;
        while let Ok(line) = self.lines.try_recv() {
            if let Err(error) = self.metrics.write(&line) {
                warn!(%error, "cannot write the last metrics lines");
            }
        }
        self.metrics.finish();
        let _ = stop_server.send(());
        if !server_ended && tokio::time::timeout(SERVER_CLOSE_TIMEOUT, &mut server).await.is_err() {
            server.abort();
        }
        let (failure, steps, suspended_after) = self
            .shared
            .with_job(|job| (job.take_failure(), job.completed_steps(), job.suspended_after()));
        if let Some(error) = failure {
            warn!(%error, "job failed");
            return Err(error);
        }
        let outcome = CoordinatorOutcome {
            addr: self.addr,
            steps,
            elapsed: started.elapsed(),
            metrics_path: self.metrics.path().to_owned(),
            seq_per_s: self.metrics.seq_per_s(),
            suspended_after,
        };
        match suspended_after {
            Some(step) => info!(step, "job suspended; it resumes from the checkpoint of this step"),
            None => info!(steps, seq_per_s = outcome.seq_per_s, "job finished"),
        }
        Ok(outcome)
    }

    /// Starts the gRPC server on the bound listener; returns its task and the sender that stops it.
    fn start_server(&mut self) -> Result<(ServerTask, oneshot::Sender<()>)> {
        let service = CoordinatorServer::new(Service {
            shared: self.shared.clone(),
        })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let service = tonic::service::interceptor::InterceptedService::new(service, ServerAuth::new(&self.token));
        let mut builder = Server::builder().tcp_nodelay(true);
        if let Some(tls) = self.tls.take() {
            builder = builder.tls_config(tls).map_err(|e| CoordError::Tls(e.to_string()))?;
        }
        let (stop_server, server_stopped) = oneshot::channel::<()>();
        let listener = self
            .listener
            .take()
            .ok_or_else(|| CoordError::Transport("the job is served once".into()))?;
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let server = tokio::spawn(
            builder
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = server_stopped.await;
                }),
        );
        Ok((server, stop_server))
    }

    /// Writes metrics lines as they come and checks deadlines until the job is finished, has failed (and
    /// its workers were told, or the grace ran out) or every rank stopped and the grace for their shutdown
    /// ran out. Returns whether the server itself ended.
    async fn supervise(&mut self, server: &mut ServerTask) -> bool {
        let tick = (self.heartbeat_interval / 2).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = self.shared.changed.subscribe();
        let (mut failed_at, mut stopped_at): (Option<Instant>, Option<Instant>) = (None, None);
        let abort_grace = (2 * self.heartbeat_interval + Duration::from_secs(1)).min(self.heartbeat_timeout);
        let mut server_ended = false;
        loop {
            tokio::select! {
                Some(line) = self.lines.recv() => {
                    if let Err(error) = self.metrics.write(&line) {
                        self.shared.with_job(|job| job.abort(error));
                    }
                }
                _ = ticker.tick() => {
                    if self.shared.with_job(|job| job.check_deadlines(Instant::now())) {
                        let reason = self.shared.read_job(|job| job.failure_reason().map(str::to_owned));
                        warn!(reason = reason.as_deref().unwrap_or(""), "job failed");
                    }
                }
                _ = changes.changed() => {}
                result = &mut *server, if !server_ended => {
                    let error = match result {
                        Ok(Ok(())) => "the gRPC server stopped".to_owned(),
                        Ok(Err(e)) => e.to_string(),
                        Err(e) => e.to_string(),
                    };
                    server_ended = true;
                    self.shared.with_job(|job| job.abort(CoordError::Transport(error)));
                }
            }
            let (finished, failed, delivered, all_stopped) = self.shared.read_job(|job| {
                let failed = job.failure_reason().is_some();
                (job.finished(), failed, job.abort_delivered(), job.all_stopped())
            });
            let now = Instant::now();
            if finished {
                return server_ended;
            }
            if failed {
                let since = *failed_at.get_or_insert(now);
                if delivered || now.duration_since(since) >= abort_grace || server_ended {
                    return server_ended;
                }
            } else if all_stopped {
                let since = *stopped_at.get_or_insert(now);
                if now.duration_since(since) >= self.stop_grace {
                    let running = self.shared.read_job(|job| job.ranks_still_running());
                    warn!(?running, "the job is done but these ranks never shut down");
                    return server_ended;
                }
            }
        }
    }
}

/// The gRPC server's task.
type ServerTask = tokio::task::JoinHandle<std::result::Result<(), tonic::transport::Error>>;

/// The limits the job's state machine enforces.
fn job_limits(opts: &CoordinatorOptions) -> Limits {
    let (dist, checkpoint) = (&opts.config.dist, &opts.config.checkpoint);
    Limits {
        world_size: opts.world_size,
        start_step: opts.start_step,
        end_step: opts.config.train.steps,
        rendezvous_timeout: seconds(dist.rendezvous_timeout_s),
        heartbeat_timeout: seconds(dist.heartbeat_timeout_s),
        checkpoint_every: checkpoint.enabled().then_some(checkpoint.every_steps),
    }
}

/// What every worker learns of the job at the rendezvous.
fn job_facts(opts: &CoordinatorOptions, planner: &Planner) -> JobFacts {
    JobFacts {
        world_size: opts.world_size,
        job_id: opts.job_id.clone(),
        config_toml: opts.config.to_toml(),
        out_dir: opts.out_dir.clone(),
        start_step: opts.start_step,
        end_step: opts.config.train.steps,
        prefetch: opts.config.dist.prefetch,
        steps_per_epoch: planner.sampler().steps_per_epoch(),
        dataset_fingerprint: opts.dataset.manifest.fingerprint.clone(),
    }
}

/// Turns the process's stop requests into decisions for the job, for as long as the runtime runs: a
/// suspension (SIGTERM, SIGUSR2) suspends it at the next step boundary with a checkpoint; a cancellation
/// (SIGINT) aborts it. Must be called within a tokio runtime.
pub fn watch_shutdown(shutdown: Shutdown, handle: CoordinatorHandle) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SHUTDOWN_POLL);
        loop {
            tick.tick().await;
            if shutdown.take_cancel() {
                warn!("cancelling the job (SIGINT)");
                handle.cancel("SIGINT");
            }
            if shutdown.take_suspend() {
                warn!("suspending the job at the next step boundary, with a checkpoint");
                handle.request_suspend();
            }
        }
    });
}

/// How often [`watch_shutdown`] looks at the requests: short against a step, long against a poll's cost.
const SHUTDOWN_POLL: Duration = Duration::from_millis(50);

/// Runs a whole job on a runtime of its own (for the `isoclr coordinator` process): binds, serves, and
/// suspends or aborts the job on the requests of `shutdown` ([`watch_shutdown`]). Same errors as
/// [`Coordinator::bind`] and [`Coordinator::serve`].
pub fn run_coordinator(opts: CoordinatorOptions, shutdown: Shutdown) -> Result<CoordinatorOutcome> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("isoclr-coordinator")
        .build()
        .map_err(|e| CoordError::Transport(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(async {
        let coordinator = Coordinator::bind(opts).await?;
        watch_shutdown(shutdown, coordinator.handle());
        coordinator.serve().await
    })
}
