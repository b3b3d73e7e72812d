//! Collective communication between the processes of one job: all-reduce, all-gather, broadcast and
//! barrier on flat `f32` buffers, behind one trait with a backend per transport.
//!
//! Must not depend on the model: callers flatten tensors into buffers (gradient buckets, projections).
//! Every operation has a timeout and fails with an error naming the peer; none hangs.

use std::time::Duration;

#[cfg(feature = "nccl")]
pub mod nccl;
pub mod tcp;

#[cfg(feature = "nccl")]
pub use nccl::NcclComm;
pub use tcp::{RingConfig, RingListener, TcpRing};

/// How an all-reduce combines the ranks' buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReduceOp {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean (sum divided by the world size).
    Mean,
}

/// Errors of collectives; each names the operation and, where one is involved, the peer.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// A peer did not answer within the timeout.
    #[error("{op}: timed out after {timeout:?} waiting for rank {peer} ({addr})")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// The peer's rank.
        peer: usize,
        /// The peer's address.
        addr: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// A connection failed or a peer went away.
    #[error("{op}: connection to rank {peer} ({addr}) failed: {source}")]
    Connection {
        /// The operation.
        op: &'static str,
        /// The peer's rank.
        peer: usize,
        /// The peer's address.
        addr: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Buffers of the wrong size, or a rank outside the world.
    #[error("{op}: {why}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What is wrong.
        why: String,
    },
    /// The backend cannot be used here (e.g. NCCL without CUDA).
    #[error("{0}")]
    Unavailable(String),
}

/// Result alias of collectives.
pub type Result<T, E = DistError> = std::result::Result<T, E>;

/// Collective operations among the `world_size` ranks of a job. Every rank must call the same operations
/// in the same order with buffers of the same length.
pub trait Collective: Send {
    /// This process's rank in `0..world_size`.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn world_size(&self) -> usize;
    /// Combines `buffer` across ranks in place; every rank ends with the same result.
    fn all_reduce(&mut self, buffer: &mut [f32], op: ReduceOp) -> Result<()>;
    /// Concatenates every rank's `local` (all of equal length) in rank order into `out`
    /// (`out.len() == world_size · local.len()`).
    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<()>;
    /// Copies `root`'s `buffer` into every rank's `buffer`.
    fn broadcast(&mut self, buffer: &mut [f32], root: usize) -> Result<()>;
    /// Returns once every rank has entered the barrier.
    fn barrier(&mut self) -> Result<()>;
    /// The same collectives on device memory, when this backend has them (NCCL): the trainer then never
    /// copies gradients or projections through the host.
    fn device_collective(&mut self) -> Option<&mut dyn DeviceCollective> {
        None
    }
}

/// Collectives on `f32` buffers in CUDA device memory, given by raw addresses (this layer knows no tensors),
/// enqueued on the legacy default stream, the stream libtorch computes on: they run in order with the
/// kernels around them, and return without waiting for the device.
pub trait DeviceCollective {
    /// Combines `len` values at `ptr` across ranks, in place.
    ///
    /// # Safety
    /// `ptr` must address at least `len` f32 of device memory on this rank's device, alive and written by
    /// nothing else until the operation has run on the stream (memory freed to libtorch's caching
    /// allocator and reused by later kernels on the same stream qualifies).
    unsafe fn all_reduce_device(&mut self, ptr: u64, len: usize, op: ReduceOp) -> Result<()>;
    /// Gathers every rank's `len` values at `send` into `recv` (`world_size · len` values, rank order).
    ///
    /// # Safety
    /// As for [`DeviceCollective::all_reduce_device`], for `send` (`len` f32) and `recv`
    /// (`world_size · len` f32), which must not overlap.
    unsafe fn all_gather_device(&mut self, send: u64, recv: u64, len: usize) -> Result<()>;
}

/// The world of one process: every collective is the identity.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce(&mut self, _buffer: &mut [f32], _op: ReduceOp) -> Result<()> {
        Ok(())
    }
    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<()> {
        if out.len() != local.len() {
            return Err(DistError::Invalid {
                op: "all_gather",
                why: format!("output holds {} values, expected {}", out.len(), local.len()),
            });
        }
        out.copy_from_slice(local);
        Ok(())
    }
    fn broadcast(&mut self, _buffer: &mut [f32], root: usize) -> Result<()> {
        if root != 0 {
            return Err(DistError::Invalid {
                op: "broadcast",
                why: format!("root {root} outside a world of 1"),
            });
        }
        Ok(())
    }
    fn barrier(&mut self) -> Result<()> {
        Ok(())
    }
}
