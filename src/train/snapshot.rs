//! The trainer's state as bytes: model and optimiser tensors in the safetensors format, in memory, so a
//! checkpoint layer that knows nothing of tensors can store them (encoding in `model::weights`).

use super::step::Trainer;
use crate::model::ModelError;
use crate::model::weights::{decode, encode};

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
            .map_err(|why| ModelError::Incompatible {
                path: "optimizer.safetensors".into(),
                why,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Preset};
    use crate::data::batch::encode_views;
    use crate::data::{Pair, StepBatch, Transcript};
    use crate::dist::SingleProcess;
    use tch::Device;

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
            micro: encode_views(&views, crate::data::PassLayout::one_per_line(1 << 12)),
        }
    }

    #[test]
    fn restored_trainer_continues_bit_for_bit() {
        let _generator = crate::model::lock_generator();
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
