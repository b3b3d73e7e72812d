//! One optimiser step of contrastive training, written for one device: encode the micro-batches, project,
//! gather the global batch's projections, loss, backward, sum gradients across ranks, clip, AdamW. Every
//! exchange with other ranks is a call into [`super::sync`], which is the identity for one process.

use tch::{Device, Kind, Tensor};

use super::TrainError;
use super::optim::{AdamW, AdamWConfig};
use super::schedule::Schedule;
use super::sync::TensorExchange;
use super::tensor_failure;
use crate::config::Config;
use crate::config::{BatchStatistics, Pooling};
use crate::data::StepBatch;
use crate::data::sampler::rng_for;
use crate::dist::Collective;
use crate::model::{Model, Views, contrastive_accuracy, contrastive_loss, group_size_weight, in_row_order};
use rand::RngCore;

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
    /// The masked-nucleotide loss of this rank's passes (`model.mlm_weight > 0`), mean cross-entropy in nats.
    pub mlm_loss: Option<f64>,
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

    /// Makes every rank start from rank 0's weights and normalisation statistics, and with `optimizer` also
    /// from its optimiser state (moments and step count): a resumed job reads its checkpoint on rank 0
    /// alone and hands it on this way, one read of storage instead of one per rank.
    pub fn broadcast_state(&mut self, comm: &mut dyn Collective, optimizer: bool) -> Result<(), TrainError> {
        let mut tensors: Vec<Tensor> = self.model.named_tensors().into_iter().map(|(_, t)| t).collect();
        if optimizer {
            tensors.extend(self.optimizer.moments());
        }
        // The step count travels as two f32 values below 2^24 each, which f32 holds exactly.
        const HALF: u32 = 24;
        let step = self.optimizer.step_count();
        let mut count = [(step >> HALF) as f32, (step & ((1 << HALF) - 1)) as f32];
        let extra: &mut [f32] = if optimizer { &mut count } else { &mut [] };
        comm.broadcast_from_first(&tensors, extra)?;
        if optimizer {
            self.optimizer
                .set_step_count(((count[0] as i64) << HALF) | count[1] as i64);
        }
        Ok(())
    }

    /// The contrastive loss (unweighted) and accuracy of a whole batch, `batch` (the held-out groups'), with
    /// the model in evaluation mode (running batch-norm statistics, no dropout) and without gradients:
    /// nothing of the model or optimiser changes.
    pub fn evaluate(&self, batch: &StepBatch) -> Result<(f64, f64), TrainError> {
        let positions_per_pass = self.config.train.positions_per_pass;
        tensor_failure::guarded("held-out evaluation", batch, positions_per_pass, || {
            Ok(self.evaluate_tensors(batch))
        })
    }

    fn evaluate_tensors(&self, batch: &StepBatch) -> (f64, f64) {
        let t = &self.config.train;
        let n = batch.pairs.len() as i64;
        let cuda = self.model.vars.device().is_cuda();
        tch::no_grad(|| {
            crate::device::autocast_bf16(cuda, || {
                let pieces: Vec<Tensor> = (batch.micro.iter())
                    .map(|m| self.model.embed_micro_batch(m, Pooling::Mean, false))
                    .collect();
                let embeddings = in_row_order(&pieces, &batch.micro);
                let projections = self.model.head.forward(&embeddings, false).to_kind(Kind::Float);
                let views = Views::normalised(&projections.narrow(0, 0, n), &projections.narrow(0, n, n));
                let loss = contrastive_loss(t.loss, &views, 0, n, t.temperature, None);
                (loss.double_value(&[]), contrastive_accuracy(&views))
            })
        })
    }

    /// Runs one training step on this process's share `batch` of the global batch, in bf16 autocast on CUDA
    /// and full precision on CPU.
    ///
    /// Global negatives: every rank gathers the projections of all ranks, computes the loss of its own
    /// anchors against all columns, and the gradients with respect to the gathered projections are summed
    /// across ranks before the local slice is back-propagated; parameter gradients are then summed. This is
    /// the single-process mathematics exactly (docs/DISTRIBUTED.md explains why the gradient sum matters).
    /// With one process `comm` is [`crate::dist::SingleProcess`], every collective is the identity and the
    /// projections and their gradients stay on the device. With `train.gradient_cache` the encoder runs
    /// twice, the second time one micro-batch at a time with its activations (docs/DESIGN.md, "Gradient
    /// caching").
    /// A libtorch failure inside the step (an out-of-memory) is returned as an error
    /// ([`tensor_failure::guarded`]).
    pub fn train_step(&mut self, batch: &StepBatch, comm: &mut dyn Collective) -> Result<StepReport, TrainError> {
        let positions_per_pass = self.config.train.positions_per_pass;
        tensor_failure::guarded("training step", batch, positions_per_pass, || {
            self.step_tensors(batch, comm)
        })
    }

    fn step_tensors(&mut self, batch: &StepBatch, comm: &mut dyn Collective) -> Result<StepReport, TrainError> {
        let t = &self.config.train;
        let rank = comm.rank() as u64;
        let n = batch.pairs.len() as i64;
        let total = batch.global_pairs as i64;
        let device = self.model.vars.device();
        let cuda = device.is_cuda();
        // Dropout draws from libtorch's generator: seeded per (rank, step, pass) so that a run repeats
        // exactly and the second pass of gradient caching draws the masks of the first.
        let seed_pass = |pass: usize| {
            tch::manual_seed(rng_for(&[t.seed, rank, batch.step, pass as u64]).next_u64() as i64 >> 1);
        };
        let jointly = t.batch_statistics == BatchStatistics::Step;
        let encode = |model: &Model| model.embed_step(&batch.micro, jointly, seed_pass);
        self.optimizer.zero_grad();
        let (embeddings, local, mlm) = crate::device::autocast_bf16(cuda, || {
            let (embeddings, mlm) = if t.gradient_cache {
                // A leaf: the head's backward stops here and leaves dL/d(embedding) in its gradient.
                let (embeddings, _) = tch::no_grad(|| encode(&self.model));
                (embeddings.detach().set_requires_grad(true), None)
            } else {
                encode(&self.model)
            };
            let projections = self.model.head.forward(&embeddings, true);
            let local = Views::normalised(&projections.narrow(0, 0, n), &projections.narrow(0, n, n));
            (embeddings, local, mlm)
        });
        // The whole batch's projections, as leaves whose gradient is this rank's share of dL/dZ.
        let global = Views {
            z1: comm.gather_rows(&local.z1, total)?,
            z2: comm.gather_rows(&local.z2, total)?,
        };
        let weights = t.weight_by_group_size.then(|| group_weights(batch, device));
        let share = contrastive_loss(t.loss, &global, batch.offset as i64, n, t.temperature, weights.as_ref());
        share.backward();
        let summed = comm.sum(&Tensor::stack(&[global.z1.grad(), global.z2.grad()], 0))?;
        let own = |view: i64| summed.get(view).narrow(0, batch.offset as i64, n);
        // Back-propagate the summed gradient of the local rows: ⟨z, g⟩ has exactly g as its gradient in z.
        let surrogate = (&local.z1 * own(0)).sum(Kind::Float) + (&local.z2 * own(1)).sum(Kind::Float);
        // The masked-nucleotide objective (model.mlm_weight) is each rank's own, averaged over ranks by the
        // gradient sum below.
        let weight = self.config.model.mlm_weight / comm.world_size() as f64;
        match &mlm {
            Some(mlm) => (surrogate + mlm * weight).backward(),
            None => surrogate.backward(),
        }
        if t.gradient_cache {
            self.backward_through_cache(batch, &embeddings.grad(), seed_pass);
        }
        let grads: Vec<Tensor> = (self.model.named_parameters().into_iter())
            .map(|(_, p)| p.grad())
            .filter(Tensor::defined)
            .collect();
        comm.sum_in_place(&grads)?;
        let grad_norm = self.optimizer.clip_gradients(t.clip, t.clip_norm);
        let lr = self.lr(batch.step);
        self.optimizer.step(lr);
        // Values are read back only now: each read waits for the device, and an earlier one would leave
        // it idle while the host queues the clip and the update.
        let loss = comm.sum_value(share.to_kind(Kind::Float).double_value(&[]) as f32)?;
        Ok(StepReport {
            loss: f64::from(loss),
            accuracy: contrastive_accuracy(&global),
            lr,
            grad_norm: grad_norm.double_value(&[]),
            mlm_loss: mlm.map(|l| l.double_value(&[])),
        })
    }

    /// The second pass of gradient caching, one micro-batch at a time: ⟨e, dL/de⟩ carries the cached
    /// gradient `cached` `[rows, d]` of every embedding into the encoder. The first pass already recorded
    /// this step's batch-norm statistics, so they are put back afterwards rather than recorded twice.
    fn backward_through_cache(&self, batch: &StepBatch, cached: &Tensor, seed_pass: impl Fn(usize)) {
        let device = self.model.vars.device();
        let cached = cached.to_kind(Kind::Float);
        let statistics: Vec<(Tensor, Tensor)> = (self.model.running_statistics().into_iter())
            .map(|s| (s.copy(), s))
            .collect();
        for (pass, m) in batch.micro.iter().enumerate() {
            let rows: Vec<i64> = m.rows.iter().map(|&r| r as i64).collect();
            let rows = crate::device::upload(&Tensor::from_slice(&rows), device);
            seed_pass(pass);
            let e = crate::device::autocast_bf16(device.is_cuda(), || {
                self.model.embed_micro_batch(m, Pooling::Mean, true)
            });
            (e.to_kind(Kind::Float) * cached.index_select(0, &rows))
                .sum(Kind::Float)
                .backward();
        }
        tch::no_grad(|| {
            for (recorded, mut s) in statistics {
                s.copy_(&recorded);
            }
        });
    }
}

/// Each pair's loss weight by the size of its group (`train.weight_by_group_size`), on `device`.
fn group_weights(batch: &StepBatch, device: Device) -> Tensor {
    let w: Vec<f32> = (batch.pairs.iter())
        .map(|p| group_size_weight(p.group_size) as f32)
        .collect();
    crate::device::upload(&Tensor::from_slice(&w), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Norm, Preset};
    use crate::data::batch::plan_shard;
    use crate::data::dataset::Provenance;
    use crate::data::{Augment, Dataset, Group, PassLayout, Sampler, Transcript};
    use crate::dist::{RingConfig, SingleProcess, TcpRing};
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    fn dataset(dir: &std::path::Path) -> Dataset {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut transcripts = Vec::new();
        let mut groups = Vec::new();
        for g in 0..12u32 {
            let base: Vec<u8> = (0..rng.random_range(80..400))
                .map(|_| b"ACGT"[rng.random_range(0..4)])
                .collect();
            let mut members = Vec::new();
            for k in 0..2 {
                let seq = &base[k * 10..];
                members.push(transcripts.len() as u32);
                let id = format!("t{g}.{k}");
                transcripts
                    .push(Transcript::new(id, format!("g{g}"), g, seq, vec![seq.len() as u32 - 1], None).unwrap());
            }
            groups.push(Group {
                id: format!("g{g}"),
                transcripts: members,
            });
        }
        Dataset::write(dir, &groups, &transcripts, Provenance::default()).unwrap();
        Dataset::open(dir).unwrap()
    }

    fn config() -> Config {
        let mut c = Config::default();
        c.model.preset = Preset::Tiny;
        c.model.norm = Norm::Layer;
        c.model.dropout = 0.0;
        c.model.head_hidden = 32;
        c.model.projection_dim = 16;
        c.train.batch_size = 6;
        c.train.lr = 1e-3;
        // Adam divides by √v + ε: for gradient elements near zero it turns summation-order noise (which
        // differs between 1 and p processes) into steps up to lr. ε = 1e-6 bounds that amplification.
        c.train.eps = 1e-6;
        c.train.weight_by_group_size = true;
        c
    }

    /// Trains `steps` steps of `c` as rank `rank` of `world`, with `positions` per encoder pass; returns
    /// per-step losses and the final tensors.
    fn train(
        c: &Config,
        ds: &Dataset,
        (rank, world): (usize, usize),
        comm: &mut dyn Collective,
        steps: u64,
        positions: usize,
    ) -> (Vec<f64>, Vec<Tensor>) {
        let sampler = Sampler::new(c.train.seed, c.train.batch_size, ds.groups.len()).unwrap();
        let augment = Augment {
            mask_fraction: 0.15,
            max_shift: 3,
            max_len: 512,
        };
        let device = match c.train.device {
            crate::config::DeviceChoice::Cuda => Device::Cuda(0),
            _ => Device::Cpu,
        };
        let mut trainer = Trainer::new(c, device, sampler.steps_per_epoch());
        trainer.broadcast_state(comm, false).unwrap();
        let losses = (0..steps)
            .map(|step| {
                let shard = plan_shard(ds, &sampler, &augment, c.train.seed, step, rank, world).unwrap();
                trainer
                    .train_step(&shard.encode(PassLayout::one_per_line(positions)), comm)
                    .unwrap()
                    .loss
            })
            .collect();
        (
            losses,
            trainer.model.named_tensors().into_iter().map(|(_, t)| t).collect(),
        )
    }

    /// Trains `c` as every rank of a `world`-rank TCP ring on loopback, one thread per rank.
    fn train_ring(c: &Config, ds: &Dataset, world: usize, steps: u64) -> Vec<(Vec<f64>, Vec<Tensor>)> {
        let listeners: Vec<_> = (0..world)
            .map(|_| TcpRing::bind("127.0.0.1:0".parse().unwrap()).unwrap())
            .collect();
        let peers: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(rank, listener)| {
                    let peers = peers.clone();
                    s.spawn(move || {
                        let timeouts = RingConfig {
                            connect_timeout: Duration::from_secs(20),
                            op_timeout: Duration::from_secs(20),
                        };
                        let mut ring = TcpRing::connect(listener, rank, peers, b"test-token", timeouts).unwrap();
                        train(c, ds, (rank, world), &mut ring, steps, 1 << 14)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    /// Asserts two runs' losses and final tensors agree within `tolerance` (relative for losses).
    fn assert_same_run(
        what: &str,
        (l, p): &(Vec<f64>, Vec<Tensor>),
        (losses, params): &(Vec<f64>, Vec<Tensor>),
        tolerance: f64,
    ) {
        for (a, b) in l.iter().zip(losses) {
            assert!(
                (a - b).abs() <= tolerance * b.abs().max(1.0),
                "{what}: loss {l:?} vs {losses:?}"
            );
        }
        assert_eq!(p.len(), params.len());
        for (a, b) in p.iter().zip(params) {
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff <= tolerance, "{what}: a tensor differs by {diff}");
        }
    }

    #[test]
    fn two_and_three_ranks_compute_what_one_process_computes() {
        let _generator = crate::model::lock_generator();
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let c = config();
        let one = train(&c, &ds, (0, 1), &mut SingleProcess, 4, 1 << 14);
        for world in [2usize, 3] {
            for (rank, run) in train_ring(&c, &ds, world, 4).iter().enumerate() {
                assert_same_run(&format!("world {world} rank {rank}"), run, &one, 1e-5);
            }
        }
        let losses = &one.0;
        assert!(losses[3] < losses[0], "the run learns: {losses:?}");
    }

    /// A resumed job loads its checkpoint on rank 0 alone: the other ranks must end up with its weights,
    /// statistics, optimiser moments and step count bit for bit, whatever they started from.
    #[test]
    fn a_broadcast_hands_every_rank_rank_zeros_whole_state() {
        let _generator = crate::model::lock_generator();
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let listeners: Vec<_> = (0..2)
            .map(|_| TcpRing::bind("127.0.0.1:0".parse().unwrap()).unwrap())
            .collect();
        let peers: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let states: Vec<Vec<(String, Tensor)>> = std::thread::scope(|s| {
            let handles: Vec<_> = listeners
                .into_iter()
                .enumerate()
                .map(|(rank, listener)| {
                    let (peers, ds) = (peers.clone(), &ds);
                    s.spawn(move || {
                        let timeouts = RingConfig {
                            connect_timeout: Duration::from_secs(20),
                            op_timeout: Duration::from_secs(20),
                        };
                        let mut ring = TcpRing::connect(listener, rank, peers, b"test-token", timeouts).unwrap();
                        // Rank 0 as if restored: trained, with a step count that needs both halves. Rank 1
                        // from other weights and zero moments.
                        let mut c = config();
                        c.train.seed = 10 + rank as u64;
                        let sampler = Sampler::new(c.train.seed, c.train.batch_size, ds.groups.len()).unwrap();
                        let mut trainer = Trainer::new(&c, Device::Cpu, sampler.steps_per_epoch());
                        if rank == 0 {
                            for step in 0..2 {
                                let augment = Augment {
                                    mask_fraction: 0.0,
                                    max_shift: 0,
                                    max_len: 512,
                                };
                                let shard = plan_shard(ds, &sampler, &augment, 1, step, 0, 1).unwrap();
                                let batch = shard.encode(PassLayout::one_per_line(1 << 14));
                                trainer.train_step(&batch, &mut SingleProcess).unwrap();
                            }
                            trainer.optimizer.set_step_count((3 << 24) + 7);
                        }
                        trainer.broadcast_state(&mut ring, true).unwrap();
                        assert_eq!(trainer.optimizer.step_count(), (3 << 24) + 7, "rank {rank}");
                        let mut state = trainer.model.named_tensors();
                        state.extend(trainer.optimizer.state());
                        state
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(states[0].len(), states[1].len());
        let mut moved = 0;
        for ((name, a), (_, b)) in states[0].iter().zip(&states[1]) {
            assert!(a.equal(b), "{name} differs after the broadcast");
            moved += usize::from(name.ends_with("exp_avg_sq") && a.abs().sum(Kind::Float).double_value(&[]) > 0.0);
        }
        assert!(moved > 0, "the optimiser's moments were all zero: nothing was tested");
    }

    /// On a GPU (`scripts/gpu-check.sh` runs it): NCCL at world size 1 carries the projections' gather and
    /// the gradients' all-reduce on the device (the trainer's device path), and trains exactly as one
    /// process does. Without CUDA it says so and checks nothing.
    #[cfg(feature = "nccl")]
    #[test]
    fn nccl_on_the_device_trains_as_one_process() {
        let _generator = crate::model::lock_generator();
        crate::device::init();
        if !tch::Cuda::is_available() {
            eprintln!("SKIPPED: no CUDA device; this test runs on the GPU check");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let mut c = config();
        c.train.device = crate::config::DeviceChoice::Cuda;
        let id = crate::dist::NcclComm::unique_id().unwrap();
        let mut nccl = crate::dist::NcclComm::new(&id, 0, 1, 0, Duration::from_secs(60)).unwrap();
        assert!(nccl.device_collective().is_some());
        let with_nccl = train(&c, &ds, (0, 1), &mut nccl, 3, 1 << 14);
        let alone = train(&c, &ds, (0, 1), &mut SingleProcess, 3, 1 << 14);
        // The same kernels in the same order, so the same numbers up to bf16 autocast over CUDA's
        // non-deterministic reductions (convolution backward uses atomics): Adam moves an element whose
        // gradient is noise by up to lr = 1e-3 a step, hence 2e-3. A wrong gather or reduction moves the
        // losses by far more.
        assert_same_run("NCCL world of one", &with_nccl, &alone, 2e-3);
    }

    /// `train.batch_statistics = "step"`: a step of several encoder passes computes what one pass holding the
    /// whole step computes (loss, gradients, running statistics), packed or not; per-pass statistics do not.
    #[test]
    fn step_wide_batch_statistics_equal_one_pass_of_the_whole_step() {
        let _generator = crate::model::lock_generator();
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let mut c = config();
        c.model.norm = Norm::Batch;
        let sampler = Sampler::new(c.train.seed, c.train.batch_size, ds.groups.len()).unwrap();
        let augment = Augment {
            mask_fraction: 0.15,
            max_shift: 3,
            max_len: 512,
        };
        let shard = plan_shard(&ds, &sampler, &augment, c.train.seed, 0, 0, 1).unwrap();
        let step = |c: &Config, layout: PassLayout| {
            let batch = shard.encode(layout);
            let mut trainer = Trainer::new(c, Device::Cpu, sampler.steps_per_epoch());
            let loss = trainer.train_step(&batch, &mut SingleProcess).unwrap().loss;
            let mut tensors: Vec<Tensor> = (trainer.model.named_parameters().into_iter())
                .map(|(_, p)| p.grad())
                .filter(Tensor::defined)
                .collect();
            tensors.extend(trainer.model.running_statistics());
            (batch.micro.len(), loss, tensors)
        };
        // The largest difference against the largest value: tensors whose true gradient is 0 (a bias before
        // a batch norm) hold only rounding, which no per-tensor ratio can judge.
        let relative = |a: &[Tensor], b: &[Tensor]| {
            let largest = |t: &Tensor| t.abs().max().double_value(&[]);
            let worst = (a.iter().zip(b)).map(|(x, y)| largest(&(x - y))).fold(0.0, f64::max);
            worst / b.iter().map(largest).fold(0.0, f64::max)
        };
        let (passes, loss, reference) = step(&c, PassLayout::one_per_line(1 << 20));
        assert_eq!(passes, 1);
        let (passes, per_pass_loss, per_pass) = step(&c, PassLayout::one_per_line(512));
        assert!(passes >= 3, "{passes} passes");
        assert!(
            relative(&per_pass, &reference) > 1e-2,
            "per-pass statistics change the step"
        );
        assert!((per_pass_loss - loss).abs() > 1e-4 * loss.abs());
        c.train.batch_statistics = BatchStatistics::Step;
        let packed = PassLayout {
            packing_gap: Some(c.model.shape().packing_gap()),
            ..PassLayout::one_per_line(512)
        };
        for layout in [PassLayout::one_per_line(512), packed] {
            let (passes, step_loss, step_wide) = step(&c, layout);
            assert!(passes >= 3, "{passes} passes");
            assert!(
                (step_loss - loss).abs() <= 1e-5 * loss.abs(),
                "loss {step_loss} vs {loss}"
            );
            let off = relative(&step_wide, &reference);
            // f32 sums in another order over several passes than over one (measured 4e-5); the float64 check of
            // the same identity, to 1e-10, is model::tests::passes_embedded_jointly_equal_one_pass_of_them_all.
            assert!(off < 2e-4, "gradients and statistics off by {off:e} (relative)");
        }
    }

    /// With `model.mlm_weight` the step adds the masked-nucleotide loss: it is reported, its head gets
    /// gradients, and the encoder's gradients change; without it nothing of the kind exists.
    #[test]
    fn the_masked_nucleotide_objective_joins_the_step() {
        let _generator = crate::model::lock_generator();
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        let sampler = Sampler::new(0, 6, ds.groups.len()).unwrap();
        let augment = Augment {
            mask_fraction: 0.15,
            max_shift: 0,
            max_len: 512,
        };
        let batch = plan_shard(&ds, &sampler, &augment, 0, 0, 0, 1)
            .unwrap()
            .encode(PassLayout::one_per_line(1 << 14));
        let step = |weight: f64| {
            let mut c = config();
            c.model.mlm_weight = weight;
            let mut trainer = Trainer::new(&c, Device::Cpu, sampler.steps_per_epoch());
            let report = trainer.train_step(&batch, &mut SingleProcess).unwrap();
            let grad = |prefix: &str| -> f64 {
                (trainer.model.named_parameters().into_iter())
                    .filter(|(n, _)| n.starts_with(prefix))
                    .map(|(_, p)| p.grad().abs().sum(Kind::Float).double_value(&[]))
                    .sum()
            };
            (report, grad("mlm."), grad("encoder.stages.0.0.conv1"))
        };
        let (plain, none, encoder_plain) = step(0.0);
        let (with, head, encoder_with) = step(1.0);
        assert_eq!(plain.mlm_loss, None);
        assert_eq!(none, 0.0);
        let mlm = with.mlm_loss.unwrap();
        // Untrained, about chance (ln 4 = 1.386).
        assert!((0.5..3.0).contains(&mlm), "{mlm}");
        assert!(head > 0.0);
        assert!((encoder_with - encoder_plain).abs() > 1e-6 * encoder_plain);
        assert!(
            (with.loss - plain.loss).abs() < 1e-9 * plain.loss.abs(),
            "the contrastive loss is the same"
        );
    }

    #[test]
    fn gradient_caching_computes_what_the_plain_step_computes() {
        let _generator = crate::model::lock_generator();
        let dir = tempfile::tempdir().unwrap();
        let ds = dataset(dir.path());
        // Batch norm and dropout: the second pass must see the first pass's statistics and masks.
        let mut c = config();
        c.model.norm = Norm::Batch;
        c.model.dropout = 0.1;
        let sampler = Sampler::new(c.train.seed, c.train.batch_size, ds.groups.len()).unwrap();
        let augment = Augment {
            mask_fraction: 0.15,
            max_shift: 3,
            max_len: 512,
        };
        // One sequence per line, and packed (batch norm allows it): 3+ passes either way.
        let packed = PassLayout {
            packing_gap: Some(c.model.shape().packing_gap()),
            ..PassLayout::one_per_line(512)
        };
        // One step from the same weights; its gradients (left in place by the optimiser) and statistics.
        let step = |c: &Config, batch: &StepBatch| {
            let mut trainer = Trainer::new(c, Device::Cpu, sampler.steps_per_epoch());
            let loss = trainer.train_step(batch, &mut SingleProcess).unwrap().loss;
            let grads: Vec<Tensor> = trainer
                .model
                .named_parameters()
                .into_iter()
                .map(|(_, p)| p.grad())
                .collect();
            (loss, grads, trainer.model.running_statistics())
        };
        let largest_difference = |a: &[Tensor], b: &[Tensor]| {
            assert_eq!(a.len(), b.len());
            (a.iter().zip(b))
                .map(|(x, y)| (x - y).abs().max().double_value(&[]))
                .fold(0.0, f64::max)
        };
        let shard = plan_shard(&ds, &sampler, &augment, c.train.seed, 0, 0, 1).unwrap();
        let mut batch = shard.encode(packed);
        assert!(batch.micro.iter().any(|m| m.is_packed()));
        for layout in [packed, PassLayout::one_per_line(512)] {
            batch = shard.encode(layout);
            assert!(
                batch.micro.len() >= 3,
                "the step runs several encoder passes ({})",
                batch.micro.len()
            );
            let (loss, grads, statistics) = step(&c, &batch);
            c.train.gradient_cache = true;
            let (cached_loss, cached_grads, cached_statistics) = step(&c, &batch);
            assert!(
                (loss - cached_loss).abs() <= 1e-6 * loss.abs(),
                "loss {cached_loss} vs {loss}"
            );
            let scale = grads
                .iter()
                .map(|g| g.abs().max().double_value(&[]))
                .fold(0.0, f64::max);
            let grad_difference = largest_difference(&cached_grads, &grads);
            assert!(
                grad_difference <= 1e-5 * scale,
                "gradients differ by {grad_difference} (largest {scale})"
            );
            let statistics_difference = largest_difference(&cached_statistics, &statistics);
            assert!(
                statistics_difference <= 1e-6,
                "running statistics differ by {statistics_difference}"
            );
            c.train.gradient_cache = false;
        }
        // Both checks can fail: other dropout masks move the gradients, a second record the statistics.
        let (_, grads, _) = step(&c, &batch);
        let scale = grads
            .iter()
            .map(|g| g.abs().max().double_value(&[]))
            .fold(0.0, f64::max);
        c.model.dropout = 0.2;
        let (_, other_grads, _) = step(&c, &batch);
        assert!(
            largest_difference(&other_grads, &grads) > 1e-3 * scale,
            "dropout changes the gradients"
        );
        c.model.dropout = 0.0;
        let recorded = |times: usize| {
            let trainer = Trainer::new(&c, Device::Cpu, sampler.steps_per_epoch());
            for _ in 0..times {
                let _ = tch::no_grad(|| trainer.model.embed_micro_batches(&batch.micro, true));
            }
            trainer.model.running_statistics()
        };
        let twice_difference = largest_difference(&recorded(2), &recorded(1));
        assert!(
            twice_difference > 1e-3,
            "recording twice moves the statistics ({twice_difference})"
        );

        // Across ranks too, over several steps (layer norm: batch statistics depend on how rows are split
        // between ranks).
        let mut c = config();
        let one = train(&c, &ds, (0, 1), &mut SingleProcess, 3, 1 << 14);
        c.train.gradient_cache = true;
        for (rank, run) in train_ring(&c, &ds, 2, 3).iter().enumerate() {
            assert_same_run(&format!("gradient caching, rank {rank} of 2"), run, &one, 1e-5);
        }
    }
}
