//! The trainer's state as bytes: model and optimiser tensors in the safetensors format, in memory, so a
//! checkpoint layer that knows nothing of tensors can store them.

use std::borrow::Cow;

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use super::step::Trainer;
use crate::model::ModelError;

/// One tensor's bytes, little-endian, row-major.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

fn incompatible(why: String) -> ModelError {
    ModelError::Incompatible {
        path: "<snapshot>".into(),
        why,
    }
}

/// Encodes named tensors as a safetensors file in memory: `i64` tensors stay `i64`, everything else is
/// stored as `f32`.
pub fn encode(tensors: &[(String, Tensor)]) -> Result<Vec<u8>, ModelError> {
    let host: Vec<(String, HostTensor)> = tensors
        .iter()
        .map(|(name, t)| {
            let (kind, dtype) = if t.kind() == Kind::Int64 {
                (Kind::Int64, Dtype::I64)
            } else {
                (Kind::Float, Dtype::F32)
            };
            let t = t.detach().to_device(Device::Cpu).to_kind(kind).contiguous();
            let mut data = vec![0u8; t.numel() * kind.elt_size_in_bytes()];
            t.copy_data_u8(&mut data, t.numel());
            let shape = t.size().iter().map(|&d| d as usize).collect();
            (name.clone(), HostTensor { dtype, shape, data })
        })
        .collect();
    safetensors::serialize(host.iter().map(|(n, t)| (n.as_str(), t)), None)
        .map_err(|e| incompatible(format!("cannot serialise: {e}")))
}

/// Decodes a safetensors file held in memory into named CPU tensors.
pub fn decode(bytes: &[u8]) -> Result<Vec<(String, Tensor)>, ModelError> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| incompatible(format!("not a safetensors file: {e}")))?;
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::I64 => Kind::Int64,
                other => return Err(incompatible(format!("{name}: unsupported dtype {other:?}"))),
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            Ok((
                name,
                Tensor::f_from_data_size(view.data(), &shape, kind).map_err(|e| incompatible(e.to_string()))?,
            ))
        })
        .collect()
}

/// A trainer's state: `model.safetensors` and `optimizer.safetensors` contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrainerSnapshot {
    /// Every model tensor (parameters and normalisation statistics), by stable name.
    pub model: Vec<u8>,
    /// AdamW's step count and moments, by parameter name.
    pub optimizer: Vec<u8>,
}

impl Trainer {
    /// Copies the model and optimiser state out, bit for bit.
    pub fn snapshot(&self) -> Result<TrainerSnapshot, ModelError> {
        Ok(TrainerSnapshot {
            model: encode(&self.model.named_tensors())?,
            optimizer: encode(&self.optimizer.state())?,
        })
    }

    /// Restores a snapshot taken from a trainer of the same model shape; errors name a missing or
    /// mis-shaped tensor.
    pub fn restore(&mut self, snapshot: &TrainerSnapshot) -> Result<(), ModelError> {
        self.model.load_tensors(decode(&snapshot.model)?)?;
        self.optimizer
            .load_state(decode(&snapshot.optimizer)?)
            .map_err(incompatible)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Preset};
    use crate::data::batch::encode_views;
    use crate::data::{Pair, StepBatch, Transcript};
    use crate::dist::SingleProcess;

    fn batch(step: u64) -> StepBatch {
        let views: Vec<crate::data::batch::ViewSpec> = (0..8)
            .map(|i| {
                let seq: Vec<u8> = (0..60 + 13 * i).map(|p| b"ACGT"[(p * (i + 3) + p / 7) % 4]).collect();
                let t = Transcript::new(format!("t{i}"), "g", 0, &seq, vec![seq.len() as u32 - 1], None).unwrap();
                crate::data::batch::ViewSpec {
                    transcript: t,
                    shift: 0,
                    masked: vec![],
                }
            })
            .collect();
        let pairs = (0..4)
            .map(|g| Pair {
                group: g,
                views: [g, g + 4],
                group_size: 2,
            })
            .collect();
        StepBatch {
            step,
            offset: 0,
            global_pairs: 4,
            pairs,
            micro: encode_views(&views, 1 << 12),
        }
    }

    #[test]
    fn restored_trainer_continues_bit_for_bit() {
        let mut config = Config::default();
        config.model.preset = Preset::Tiny;
        config.model.head_hidden = 32;
        config.model.projection_dim = 16;
        config.train.batch_size = 4;
        let mut a = Trainer::new(&config, Device::Cpu, 10);
        for step in 0..2 {
            a.train_step(&batch(step), &mut SingleProcess).unwrap();
        }
        let snap = a.snapshot().unwrap();
        // A trainer in another state (one step on another batch) that the snapshot must fully overwrite.
        let mut b = Trainer::new(&config, Device::Cpu, 10);
        b.train_step(&batch(5), &mut SingleProcess).unwrap();
        assert_ne!(b.snapshot().unwrap(), snap);
        b.restore(&snap).unwrap();
        assert_eq!(b.snapshot().unwrap(), snap, "restore then snapshot is the identity");
        let ra = a.train_step(&batch(2), &mut SingleProcess).unwrap();
        let rb = b.train_step(&batch(2), &mut SingleProcess).unwrap();
        assert_eq!(ra.loss.to_bits(), rb.loss.to_bits());
        assert_eq!(
            a.snapshot().unwrap(),
            b.snapshot().unwrap(),
            "the next step is identical bit for bit"
        );
        let mut other = config.clone();
        other.model.head_hidden = 64;
        let err = Trainer::new(&other, Device::Cpu, 10)
            .restore(&snap)
            .unwrap_err()
            .to_string();
        assert!(err.contains("head.") && err.contains("shape"), "{err}");
    }
}
