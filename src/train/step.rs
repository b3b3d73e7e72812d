//! One optimiser step of contrastive training on one device: encode the micro-batches, project, loss,
//! backward, clip, AdamW.

use tch::{Device, Kind, Tensor};

use super::optim::{AdamW, AdamWConfig};
use super::schedule::Schedule;
use crate::config::Config;
use crate::data::StepBatch;
use crate::model::{Model, Views, contrastive_accuracy, contrastive_loss, group_size_weight};

/// What one step measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// The contrastive loss (DCL can be negative).
    pub loss: f64,
    /// Contrastive accuracy (view 1 → view 2).
    pub accuracy: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
}

/// The model, its optimiser and the settings of a step.
#[derive(Debug)]
pub struct Trainer {
    /// The model being trained.
    pub model: Model,
    /// Its optimiser.
    pub optimizer: AdamW,
    schedule: Schedule,
    config: Config,
}

impl Trainer {
    /// A freshly initialised model and optimiser on `device`; `steps_per_epoch` sets the schedule.
    pub fn new(config: &Config, device: Device, steps_per_epoch: u64) -> Self {
        let model = Model::new(&config.model, device, config.train.seed);
        let optimizer = AdamW::new(model.named_parameters(), AdamWConfig::from(&config.train));
        Self {
            model,
            optimizer,
            schedule: Schedule::new(&config.train, steps_per_epoch),
            config: config.clone(),
        }
    }

    /// The learning rate of `step`.
    pub fn lr(&self, step: u64) -> f64 {
        self.schedule.lr(step)
    }

    /// Runs one training step on `batch`, in bf16 autocast on CUDA and full precision on CPU.
    pub fn train_step(&mut self, batch: &StepBatch) -> StepReport {
        let t = &self.config.train;
        // Dropout draws from libtorch's generator: seed it per step so a run repeats exactly.
        tch::manual_seed((t.seed ^ batch.step.wrapping_mul(0x9e37_79b9)) as i64);
        let n = batch.pairs.len() as i64;
        let device = self.model.vars.device();
        self.optimizer.zero_grad();
        let (loss, views) = crate::device::autocast_bf16(device.is_cuda(), || {
            let embeddings = self.model.embed_micro_batches(&batch.micro, true);
            let projections = self.model.head.forward(&embeddings, true);
            let views = Views::normalised(&projections.narrow(0, 0, n), &projections.narrow(0, n, n));
            let weights = t.weight_by_group_size.then(|| {
                let w: Vec<f32> = batch
                    .pairs
                    .iter()
                    .map(|p| group_size_weight(p.group_size) as f32)
                    .collect();
                Tensor::from_slice(&w).to_device(device)
            });
            let loss = contrastive_loss(t.loss, &views, 0, n, t.temperature, weights.as_ref());
            (loss, views)
        });
        loss.backward();
        let grad_norm = self.optimizer.clip_gradients(t.clip, t.clip_norm);
        let lr = self.lr(batch.step);
        self.optimizer.step(lr);
        let accuracy = contrastive_accuracy(&views);
        StepReport {
            loss: loss.to_kind(Kind::Double).double_value(&[]),
            accuracy,
            lr,
            grad_norm,
        }
    }
}
