//! Gradient synchronisation, beside the one-device step: how a step's projections, their gradients and the
//! parameter gradients meet those of the other ranks, and how rank 0's state reaches the others. Every
//! gather, reduction and raw device pointer of training is here: the identity for one process, host-staged
//! buffers on the TCP ring, device memory with NCCL.

use std::time::Duration;

use tch::{Device, Kind, Tensor};

use super::collective::WorkerCollective;
use super::{Result, TrainError};
use crate::dist::{Collective, DeviceCollective, ReduceOp, SingleProcess};

/// How a step meets the other ranks: the identity for one process ([`SingleProcess`]), the TCP ring or NCCL
/// for a worker. The step reaches every exchange through [`GradientSync::collective`] and [`TensorExchange`].
pub trait GradientSync {
    /// The collective the step uses.
    fn collective(&mut self) -> &mut dyn Collective;
    /// Told after every completed step (a worker tightens its start-up timeouts after the first).
    fn step_completed(&mut self) {}
}

impl GradientSync for SingleProcess {
    fn collective(&mut self) -> &mut dyn Collective {
        self
    }
}

/// A worker's collective with generous timeouts until its first step completes, `steady` ones after.
pub struct WorkerSync {
    comm: WorkerCollective,
    steady: Option<Duration>,
}

impl WorkerSync {
    /// `comm`, whose operations get `steady` as their timeout once the first step has completed.
    pub fn new(comm: WorkerCollective, steady: Duration) -> Self {
        Self {
            comm,
            steady: Some(steady),
        }
    }
}

impl GradientSync for WorkerSync {
    fn collective(&mut self) -> &mut dyn Collective {
        self.comm.collective()
    }

    fn step_completed(&mut self) {
        if let Some(timeout) = self.steady.take() {
            self.comm.set_op_timeout(timeout);
        }
    }
}

/// Gradient values per all-reduce call: large enough to amortise latency, small enough to bound the copy.
pub const BUCKET_VALUES: usize = 4 << 20;

/// The step's exchanges, in tensors, over any [`Collective`]: on the device when the backend has device
/// collectives (NCCL) and the tensors are on a GPU, else through host buffers; the identity for one rank.
pub trait TensorExchange {
    /// Every rank's rows of `local` (`[rows, d]`, this rank's share) in rank order, `[total, d]` f32, as a
    /// leaf that records its gradient.
    fn gather_rows(&mut self, local: &Tensor, total: i64) -> Result<Tensor>;
    /// `t` summed across ranks (f32).
    fn sum(&mut self, t: &Tensor) -> Result<Tensor>;
    /// Sums every tensor of `grads` across ranks in place, in buckets of at most [`BUCKET_VALUES`] values.
    fn sum_in_place(&mut self, grads: &[Tensor]) -> Result<()>;
    /// A scalar summed across ranks.
    fn sum_value(&mut self, value: f32) -> Result<f32>;
    /// Copies rank 0's `tensors` and `extra` values into every rank's.
    fn broadcast_from_first(&mut self, tensors: &[Tensor], extra: &mut [f32]) -> Result<()>;
}

impl TensorExchange for dyn Collective + '_ {
    fn gather_rows(&mut self, local: &Tensor, total: i64) -> Result<Tensor> {
        let local = local.detach().to_kind(Kind::Float).contiguous();
        let device = local.device();
        if let Some(collective) = self.device_collective().filter(|_| device.is_cuda()) {
            let all = Tensor::empty([total, local.size()[1]], (Kind::Float, device));
            // SAFETY: both are contiguous f32 tensors on this rank's device, alive until the call has
            // enqueued the gather; later kernels that reuse their memory run after it on the same stream.
            unsafe {
                collective.all_gather_device(local.data_ptr() as u64, all.data_ptr() as u64, local.numel())?;
            }
            return Ok(all.set_requires_grad(true));
        }
        if self.world_size() == 1 {
            return Ok(local.set_requires_grad(true));
        }
        let mut all = vec![0f32; total as usize * local.size()[1] as usize];
        self.all_gather(&to_host(&[local.shallow_clone()])?, &mut all)?;
        Ok(Tensor::from_slice(&all)
            .view([total, -1])
            .to_device(device)
            .set_requires_grad(true))
    }

    fn sum(&mut self, t: &Tensor) -> Result<Tensor> {
        let t = t.to_kind(Kind::Float).contiguous();
        if let Some(collective) = self.device_collective().filter(|_| t.device().is_cuda()) {
            // SAFETY: a contiguous f32 tensor on this rank's device, used after the reduction only through
            // kernels queued behind it on the same stream.
            unsafe { collective.all_reduce_device(t.data_ptr() as u64, t.numel(), ReduceOp::Sum)? };
            return Ok(t);
        }
        if self.world_size() == 1 {
            return Ok(t);
        }
        let mut values = to_host(std::slice::from_ref(&t))?;
        self.all_reduce(&mut values, ReduceOp::Sum)?;
        Ok(Tensor::from_slice(&values)
            .view(t.size().as_slice())
            .to_device(t.device()))
    }

    fn sum_in_place(&mut self, grads: &[Tensor]) -> Result<()> {
        let on_device = grads.first().is_some_and(|g| g.device().is_cuda()) && self.device_collective().is_some();
        if self.world_size() == 1 && !on_device {
            return Ok(());
        }
        let mut bucket: Vec<Tensor> = Vec::new();
        let mut values = 0;
        for (i, g) in grads.iter().enumerate() {
            bucket.push(g.shallow_clone());
            values += g.numel();
            if values >= BUCKET_VALUES || i + 1 == grads.len() {
                match self.device_collective().filter(|_| on_device) {
                    Some(collective) => sum_on_device(collective, &bucket)?,
                    None => {
                        let mut flat = to_host(&bucket)?;
                        self.all_reduce(&mut flat, ReduceOp::Sum)?;
                        from_host(&flat, &bucket);
                    }
                }
                bucket.clear();
                values = 0;
            }
        }
        Ok(())
    }

    fn sum_value(&mut self, value: f32) -> Result<f32> {
        let mut value = [value];
        self.all_reduce(&mut value, ReduceOp::Sum)?;
        Ok(value[0])
    }

    fn broadcast_from_first(&mut self, tensors: &[Tensor], extra: &mut [f32]) -> Result<()> {
        let mut flat = to_host(tensors)?;
        let len = flat.len();
        flat.extend_from_slice(extra);
        self.broadcast(&mut flat, 0)?;
        extra.copy_from_slice(&flat[len..]);
        from_host(&flat[..len], tensors);
        Ok(())
    }
}

/// Sums `tensors` (f32, on the collective's device) across ranks: one flat device copy, reduced in place,
/// copied back.
fn sum_on_device(collective: &mut dyn DeviceCollective, tensors: &[Tensor]) -> Result<()> {
    let flat = concatenated(tensors);
    // SAFETY: a contiguous f32 tensor on the device, read back below only by kernels queued after the
    // reduction on the same stream.
    unsafe { collective.all_reduce_device(flat.data_ptr() as u64, flat.numel(), ReduceOp::Sum)? };
    scatter_into(&flat, tensors);
    Ok(())
}

/// `tensors` as one contiguous flat `f32` tensor on their device, in order.
fn concatenated(tensors: &[Tensor]) -> Tensor {
    let parts: Vec<Tensor> = tensors
        .iter()
        .map(|t| t.detach().to_kind(Kind::Float).reshape([-1]))
        .collect();
    Tensor::cat(&parts, 0).contiguous()
}

/// Copies `flat` (laid out as [`concatenated`] lays out `tensors`) back into `tensors`.
fn scatter_into(flat: &Tensor, tensors: &[Tensor]) {
    tch::no_grad(|| {
        let mut start = 0;
        for t in tensors {
            let len = t.numel() as i64;
            t.shallow_clone()
                .copy_(&flat.narrow(0, start, len).view(t.size().as_slice()));
            start += len;
        }
    });
}

/// Copies tensors into one flat host `f32` buffer, in order. A failed copy is an error: an empty buffer
/// would enter the collective as if it were data.
fn to_host(tensors: &[Tensor]) -> Result<Vec<f32>> {
    if tensors.is_empty() {
        return Ok(Vec::new());
    }
    Vec::<f32>::try_from(&concatenated(tensors).to_device(Device::Cpu)).map_err(|source| TrainError::Tensor {
        what: "copying tensors to the host for a collective".into(),
        source,
    })
}

/// Copies a flat host buffer back into `tensors` (same order and sizes as [`to_host`] produced), in one
/// upload to their device.
fn from_host(flat: &[f32], tensors: &[Tensor]) {
    if let Some(first) = tensors.first() {
        scatter_into(&Tensor::from_slice(flat).to_device(first.device()), tensors);
    }
}
