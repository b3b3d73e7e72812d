//! The client side of the coordinator's API, for worker processes: connect with the job token (and TLS),
//! register and learn the rendezvous, receive ready [`StepBatch`]es that a background thread decodes,
//! validates and encodes off the training thread, report each step and get the step boundary's decision,
//! heart-beat in the background, and shut down.
//!
//! The API is synchronous (the training thread is): [`WorkerClient`] owns its tokio runtime. Every RPC has
//! a timeout. Must not import tch, the model or train modules, or the coordinator ([`wire`] is shared with it).

mod heartbeat;
mod stream;
pub mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use isoclr_proto::v1::{HeartbeatRequest, RegisterRequest, ShutdownRequest, StepReport};
use isoclr_proto::{ClientAuth, CoordinatorClient};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tracing::debug;

pub use heartbeat::{AbortSignal, Heartbeat};
pub use isoclr_proto::{ErrorKind, TOKEN_ENV, Token, TokenError};
pub use wire::WireError;

pub use crate::boundary::Action;
use crate::config::{Config, DistConfig};
use crate::data::batch::Shard;
use crate::data::{PassLayout, StepBatch};
use crate::metrics::StepMetrics;

/// Errors of the worker client. [`WorkerError::kind`] gives the kind to match on.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The coordinator could not be reached within the RPC timeout.
    #[error("cannot reach the coordinator at {addr}: {why}")]
    Connect {
        /// The coordinator's address.
        addr: String,
        /// The last error.
        why: String,
    },
    /// A call was answered with an error status.
    #[error("{call}: {kind}: {message}")]
    Rpc {
        /// The RPC.
        call: &'static str,
        /// The status code's kind.
        kind: ErrorKind,
        /// The coordinator's message.
        message: String,
    },
    /// A call got no answer within its timeout.
    #[error("{call}: no answer within {after:?}")]
    Timeout {
        /// The RPC.
        call: &'static str,
        /// The timeout.
        after: Duration,
    },
    /// The job was aborted; the reason names the worker at fault.
    #[error("job aborted: {reason}")]
    Aborted {
        /// Why (from the coordinator).
        reason: String,
    },
    /// A shard message that does not describe a valid shard.
    #[error(transparent)]
    Malformed(#[from] WireError),
    /// TLS settings unusable (unreadable CA certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The configuration the coordinator sent does not parse or validate.
    #[error("configuration from the coordinator: {0}")]
    Config(String),
    /// The token is unusable.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The client's runtime or background thread could not start.
    #[error("worker runtime: {0}")]
    Runtime(String),
}

impl WorkerError {
    /// The kind callers match on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkerError::Connect { .. } => ErrorKind::Unavailable,
            WorkerError::Rpc { kind, .. } => *kind,
            WorkerError::Timeout { .. } => ErrorKind::Timeout,
            WorkerError::Aborted { .. } => ErrorKind::Aborted,
            WorkerError::Token(_) => ErrorKind::Unauthenticated,
            WorkerError::Malformed(_) | WorkerError::Tls(_) | WorkerError::Config(_) | WorkerError::Runtime(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// The error of a failed call: ABORTED becomes [`WorkerError::Aborted`] with the coordinator's reason.
    pub(crate) fn from_status(call: &'static str, status: tonic::Status) -> Self {
        match ErrorKind::of(&status) {
            ErrorKind::Aborted => WorkerError::Aborted {
                reason: status.message().to_owned(),
            },
            kind => WorkerError::Rpc {
                call,
                kind,
                message: status.message().to_owned(),
            },
        }
    }
}

/// Result alias of the worker client.
pub type Result<T, E = WorkerError> = std::result::Result<T, E>;

/// TLS settings of a worker: the CA certificate that signed the coordinator's, and the name to check.
#[derive(Debug, Clone)]
pub struct ClientTls {
    /// PEM CA certificate (or the coordinator's self-signed certificate itself).
    pub ca_pem: Vec<u8>,
    /// Name the coordinator's certificate must carry (a DNS name or an IP address).
    pub domain: String,
}

impl ClientTls {
    /// TLS settings from `[dist]`: `tls_ca`, else `tls_cert`, checked against the host of `addr`. `None`
    /// when neither is set (plain HTTP/2). Errors when the file cannot be read.
    pub fn from_config(dist: &DistConfig, addr: &str) -> Result<Option<Self>> {
        let Some(path) = dist.tls_ca.as_ref().or(dist.tls_cert.as_ref()) else {
            return Ok(None);
        };
        let ca_pem = std::fs::read(path).map_err(|e| WorkerError::Tls(format!("{}: {e}", path.display())))?;
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        let domain = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        Ok(Some(Self { ca_pem, domain }))
    }
}

/// What a worker tells the coordinator about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registration {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Index among the workers on this host (the GPU index).
    pub local_rank: u32,
    /// Device it trains on (`cuda:0`, `cpu`).
    pub device: String,
    /// `host:port` of its ring collective listener, or empty.
    pub ring_address: String,
    /// A rank to ask for (e.g. from `SLURM_PROCID`).
    pub requested_rank: Option<u32>,
    /// An NCCL unique id it can offer (rank 0's offer is handed to all).
    pub nccl_unique_id_offer: Option<Vec<u8>>,
}

/// This machine's host name (from the kernel, else `HOSTNAME`, else `unknown`).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

impl Registration {
    /// This process: its host name and pid, with the given local rank, device and ring address.
    pub fn this_process(local_rank: u32, device: &str, ring_address: &str) -> Self {
        Self {
            host: host_name(),
            pid: std::process::id(),
            local_rank,
            device: device.to_owned(),
            ring_address: ring_address.to_owned(),
            requested_rank: None,
            nccl_unique_id_offer: None,
        }
    }
}

/// One member of the job as the rendezvous describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its rank.
    pub rank: usize,
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Index among the workers of its host.
    pub local_rank: u32,
    /// Device.
    pub device: String,
    /// Ring collective address, or empty.
    pub ring_address: String,
}

/// What a worker learns when every worker has registered.
#[derive(Debug, Clone)]
pub struct Rendezvous {
    /// This worker's rank.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
    /// Every rank's ring address, in rank order.
    pub ring_addresses: Vec<String>,
    /// The NCCL unique id to use, when anyone had one.
    pub nccl_unique_id: Option<Vec<u8>>,
    /// The job's id.
    pub job_id: String,
    /// The job's configuration, parsed and validated.
    pub config: Config,
    /// The same configuration as the TOML text the coordinator sent.
    pub config_toml: String,
    /// The job's output directory.
    pub out_dir: PathBuf,
    /// First step to train.
    pub start_step: u64,
    /// Every member, in rank order.
    pub peers: Vec<Peer>,
    /// Whole global batches per epoch of the coordinator's dataset (workers have no dataset to count).
    pub steps_per_epoch: u64,
    /// Fingerprint of the coordinator's dataset (checkpoints record it).
    pub dataset_fingerprint: String,
}

/// The local address this host uses to reach `coordinator` (`host:port`), so that ring peers, which reach
/// the coordinator too, can reach this worker.
pub fn local_ip_towards(coordinator: &str) -> Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let failed = |why: String| WorkerError::Connect {
        addr: coordinator.to_owned(),
        why,
    };
    let target = (coordinator.to_socket_addrs())
        .map_err(|e| failed(format!("cannot resolve the address: {e}")))?
        .next()
        .ok_or_else(|| failed("the address resolves to nothing".into()))?;
    // A UDP "connection" sends nothing; it only asks the kernel which source address it would route from.
    let any = if target.is_ipv4() { "0.0.0.0" } else { "::" };
    let socket = std::net::UdpSocket::bind((any, 0)).map_err(|e| failed(format!("no local socket: {e}")))?;
    socket.connect(target).map_err(|e| failed(format!("no route: {e}")))?;
    let local = socket
        .local_addr()
        .map_err(|e| failed(format!("no local address: {e}")))?;
    Ok(local.ip())
}

/// The coordinator's answer at a step boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    /// What to do.
    pub action: Action,
    /// Why (names the worker at fault for ABORT).
    pub reason: String,
    /// The step the decision is for.
    pub step: u64,
}

impl Control {
    fn from_message(call: &'static str, message: isoclr_proto::v1::Control) -> Result<Self> {
        use isoclr_proto::v1::Action as Wire;
        let action = match Wire::try_from(message.action) {
            Ok(Wire::Continue) => Action::Continue,
            Ok(Wire::Checkpoint) => Action::Checkpoint,
            Ok(Wire::Stop) => Action::Stop,
            Ok(Wire::Suspend) => Action::Suspend,
            Ok(Wire::Abort) => Action::Abort,
            Ok(Wire::Unspecified) | Err(_) => {
                return Err(WorkerError::Rpc {
                    call,
                    kind: ErrorKind::Internal,
                    message: format!("unknown action {}", message.action),
                });
            }
        };
        Ok(Self {
            action,
            reason: message.reason,
            step: message.step,
        })
    }
}

pub(crate) type Client = CoordinatorClient<InterceptedService<Channel, ClientAuth>>;

/// A connection to the coordinator. Cheap to clone; the runtime stops when the last clone (and the last
/// batch thread) is gone.
#[derive(Clone)]
pub struct WorkerClient {
    runtime: Arc<tokio::runtime::Runtime>,
    client: Client,
    addr: String,
    rpc_timeout: Duration,
}

impl WorkerClient {
    /// Connects to the coordinator at `addr` (`host:port`), retrying for up to `rpc_timeout` while it is
    /// not yet listening. Every later call carries `token`.
    ///
    /// Errors: [`WorkerError::Connect`] when it cannot be reached in time, [`WorkerError::Tls`] for bad TLS
    /// settings, [`WorkerError::Runtime`] when the client's runtime cannot start.
    pub fn connect(addr: &str, token: &Token, tls: Option<ClientTls>, rpc_timeout: Duration) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("isoclr-worker-rpc")
            .build()
            .map_err(|e| WorkerError::Runtime(e.to_string()))?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let connect_error = |why: String| WorkerError::Connect {
            addr: addr.to_owned(),
            why,
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
            .map_err(|e| connect_error(e.to_string()))?
            .connect_timeout(rpc_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = tls {
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(tls.ca_pem))
                .domain_name(tls.domain);
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| WorkerError::Tls(e.to_string()))?;
        }
        let channel = runtime.block_on(async {
            let deadline = tokio::time::Instant::now() + rpc_timeout;
            let mut pause = Duration::from_millis(50);
            loop {
                match endpoint.connect().await {
                    Ok(channel) => return Ok(channel),
                    Err(e) if tokio::time::Instant::now() + pause >= deadline => {
                        let source = std::error::Error::source(&e)
                            .map(|s| format!(": {s}"))
                            .unwrap_or_default();
                        return Err(connect_error(format!("{e}{source}")));
                    }
                    Err(e) => debug!(%addr, error = %e, "coordinator not reachable yet"),
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        })?;
        let client = CoordinatorClient::with_interceptor(channel, ClientAuth::new(token)?)
            .max_decoding_message_size(isoclr_proto::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(isoclr_proto::MAX_MESSAGE_BYTES);
        Ok(Self {
            runtime: Arc::new(runtime),
            client,
            addr: addr.to_owned(),
            rpc_timeout,
        })
    }

    /// Runs one unary call with the RPC timeout (sent as the gRPC deadline, and enforced here).
    fn call<T, F, Fut>(&self, call: &'static str, timeout: Duration, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client.clone();
        self.runtime.block_on(async move {
            match tokio::time::timeout(timeout, f(client)).await {
                Ok(Ok(response)) => Ok(response.into_inner()),
                Ok(Err(status)) => Err(WorkerError::from_status(call, status)),
                Err(_) => Err(WorkerError::Timeout { call, after: timeout }),
            }
        })
    }

    /// Registers and waits for the rendezvous (up to `rendezvous_timeout`, plus the RPC timeout for the
    /// answer to travel). Errors with the coordinator's status (a taken rank, a late rendezvous), a
    /// timeout, or a configuration that does not parse.
    pub fn register(&self, registration: &Registration, rendezvous_timeout: Duration) -> Result<Rendezvous> {
        let timeout = rendezvous_timeout + self.rpc_timeout;
        let message = RegisterRequest {
            host: registration.host.clone(),
            pid: registration.pid,
            local_rank: registration.local_rank,
            device: registration.device.clone(),
            ring_address: registration.ring_address.clone(),
            requested_rank: registration.requested_rank,
            nccl_unique_id_offer: registration.nccl_unique_id_offer.clone().unwrap_or_default(),
        };
        let r = self.call("register", timeout, |mut client| async move {
            let mut request = tonic::Request::new(message);
            request.set_timeout(timeout);
            client.register(request).await
        })?;
        let config: Config = toml::from_str(&r.config_toml).map_err(|e| WorkerError::Config(e.to_string()))?;
        config.validate().map_err(|e| WorkerError::Config(e.to_string()))?;
        Ok(Rendezvous {
            rank: r.rank as usize,
            world_size: r.world_size as usize,
            ring_addresses: r.ring_addresses,
            nccl_unique_id: (!r.nccl_unique_id.is_empty()).then_some(r.nccl_unique_id),
            job_id: r.job_id,
            config,
            config_toml: r.config_toml,
            out_dir: PathBuf::from(r.out_dir),
            start_step: r.start_step,
            steps_per_epoch: r.steps_per_epoch,
            dataset_fingerprint: r.dataset_fingerprint,
            peers: r
                .peers
                .into_iter()
                .map(|p| Peer {
                    rank: p.rank as usize,
                    host: p.host,
                    pid: p.pid,
                    local_rank: p.local_rank,
                    device: p.device,
                    ring_address: p.ring_address,
                })
                .collect(),
        })
    }

    /// Ready batches of `rank` from `from_step` on: a background thread receives each shard, validates it,
    /// and runs [`Shard::encode`] with `layout`, keeping at most `prefetch` batches ready. The
    /// channel closes after the last step; a malformed message, an abort or a stalled stream arrives as
    /// an `Err` (naming the step) and ends it. Errors now when the coordinator refuses the stream.
    pub fn batches(
        &self,
        rank: usize,
        from_step: u64,
        layout: PassLayout,
        prefetch: usize,
    ) -> Result<std::sync::mpsc::Receiver<Result<StepBatch>>> {
        stream::spawn(self, rank, from_step, prefetch, move |shard: Shard| {
            shard.encode(layout)
        })
    }

    /// Like [`WorkerClient::batches`], but delivers the validated shards without encoding them.
    pub fn shards(
        &self,
        rank: usize,
        from_step: u64,
        prefetch: usize,
    ) -> Result<std::sync::mpsc::Receiver<Result<Shard>>> {
        stream::spawn(self, rank, from_step, prefetch, |shard: Shard| shard)
    }

    /// Reports a finished step; the answer is the step boundary's decision (the same for every rank).
    /// `stop_requested`: this process received a stop signal, which asks the coordinator to suspend the job.
    pub fn report(&self, rank: usize, metrics: &StepMetrics, stop_requested: bool) -> Result<Control> {
        let message = StepReport {
            rank: rank as u32,
            step: metrics.step,
            loss: metrics.loss,
            accuracy: metrics.accuracy,
            seq_per_s: metrics.seq_per_s,
            lr: metrics.lr,
            grad_norm: metrics.grad_norm,
            pad_fraction: metrics.pad_fraction,
            step_time_s: metrics.step_time_s,
            data_wait_s: metrics.data_wait_s,
            stop_requested,
        };
        let timeout = self.rpc_timeout;
        let control = self.call("report", timeout, |mut client| async move {
            let mut request = tonic::Request::new(message);
            request.set_timeout(timeout);
            client.report(request).await
        })?;
        Control::from_message("report", control)
    }

    /// One heartbeat, answered CONTINUE or ABORT (see [`WorkerClient::start_heartbeat`] for the loop).
    pub fn heartbeat(&self, rank: usize, step: u64) -> Result<Control> {
        let timeout = self.rpc_timeout;
        let control = self.call("heartbeat", timeout, |mut client| async move {
            let mut request = tonic::Request::new(HeartbeatRequest {
                rank: rank as u32,
                step,
            });
            request.set_timeout(timeout);
            client.heartbeat(request).await
        })?;
        Control::from_message("heartbeat", control)
    }

    /// Starts heart-beating every `interval` in the background. The returned [`Heartbeat`] raises its
    /// [`AbortSignal`] when the coordinator answers ABORT or has not answered for `timeout`; dropping it
    /// stops the loop.
    pub fn start_heartbeat(&self, rank: usize, interval: Duration, timeout: Duration) -> Heartbeat {
        heartbeat::start(self, rank, interval, timeout)
    }

    /// Leaves the job: `exit_status` 0 after STOP; anything else tells the coordinator this worker failed
    /// (which aborts the job). Errors with the coordinator's status or a timeout.
    pub fn shutdown(&self, rank: usize, reason: &str, exit_status: i32) -> Result<()> {
        let message = ShutdownRequest {
            rank: rank as u32,
            reason: reason.to_owned(),
            exit_status,
        };
        let timeout = self.rpc_timeout;
        self.call("shutdown", timeout, |mut client| async move {
            let mut request = tonic::Request::new(message);
            request.set_timeout(timeout);
            client.shutdown(request).await
        })?;
        Ok(())
    }

    /// The coordinator's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }
}
