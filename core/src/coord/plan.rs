//! Turns (step, rank) into the rank's shard of the global step, ready for the wire.
//!
//! Must not import tch, the model or train modules.

use std::sync::Arc;

use isoclr_proto::v1::ShardMessage;

use crate::config::Config;
use crate::data::batch::plan_shard;
use crate::data::{Augment, Dataset, Result, Sampler};
use crate::worker::wire::shard_to_message;

/// Plans shards of the job's global steps: the sampler and augmentation of `train.*` over the dataset,
/// exactly as [`plan_shard`] defines them (a pure function of seed and step, so any step can be planned in
/// any order, on any thread).
#[derive(Debug, Clone)]
pub struct Planner {
    dataset: Arc<Dataset>,
    sampler: Sampler,
    augment: Augment,
    seed: u64,
    world_size: usize,
}

impl Planner {
    /// A planner for `world_size` ranks. Errors when the batch size does not fit the dataset's groups or
    /// does not split into `world_size` equal shards.
    pub fn new(config: &Config, dataset: Arc<Dataset>, world_size: usize) -> Result<Self> {
        let t = &config.train;
        let sampler = dataset.training_sampler(t.seed, t.batch_size)?;
        if world_size == 0 || !t.batch_size.is_multiple_of(world_size) {
            return Err(crate::data::DataError::Invalid {
                what: "train.batch_size".into(),
                why: format!(
                    "{} groups per batch do not split into {world_size} equal shards",
                    t.batch_size
                ),
            });
        }
        let augment = Augment {
            mask_fraction: t.mask_fraction,
            max_shift: t.max_shift,
            max_len: dataset.manifest.max_len,
        };
        Ok(Self {
            dataset,
            sampler,
            augment,
            seed: t.seed,
            world_size,
        })
    }

    /// The sampler (for epochs in metrics).
    pub fn sampler(&self) -> &Sampler {
        &self.sampler
    }

    /// Shard `rank` of step `step`, encoded for the wire.
    pub fn plan(&self, step: u64, rank: usize) -> Result<ShardMessage> {
        let shard = plan_shard(
            &self.dataset,
            &self.sampler,
            &self.augment,
            self.seed,
            step,
            rank,
            self.world_size,
        )?;
        Ok(shard_to_message(shard))
    }
}
