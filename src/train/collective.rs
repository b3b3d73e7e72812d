//! Which device a worker trains on and which collective it trains with: the TCP ring (host memory) or,
//! with the `nccl` feature, NCCL on device memory (`dist.backend`).
//!
//! Workers of one host take the GPUs in turn by local rank. NCCL needs one GPU per rank (two ranks on one
//! device are refused by NCCL), CUDA, and the unique id that the coordinator hands every worker from the
//! first that could offer one (a host's worker of local rank 0); `auto` uses it when all of that holds and
//! there is more than one rank, else the ring. The ring is joined in every case: it is how the ranks meet.

use std::time::Duration;

use tch::Device;

use super::{Result, TrainError};
use crate::config::{CollectiveBackend, DeviceChoice};
use crate::dist::tcp::TcpRing;
use crate::dist::{Collective, DistError};
use crate::worker::Peer;

/// The device of the worker with `local_rank` on its host: GPU `local_rank mod count` when `choice`
/// allows CUDA and there is a GPU, else the CPU. Errors when `choice` is `cuda` and there is none.
pub fn worker_device(choice: DeviceChoice, local_rank: u32) -> Result<Device> {
    let gpus = if choice == DeviceChoice::Cpu {
        0
    } else {
        crate::device::gpu_count()
    };
    match (choice, gpus) {
        (DeviceChoice::Cuda, 0) => Err(TrainError::Setup(
            "train.device = \"cuda\" but libtorch sees no CUDA device (is this a GPU machine, and was the full \
             torch set-up used?)"
                .into(),
        )),
        (_, 0) => Ok(Device::Cpu),
        (_, n) => Ok(Device::Cuda(local_rank as usize % n)),
    }
}

/// The device name a worker registers (`cuda:N` or `cpu`), before the configuration says which it uses.
pub fn registered_device(local_rank: u32) -> String {
    match worker_device(DeviceChoice::Auto, local_rank) {
        Ok(Device::Cuda(n)) => format!("cuda:{n}"),
        _ => "cpu".to_owned(),
    }
}

/// What a worker can offer the coordinator as the job's NCCL unique id: one from the worker of local rank 0
/// of each host, when NCCL loads there and there is a GPU (the coordinator hands every worker the first
/// offer). The others offer none: making an id loads libnccl and starts its bootstrap listener, which only
/// one process of the job needs, and the workers register before they know which backend the job uses.
pub fn nccl_offer(local_rank: u32) -> Option<Vec<u8>> {
    #[cfg(feature = "nccl")]
    if local_rank == 0 && tch::Cuda::is_available() {
        return crate::dist::NcclComm::unique_id().ok().map(|id| id.to_vec());
    }
    let _ = local_rank;
    None
}

/// The collective backend a job's workers agree on, from what every one of them can see alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// The TCP ring.
    Tcp,
    /// NCCL on this worker's GPU.
    Nccl,
}

/// What [`choose_backend`] decides from.
#[derive(Debug, Clone, Copy)]
pub struct BackendFacts {
    /// `dist.backend`.
    pub requested: CollectiveBackend,
    /// Whether the workers train on CUDA (the same configuration for all).
    pub cuda: bool,
    /// Ranks in the job.
    pub world_size: usize,
    /// Whether this build has the `nccl` feature.
    pub nccl_built: bool,
    /// Whether the rendezvous carried an NCCL unique id.
    pub unique_id: bool,
    /// Whether no two ranks registered the same device of the same host.
    pub devices_distinct: bool,
}

/// Chooses the backend; errors name `dist.backend` and say why NCCL cannot run when it was asked for.
/// Every input is the same on every rank, so every rank chooses alike.
pub fn choose_backend(f: BackendFacts) -> Result<Backend> {
    let obstacle = if !f.nccl_built {
        Some("this isoclr was built without NCCL (cargo feature `nccl`)")
    } else if !f.cuda {
        Some("the workers train on the CPU (train.device)")
    } else if !f.devices_distinct {
        Some("two workers share a GPU, which NCCL refuses")
    } else if !f.unique_id {
        Some("no worker could load libnccl to offer the job's NCCL id")
    } else {
        None
    };
    match (f.requested, obstacle) {
        (CollectiveBackend::Tcp, _) => Ok(Backend::Tcp),
        (CollectiveBackend::Nccl, Some(why)) => Err(TrainError::Setup(format!(
            "dist.backend = \"nccl\" cannot run: {why}; use \"tcp\" or \"auto\""
        ))),
        (CollectiveBackend::Nccl, None) => Ok(Backend::Nccl),
        (CollectiveBackend::Auto, None) if f.world_size > 1 => Ok(Backend::Nccl),
        (CollectiveBackend::Auto, _) => Ok(Backend::Tcp),
    }
}

/// Whether no two peers registered the same device of the same host.
pub fn devices_distinct(peers: &[Peer]) -> bool {
    let mut seen = std::collections::HashSet::new();
    peers.iter().all(|p| seen.insert((p.host.as_str(), p.device.as_str())))
}

/// The collective a worker trains with.
pub enum WorkerCollective {
    /// The TCP ring.
    Tcp(TcpRing),
    /// NCCL (the ring it met through stays open, unused).
    #[cfg(feature = "nccl")]
    Nccl(crate::dist::NcclComm, TcpRing),
}

impl WorkerCollective {
    /// Joins `backend`: keeps `ring` for TCP, or creates the NCCL communicator of `unique_id` on `device`,
    /// waiting at most `timeout` for every rank.
    pub fn join(
        backend: Backend,
        ring: TcpRing,
        unique_id: Option<&[u8]>,
        device: Device,
        timeout: Duration,
    ) -> std::result::Result<Self, DistError> {
        match backend {
            Backend::Tcp => Ok(Self::Tcp(ring)),
            #[cfg(feature = "nccl")]
            Backend::Nccl => {
                let id: &[u8; 128] = unique_id.and_then(|id| id.try_into().ok()).ok_or_else(|| {
                    DistError::Unavailable("the rendezvous carried no 128-byte NCCL unique id".into())
                })?;
                let Device::Cuda(index) = device else {
                    return Err(DistError::Unavailable("NCCL needs a CUDA device".into()));
                };
                let comm = crate::dist::NcclComm::new(id, ring.rank(), ring.world_size(), index, timeout)?;
                Ok(Self::Nccl(comm, ring))
            }
            #[cfg(not(feature = "nccl"))]
            Backend::Nccl => {
                let _ = (unique_id, device, timeout);
                Err(DistError::Unavailable(
                    "this isoclr was built without NCCL (cargo feature `nccl`)".into(),
                ))
            }
        }
    }

    /// The collective to train with.
    pub fn collective(&mut self) -> &mut dyn Collective {
        match self {
            Self::Tcp(ring) => ring,
            #[cfg(feature = "nccl")]
            Self::Nccl(comm, _) => comm,
        }
    }

    /// Sets the timeout of later operations.
    pub fn set_op_timeout(&mut self, timeout: Duration) {
        match self {
            Self::Tcp(ring) => ring.set_op_timeout(timeout),
            #[cfg(feature = "nccl")]
            Self::Nccl(comm, _) => comm.set_op_timeout(timeout),
        }
    }

    /// `tcp` or `nccl`, for the logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Tcp(_) => "tcp",
            #[cfg(feature = "nccl")]
            Self::Nccl(..) => "nccl",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> BackendFacts {
        BackendFacts {
            requested: CollectiveBackend::Auto,
            cuda: true,
            world_size: 4,
            nccl_built: true,
            unique_id: true,
            devices_distinct: true,
        }
    }

    #[test]
    fn auto_takes_nccl_only_where_it_can_run() {
        assert_eq!(choose_backend(facts()).unwrap(), Backend::Nccl);
        for blocked in [
            BackendFacts { cuda: false, ..facts() },
            BackendFacts {
                nccl_built: false,
                ..facts()
            },
            BackendFacts {
                unique_id: false,
                ..facts()
            },
            BackendFacts {
                devices_distinct: false,
                ..facts()
            },
            BackendFacts {
                world_size: 1,
                ..facts()
            },
        ] {
            assert_eq!(choose_backend(blocked).unwrap(), Backend::Tcp, "{blocked:?}");
        }
        let tcp = BackendFacts {
            requested: CollectiveBackend::Tcp,
            ..facts()
        };
        assert_eq!(choose_backend(tcp).unwrap(), Backend::Tcp);
    }

    #[test]
    fn nccl_asked_for_where_it_cannot_run_is_an_error_that_says_why() {
        let nccl = |f: BackendFacts| {
            choose_backend(BackendFacts {
                requested: CollectiveBackend::Nccl,
                ..f
            })
        };
        // A world of one still runs NCCL when asked (its collectives are the identity, on the device).
        assert_eq!(
            nccl(BackendFacts {
                world_size: 1,
                ..facts()
            })
            .unwrap(),
            Backend::Nccl
        );
        for (f, says) in [
            (BackendFacts { cuda: false, ..facts() }, "CPU"),
            (
                BackendFacts {
                    nccl_built: false,
                    ..facts()
                },
                "feature `nccl`",
            ),
            (
                BackendFacts {
                    unique_id: false,
                    ..facts()
                },
                "libnccl",
            ),
            (
                BackendFacts {
                    devices_distinct: false,
                    ..facts()
                },
                "share a GPU",
            ),
        ] {
            let err = nccl(f).unwrap_err().to_string();
            assert!(err.contains("dist.backend") && err.contains(says), "{err}");
        }
    }

    #[test]
    fn shared_devices_are_found_per_host() {
        let peer = |rank: usize, host: &str, device: &str| Peer {
            rank,
            host: host.into(),
            pid: 1,
            local_rank: 0,
            device: device.into(),
            ring_address: String::new(),
        };
        let two_hosts = [peer(0, "a", "cuda:0"), peer(1, "b", "cuda:0"), peer(2, "a", "cuda:1")];
        assert!(devices_distinct(&two_hosts));
        let shared = [peer(0, "a", "cuda:0"), peer(1, "a", "cuda:0")];
        assert!(!devices_distinct(&shared));
    }

    #[test]
    fn without_a_gpu_every_worker_trains_on_the_cpu() {
        if tch::Cuda::device_count() > 0 {
            eprintln!("skipped: this machine has a GPU");
            return;
        }
        assert_eq!(worker_device(DeviceChoice::Auto, 3).unwrap(), Device::Cpu);
        assert_eq!(worker_device(DeviceChoice::Cpu, 0).unwrap(), Device::Cpu);
        let err = worker_device(DeviceChoice::Cuda, 0).unwrap_err().to_string();
        assert!(err.contains("train.device"), "{err}");
        assert_eq!(registered_device(2), "cpu");
        assert_eq!(nccl_offer(0), None);
    }
}
