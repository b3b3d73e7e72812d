//! The model: dilated ResNet encoder, projection head and contrastive losses, written for one device.
//!
//! Must not depend on tokio, tonic or object_store. Tensor names are stable (`encoder.stem.conv.weight`,
//! `encoder.stages.0.1.norm2.running_var`, `head.fc3.weight`, ...) because checkpoints, the Python reference
//! in `benches/` and the probe runner all address tensors by name.

pub mod encoder;
pub mod head;
pub mod loss;
pub mod norm;
pub mod weights;

use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

pub use encoder::Encoder;
pub use head::ProjectionHead;
pub use loss::{Views, contrastive_accuracy, contrastive_loss, group_size_weight};

use crate::config::{ModelConfig, Pooling};
use crate::data::MicroBatch;

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// libtorch reported an error.
    #[error("{context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
    /// A weights file does not fit this model.
    #[error("{path}: {why}")]
    Incompatible {
        /// The weights file.
        path: String,
        /// Which tensor is missing or mis-shaped.
        why: String,
    },
}

/// Result alias of the model layer.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Encoder plus projection head, owning their parameters in one `VarStore`.
#[derive(Debug)]
pub struct Model {
    /// All parameters and buffers, named.
    pub vars: nn::VarStore,
    /// The encoder (`encoder.*`).
    pub encoder: Encoder,
    /// The projection head (`head.*`).
    pub head: ProjectionHead,
    /// With `model.mlm_weight > 0`: the masked-nucleotide head (`mlm.*`), a 1×1 convolution from each
    /// position of the last stage to the logits of the `stride` input positions it covers (4 bases each).
    pub mlm: Option<nn::Conv1D>,
}

impl Model {
    /// Builds the model on `device`, initialised from `seed`.
    ///
    /// Initial values come from the project's own seeded generator, per tensor name, not from libtorch's
    /// global one: the same seed gives the same model on any device and whatever else the process (or
    /// another thread) draws.
    pub fn new(config: &ModelConfig, device: Device, seed: u64) -> Self {
        let vars = nn::VarStore::new(device);
        let root = vars.root();
        let encoder = Encoder::new(&(&root / "encoder"), config);
        let head = ProjectionHead::new(&(&root / "head"), encoder.out_dim(), config);
        let mlm = (config.mlm_weight > 0.0).then(|| {
            let outputs = encoder.stride() * 4;
            nn::conv1d(&root / "mlm", encoder.out_dim(), outputs, 1, Default::default())
        });
        let model = Self {
            vars,
            encoder,
            head,
            mlm,
        };
        model.initialise(seed);
        model
    }

    /// PyTorch's default for convolutions and linear layers, U(−1/√fan_in, 1/√fan_in) for weights and
    /// their biases, drawn per tensor from (seed, name); normalisation layers keep weight 1, bias 0.
    fn initialise(&self, seed: u64) {
        use rand::Rng;
        let tensors: std::collections::HashMap<String, Tensor> = self.vars.variables();
        let fan_in = |weight: &Tensor| weight.size().iter().skip(1).product::<i64>().max(1);
        tch::no_grad(|| {
            for (name, tensor) in self.named_parameters() {
                if name.contains(".norm") {
                    continue;
                }
                let weight = match name.strip_suffix(".bias") {
                    Some(layer) => tensors.get(&format!("{layer}.weight")),
                    None => Some(&tensor),
                };
                let Some(weight) = weight else { continue };
                let bound = 1.0 / (fan_in(weight) as f64).sqrt();
                let name_hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
                });
                let mut rng = crate::data::sampler::rng_for(&[seed, name_hash]);
                let values: Vec<f32> = (0..tensor.numel())
                    .map(|_| rng.random_range(-bound..bound) as f32)
                    .collect();
                let source = Tensor::from_slice(&values)
                    .view(tensor.size().as_slice())
                    .to_device(tensor.device());
                tensor.shallow_clone().copy_(&source);
            }
        });
    }

    /// Number of trainable scalars.
    pub fn parameter_count(&self) -> i64 {
        self.vars.trainable_variables().iter().map(|t| t.numel() as i64).sum()
    }

    /// Trainable parameters sorted by name (a stable order for the optimiser and gradient buckets).
    pub fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self
            .vars
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Every tensor (parameters and normalisation buffers) sorted by name.
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut named: Vec<(String, Tensor)> = self.vars.variables().into_iter().collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// Writes all tensors to a safetensors file (f32, on CPU).
    pub fn save(&self, path: &Path) -> Result<()> {
        let bytes = weights::encode(&self.named_tensors())?;
        std::fs::write(path, bytes).map_err(|e| ModelError::Incompatible {
            path: path.display().to_string(),
            why: format!("cannot write: {e}"),
        })
    }

    /// Loads every tensor of this model from a safetensors file; errors name a missing or mis-shaped tensor.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Incompatible {
            path: path.display().to_string(),
            why: format!("cannot read: {e}"),
        })?;
        weights::decode(&bytes)
            .and_then(|tensors| self.load_tensors(tensors))
            .map_err(|e| match e {
                ModelError::Incompatible { why, .. } => ModelError::Incompatible {
                    path: path.display().to_string(),
                    why,
                },
                other => other,
            })
    }

    /// Copies named tensors into this model. They must be exactly the model's: every tensor present with its
    /// shape, none left over (weights of another architecture, such as batch-norm statistics under a
    /// group-norm configuration, are refused rather than half used), and every value finite.
    pub fn load_tensors(&mut self, tensors: Vec<(String, Tensor)>) -> Result<()> {
        let source: std::collections::HashMap<String, Tensor> = tensors.into_iter().collect();
        let incompatible = |why: String| ModelError::Incompatible {
            path: "<tensors>".into(),
            why,
        };
        let own = self.named_tensors();
        let mut extra: Vec<&String> = (source.keys())
            .filter(|name| !own.iter().any(|(n, _)| n == *name))
            .collect();
        if !extra.is_empty() {
            extra.sort();
            let shown: Vec<&str> = extra.iter().take(3).map(|s| s.as_str()).collect();
            return Err(incompatible(format!(
                "holds {} tensors this model does not have ({}{}): the weights are of another architecture \
                 than the configuration describes",
                extra.len(),
                shown.join(", "),
                if extra.len() > 3 { ", ..." } else { "" }
            )));
        }
        tch::no_grad(|| {
            for (name, mut tensor) in own {
                let value = source
                    .get(&name)
                    .ok_or_else(|| incompatible(format!("no tensor {name}")))?;
                if value.size() != tensor.size() {
                    return Err(incompatible(format!(
                        "{name} has shape {:?}, the model needs {:?}",
                        value.size(),
                        tensor.size()
                    )));
                }
                if value.is_floating_point() && value.isfinite().all().int64_value(&[]) == 0 {
                    return Err(incompatible(format!("{name} holds a NaN or infinite value")));
                }
                tensor.copy_(value);
            }
            Ok(())
        })
    }

    /// Embeds the rows of `micro` batches with the encoder; returns `[rows, D]` `f32` in row order
    /// (row `r` of the result is the sequence whose `MicroBatch::rows` entry is `r`).
    pub fn embed_micro_batches(&self, micro: &[MicroBatch], train: bool) -> Tensor {
        self.embed_micro_batches_pooled(micro, Pooling::Mean, train)
    }

    /// As [`embed_micro_batches`](Self::embed_micro_batches), pooled as `pooling` says.
    pub fn embed_micro_batches_pooled(&self, micro: &[MicroBatch], pooling: Pooling, train: bool) -> Tensor {
        let pieces: Vec<Tensor> = micro
            .iter()
            .map(|m| self.embed_micro_batch(m, pooling, train))
            .collect();
        in_row_order(&pieces, micro)
    }

    /// Embeds one micro-batch: `[m.rows.len(), D]` in the micro-batch's own order. A packed micro-batch
    /// (only training makes them) is pooled by mean whatever `pooling` says: region pooling needs one
    /// sequence per line.
    pub fn embed_micro_batch(&self, m: &MicroBatch, pooling: Pooling, train: bool) -> Tensor {
        let mut out = self.embed_jointly(std::slice::from_ref(m), pooling, train);
        out.swap_remove(0)
    }

    /// Embeds a training step's passes (mean pooling, training mode) in row order, with the masked-nucleotide
    /// loss when the model has its head: the mean cross-entropy over every masked base of the passes
    /// (`None` without the head or without masked bases). `jointly`: batch norms take statistics over all
    /// passes (`train.batch_statistics = "step"`), else over each. `before_pass(i)` runs before pass `i` (or
    /// once, with 0, jointly): the step seeds dropout there.
    pub fn embed_step(
        &self,
        micro: &[MicroBatch],
        jointly: bool,
        before_pass: impl Fn(usize),
    ) -> (Tensor, Option<Tensor>) {
        let outputs: Vec<(Tensor, Tensor)> = if jointly {
            before_pass(0);
            self.encode_passes(micro, Pooling::Mean, true)
        } else {
            (micro.iter().enumerate())
                .flat_map(|(i, m)| {
                    before_pass(i);
                    self.encode_passes(std::slice::from_ref(m), Pooling::Mean, true)
                })
                .collect()
        };
        let mlm = self.mlm.as_ref().and_then(|head| {
            let mut total: Option<Tensor> = None;
            let mut count = 0usize;
            for ((_, h), m) in outputs.iter().zip(micro) {
                if m.masked_bases.is_empty() {
                    continue;
                }
                let (lines, width) = (m.lines as i64, m.padded_len as i64);
                // [lines, stride·4, L/stride] → one row of 4 logits per input position: row line·L + position.
                let logits = h.apply(head).permute([0, 2, 1]).reshape([lines * width, 4]);
                let device = logits.device();
                let index: Vec<i64> = (m.masked_bases.iter())
                    .map(|b| i64::from(b.line) * width + i64::from(b.position))
                    .collect();
                let bases: Vec<i64> = m.masked_bases.iter().map(|b| i64::from(b.base)).collect();
                let picked = logits
                    .index_select(0, &crate::device::upload(&Tensor::from_slice(&index), device))
                    .to_kind(Kind::Float);
                let sum = picked.cross_entropy_loss::<Tensor>(
                    &crate::device::upload(&Tensor::from_slice(&bases), device),
                    None,
                    tch::Reduction::Sum,
                    -100,
                    0.0,
                );
                count += index.len();
                total = Some(match total {
                    None => sum,
                    Some(t) => t + sum,
                });
            }
            total.map(|t| t / count as f64)
        });
        let pieces: Vec<Tensor> = outputs.into_iter().map(|(pooled, _)| pooled).collect();
        (in_row_order(&pieces, micro), mlm)
    }

    /// Embeds several micro-batches as one batch (one tensor each, as [`embed_micro_batch`](Self::embed_micro_batch)
    /// gives): in training, every batch norm takes its statistics over all of them
    /// (`train.batch_statistics = "step"`).
    pub fn embed_jointly(&self, micro: &[MicroBatch], pooling: Pooling, train: bool) -> Vec<Tensor> {
        (self.encode_passes(micro, pooling, train).into_iter())
            .map(|(pooled, _)| pooled)
            .collect()
    }

    /// The encoder jointly over `micro`: each pass's embeddings and last-stage output.
    fn encode_passes(&self, micro: &[MicroBatch], pooling: Pooling, train: bool) -> Vec<(Tensor, Tensor)> {
        let device = self.vars.device();
        let inputs: Vec<(Tensor, PassShape)> = (micro.iter())
            .map(|m| {
                let lines = m.lines as i64;
                // Bytes in quarter units travel; the floats are made on the device (4× less to copy).
                let units =
                    Tensor::from_slice(&m.tracks).view([lines, crate::data::TRACKS as i64, m.padded_len as i64]);
                let x = crate::device::upload(&units, device).to_kind(Kind::Float) * f64::from(crate::data::TRACK_UNIT);
                let shape = if m.is_packed() {
                    debug_assert_eq!(pooling, Pooling::Mean, "region pooling of a packed micro-batch");
                    PassShape::Packed(packed_layout(m, device))
                } else {
                    let lengths = Tensor::from_slice(&m.lengths.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
                    PassShape::Padded(crate::device::upload(&lengths, device))
                };
                (x, shape)
            })
            .collect();
        let passes: Vec<encoder::Pass<'_>> = (inputs.iter())
            .map(|(x, shape)| match shape {
                PassShape::Padded(lengths) => encoder::Pass::Padded { x, lengths, pooling },
                PassShape::Packed(layout) => encoder::Pass::Packed { x, layout },
            })
            .collect();
        self.encoder.forward_passes_with_trunk(&passes, train)
    }

    /// Sets every running statistic of the encoder's batch norms to its average over `passes` run in training
    /// mode without gradients (the projection head is not run: embeddings do not use it), each layer normalised by the pass's own statistics as in training: the statistics a model
    /// that is never put in evaluation mode effectively uses. Nothing else changes. A freshly initialised
    /// model's running statistics are never updated (every batch norm is then the identity in evaluation
    /// mode); calibrated, the random-weight baseline is at its strongest fair form. No-op without batch norm
    /// or passes. Dropout draws from libtorch's generator: seed it first for a repeatable result. Variances
    /// are stored unbiased (× n / (n − 1)), as training stores them.
    pub fn calibrate_batch_norm(&self, passes: &[MicroBatch]) {
        let statistics = self.running_statistics();
        if statistics.is_empty() || passes.is_empty() {
            return;
        }
        tch::no_grad(|| {
            let mut sums: Vec<Tensor> = statistics
                .iter()
                .map(|s| s.to_kind(Kind::Double).zeros_like())
                .collect();
            for m in passes {
                let before: Vec<Tensor> = statistics.iter().map(Tensor::copy).collect();
                let _ = self.embed_micro_batch(m, Pooling::Mean, true);
                for ((after, before), sum) in statistics.iter().zip(&before).zip(&mut sums) {
                    // The pass moved the statistic by MOMENTUM towards this pass's value: recover that value.
                    let own = (after - before).to_kind(Kind::Double) / norm::MOMENTUM + before.to_kind(Kind::Double);
                    let _ = sum.g_add_(&own);
                }
            }
            for (statistic, sum) in statistics.iter().zip(&sums) {
                let mean = (sum / passes.len() as f64).to_kind(statistic.kind());
                statistic.shallow_clone().copy_(&mean);
            }
        });
    }

    /// The batch-norm running statistics (shallow handles): what an evaluation-mode pass reads and a
    /// training-mode pass updates.
    pub fn running_statistics(&self) -> Vec<Tensor> {
        self.named_tensors()
            .into_iter()
            .filter(|(name, _)| name.ends_with(".running_mean") || name.ends_with(".running_var"))
            .map(|(_, t)| t)
            .collect()
    }
}

/// How the sequences of a pass lie: one per line with these lengths, or packed.
enum PassShape {
    Padded(Tensor),
    Packed(encoder::PackedLayout),
}

/// The encoder's view of a packed micro-batch's placements, on `device`.
fn packed_layout(m: &MicroBatch, device: Device) -> encoder::PackedLayout {
    let spans: Vec<(usize, usize, usize)> = (m.placements.iter().zip(&m.lengths))
        .map(|(p, &len)| (p.line as usize, p.offset as usize, len as usize))
        .collect();
    encoder::PackedLayout::new(m.lines, m.padded_len, &spans, device)
}

/// Serialises the tests that seed and draw from libtorch's generator, which is process-wide: the test
/// harness runs tests on several threads, and another test's `manual_seed` between a seed and its draws
/// (dropout, `randn`) would change them.
#[cfg(test)]
pub(crate) fn lock_generator() -> std::sync::MutexGuard<'static, ()> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    GENERATOR.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Stacks per-micro-batch results (`pieces[i]` holds the rows of `micro[i]`, in its order) into one tensor
/// in row order: row `r` of the result is the sequence whose [`MicroBatch::rows`] entry is `r`.
pub fn in_row_order(pieces: &[Tensor], micro: &[MicroBatch]) -> Tensor {
    let stacked = Tensor::cat(pieces, 0);
    // `order[k]` is the row of stacked position k; invert it to gather rows in order.
    let order = micro.iter().flat_map(|m| m.rows.iter().copied());
    let mut inverse = vec![0i64; micro.iter().map(|m| m.rows.len()).sum()];
    for (k, r) in order.enumerate() {
        inverse[r] = k as i64;
    }
    stacked.index_select(
        0,
        &crate::device::upload(&Tensor::from_slice(&inverse), stacked.device()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Norm, Preset};
    use crate::data::Transcript;
    use crate::data::batch::encode_for_embedding;

    fn config(norm: Norm) -> ModelConfig {
        ModelConfig {
            preset: Preset::Tiny,
            norm,
            head_hidden: 32,
            projection_dim: 16,
            ..Default::default()
        }
    }

    fn random_transcript(seed: u64, len: usize) -> Transcript {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let seq: Vec<u8> = (0..len).map(|_| b"ACGT"[rng.random_range(0..4)]).collect();
        let mid = (len / 2) as u32;
        Transcript::new(
            "t",
            "g",
            0,
            &seq,
            vec![mid, len as u32 - 1],
            Some((3, (len as u32 - 3) / 3 * 3)),
        )
        .unwrap()
    }

    #[test]
    fn calibration_sets_running_statistics_to_the_passes_and_changes_nothing_else() {
        let _generator = lock_generator();
        let model = Model::new(
            &ModelConfig {
                dropout: 0.0,
                ..config(Norm::Batch)
            },
            Device::Cpu,
            3,
        );
        let rows: Vec<Transcript> = (0..6)
            .map(|i| random_transcript(20 + i, 200 + 37 * i as usize))
            .collect();
        let refs: Vec<&Transcript> = rows.iter().collect();
        let one_pass = encode_for_embedding(&refs, 1 << 20);
        assert_eq!(one_pass.len(), 1);
        let before: Vec<(String, Tensor)> = model.named_tensors().into_iter().map(|(n, t)| (n, t.copy())).collect();
        let uncalibrated = model.embed_micro_batches(&one_pass, false);
        model.calibrate_batch_norm(&one_pass);
        for ((name, old), (_, new)) in before.iter().zip(model.named_tensors()) {
            let changed = old
                .to_kind(Kind::Double)
                .not_equal_tensor(&new.to_kind(Kind::Double))
                .any()
                .int64_value(&[])
                == 1;
            let statistic = name.ends_with("running_mean") || name.ends_with("running_var");
            assert_eq!(
                changed,
                statistic && name.starts_with("encoder."),
                "{name}: only the encoder's running statistics change (the head is not run)"
            );
        }
        // Calibrated on one pass, evaluation mode normalises that pass as training mode does, but for the
        // Bessel factor of the stored variance (n / (n − 1), n = real positions at a layer: about 1.6 % at
        // the deepest layer of these short transcripts).
        let train = model.embed_micro_batches(&one_pass, true).to_kind(Kind::Double);
        model.calibrate_batch_norm(&one_pass);
        let eval = model.embed_micro_batches(&one_pass, false).to_kind(Kind::Double);
        let worst = (&eval - &train).abs().max().double_value(&[]);
        let scale = train.abs().max().double_value(&[]);
        assert!(
            worst <= 0.03 * scale,
            "eval after calibration vs train: {worst} (scale {scale})"
        );
        let before = (uncalibrated.to_kind(Kind::Double) - &train)
            .abs()
            .max()
            .double_value(&[]);
        assert!(
            before > 10.0 * worst,
            "uncalibrated eval differed from train by only {before} (calibrated {worst})"
        );
        // Two passes: the average of each pass's statistics.
        let halves: Vec<Vec<MicroBatch>> = [&refs[..3], &refs[3..]]
            .iter()
            .map(|part| encode_for_embedding(part, 1 << 20))
            .collect();
        let each: Vec<Vec<Tensor>> = halves
            .iter()
            .map(|h| {
                model.calibrate_batch_norm(h);
                model.running_statistics().iter().map(Tensor::copy).collect()
            })
            .collect();
        let both: Vec<MicroBatch> = halves.concat();
        model.calibrate_batch_norm(&both);
        for (k, got) in model.running_statistics().iter().enumerate() {
            let want = (&each[0][k] + &each[1][k]) / 2.0;
            let err = (got - &want).abs().max().double_value(&[]);
            assert!(
                err <= 1e-5 * (1.0 + want.abs().max().double_value(&[])),
                "statistic {k}: {err}"
            );
        }
    }

    /// Several passes embedded jointly in training take one set of batch-norm statistics, so they give what
    /// one pass holding every sequence gives (padding does not count), values, running statistics and
    /// gradients; embedded one at a time they do not. A float64 model, so the comparison is exact to rounding.
    #[test]
    fn passes_embedded_jointly_equal_one_pass_of_them_all() {
        let _generator = lock_generator();
        let cfg = ModelConfig {
            dropout: 0.0,
            ..config(Norm::Batch)
        };
        let rows: Vec<Transcript> = (0..6)
            .map(|i| random_transcript(60 + i, 150 + 90 * i as usize))
            .collect();
        let refs: Vec<&Transcript> = rows.iter().collect();
        let one = encode_for_embedding(&refs, 1 << 20);
        let several = encode_for_embedding(&refs, 1024);
        assert_eq!(one.len(), 1);
        assert!(several.len() >= 3, "{} passes", several.len());
        let run = |micro: &[MicroBatch], jointly: bool| {
            let mut model = Model::new(&cfg, Device::Cpu, 4);
            model.vars.double();
            let inputs: Vec<(Tensor, Tensor)> = (micro.iter()).map(|m| pass_input(m, Kind::Double)).collect();
            let passes: Vec<encoder::Pass<'_>> = (inputs.iter())
                .map(|(x, lengths)| encoder::Pass::Padded {
                    x,
                    lengths,
                    pooling: Pooling::Mean,
                })
                .collect();
            let pieces = if jointly {
                model.encoder.forward_passes(&passes, true)
            } else {
                (passes.iter())
                    .flat_map(|p| model.encoder.forward_passes(std::slice::from_ref(p), true))
                    .collect()
            };
            let e = in_row_order(&pieces, micro);
            (&e * &e.sin()).sum(Kind::Double).backward();
            let grads: Vec<Tensor> = (model.named_parameters().into_iter())
                .filter(|(name, _)| name.starts_with("encoder."))
                .map(|(_, p)| p.grad().copy())
                .collect();
            let stats: Vec<Tensor> = model.running_statistics().iter().map(Tensor::copy).collect();
            (e.detach(), grads, stats)
        };
        let reference = run(&one, false);
        let worst = |a: &[Tensor], b: &[Tensor]| {
            (a.iter().zip(b))
                .map(|(a, b)| (a - b).abs().max().double_value(&[]) / (1.0 + b.abs().max().double_value(&[])))
                .fold(0.0, f64::max)
        };
        let joint = run(&several, true);
        assert!(
            worst(&[joint.0.shallow_clone()], &[reference.0.shallow_clone()]) < 1e-10,
            "embeddings"
        );
        assert!(worst(&joint.1, &reference.1) < 1e-10, "gradients");
        assert!(worst(&joint.2, &reference.2) < 1e-10, "running statistics");
        let apart = run(&several, false);
        assert!(
            worst(&[apart.0], &[reference.0]) > 1e-3,
            "per-pass statistics differ from the joint ones"
        );
    }

    /// The masked-nucleotide loss of a training step equals a float64 computation by hand from the last
    /// stage's output and the head's weights: per masked base, the log-softmax of the 4 logits of its slot
    /// within its window, averaged. A model without the head has no `mlm.*` tensors and no loss.
    #[test]
    fn masked_nucleotide_loss_matches_a_float64_computation() {
        use crate::data::batch::{PassLayout, ViewSpec, encode_views};
        let _generator = lock_generator();
        let cfg = ModelConfig {
            dropout: 0.0,
            mlm_weight: 1.0,
            ..config(Norm::Layer)
        };
        let model = Model::new(&cfg, Device::Cpu, 8);
        let views: Vec<ViewSpec> = [150usize, 97, 260]
            .iter()
            .enumerate()
            .map(|(i, &len)| ViewSpec {
                masked: (3..len as u32).step_by(7 + i).collect(),
                ..ViewSpec::plain(&random_transcript(70 + i as u64, len))
            })
            .collect();
        let micro = encode_views(&views, PassLayout::one_per_line(1 << 20));
        assert_eq!(micro.len(), 1);
        let (_, loss) = model.embed_step(&micro, false, |_| {});
        let loss = loss.unwrap().double_value(&[]);
        // By hand: h [lines, C, L/s] of the same pass, the head's weight [4s, C, 1] and bias [4s].
        let m = &micro[0];
        let (x, lengths) = pass_input(m, Kind::Float);
        let pass = encoder::Pass::Padded {
            x: &x,
            lengths: &lengths,
            pooling: Pooling::Mean,
        };
        let (_, h) = model
            .encoder
            .forward_passes_with_trunk(std::slice::from_ref(&pass), true)
            .remove(0);
        let h = h.to_kind(Kind::Double);
        let head = model.mlm.as_ref().unwrap();
        let w = head.ws.to_kind(Kind::Double).squeeze_dim(2);
        let b = head.bs.as_ref().unwrap().to_kind(Kind::Double);
        let s = model.encoder.stride();
        let mut total = 0.0;
        for t in &m.masked_bases {
            let (line, pos) = (i64::from(t.line), i64::from(t.position));
            let column = h.get(line).select(1, pos / s); // [C]
            let logits: Vec<f64> = (0..4)
                .map(|k| {
                    let row = (pos % s) * 4 + k;
                    (w.get(row) * &column).sum(Kind::Double).double_value(&[]) + b.double_value(&[row])
                })
                .collect();
            let largest = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = largest + logits.iter().map(|l| (l - largest).exp()).sum::<f64>().ln();
            total += log_sum - logits[usize::from(t.base)];
        }
        let by_hand = total / m.masked_bases.len() as f64;
        assert!(m.masked_bases.len() > 50);
        assert!((loss - by_hand).abs() < 1e-5 * by_hand, "{loss} vs {by_hand}");
        let plain = Model::new(&config(Norm::Layer), Device::Cpu, 8);
        assert!(plain.mlm.is_none() && plain.named_tensors().iter().all(|(n, _)| !n.starts_with("mlm.")));
        assert!(plain.embed_step(&micro, false, |_| {}).1.is_none());
    }

    #[test]
    fn embedding_does_not_depend_on_padding_in_eval() {
        let _generator = crate::model::lock_generator();
        for norm in [Norm::Batch, Norm::Group, Norm::Layer] {
            let model = Model::new(&config(norm), Device::Cpu, 1);
            // Make running statistics non-trivial so eval-mode batch norm is exercised for real.
            let warm: Vec<Transcript> = (0..4)
                .map(|i| random_transcript(10 + i, 300 + 50 * i as usize))
                .collect();
            let refs: Vec<&Transcript> = warm.iter().collect();
            let _ = model.embed_micro_batches(&encode_for_embedding(&refs, 1 << 20), true);
            let t = random_transcript(7, 1000);
            let alone = model.embed_micro_batches(&encode_for_embedding(&[&t], 1 << 20), false);
            // The same sequence sharing a pass padded to 12,288 with a long neighbour.
            let long = random_transcript(8, 12_288);
            let padded = model.embed_micro_batches(&encode_for_embedding(&[&t, &long], 1 << 20), false);
            let diff = (alone.get(0) - padded.get(0)).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{norm:?}: {diff}");
            let scale = alone.abs().max().double_value(&[]);
            assert!(scale > 1e-3, "embedding is not trivially zero");
        }
    }

    /// Sequences of awkward lengths (not multiples of 32) in one pass, one per line or packed `gap` apart.
    fn packing_case(gap: usize) -> (Vec<MicroBatch>, Vec<MicroBatch>) {
        use crate::data::batch::{PassLayout, ViewSpec, encode_views};
        let views: Vec<ViewSpec> = [301usize, 77, 1000, 45, 530, 120]
            .iter()
            .enumerate()
            .map(|(i, &len)| ViewSpec::plain(&random_transcript(40 + i as u64, len)))
            .collect();
        let unpacked = encode_views(&views, PassLayout::one_per_line(1 << 20));
        let packed = encode_views(
            &views,
            PassLayout {
                position_budget: 1 << 20,
                packing_gap: Some(gap),
            },
        );
        assert_eq!((unpacked.len(), packed.len()), (1, 1));
        assert!(
            packed[0].lines < packed[0].rows.len(),
            "not packed: {:?}",
            packed[0].placements
        );
        (unpacked, packed)
    }

    /// Embeds one micro-batch with `model` run in `kind`, through the layout's own encoder entry.
    /// A micro-batch's input tracks `[lines, 6, L]` in `kind` on the CPU, and its lengths.
    fn pass_input(m: &MicroBatch, kind: Kind) -> (Tensor, Tensor) {
        let x = Tensor::from_slice(&m.tracks)
            .view([m.lines as i64, 6, m.padded_len as i64])
            .to_kind(kind)
            * f64::from(crate::data::TRACK_UNIT);
        let lengths: Vec<i64> = m.lengths.iter().map(|&l| i64::from(l)).collect();
        (x, Tensor::from_slice(&lengths))
    }

    fn embed_as(model: &Model, m: &MicroBatch, kind: Kind, train: bool) -> Tensor {
        let (x, lengths) = pass_input(m, kind);
        let e = if m.is_packed() {
            model.encoder.forward_packed(&x, &packed_layout(m, Device::Cpu), train)
        } else {
            model.encoder.forward(&x, &lengths, train)
        };
        in_row_order(&[e], std::slice::from_ref(m))
    }

    /// Packed `packing_gap` apart, a sequence's embedding is the one it gets alone in its line, in
    /// evaluation (per sequence) and in training (batch statistics over the same positions), and so are
    /// the gradients: in `f64`, to 1e-9 relative (in `f32` the two layouts' different reduction orders
    /// leave ~5e-3 in the gradients, which `f64` shows to be rounding). Packed closer, sequences see each
    /// other. Two shapes: the presets' kernel 2 with dilations 1–8, and kernel 4 with odd and even ones.
    /// The `f32` path of training is checked on values.
    #[test]
    fn packed_sequences_do_not_see_each_other() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(17);
        let shapes = [
            config(Norm::Batch),
            ModelConfig {
                kernel: Some(4),
                dilations: Some(vec![3, 2, 5, 1]),
                ..config(Norm::Batch)
            },
        ];
        let relative =
            |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]) / a.abs().max().double_value(&[]).max(1e-12);
        for base in shapes {
            let config = ModelConfig { dropout: 0.0, ..base };
            let gap = config.shape().packing_gap();
            let (unpacked, packed) = packing_case(gap);
            let (_, adjacent) = packing_case(0);
            let f32_model = Model::new(&config, Device::Cpu, 3);
            let f32_diff = relative(
                &tch::no_grad(|| f32_model.embed_micro_batches(&unpacked, true)),
                &tch::no_grad(|| f32_model.embed_micro_batches(&packed, true)),
            );
            assert!(f32_diff < 1e-4, "gap {gap}, f32 training values: {f32_diff}");

            let mut model = Model::new(&config, Device::Cpu, 3);
            model.vars.double();
            // Evaluation, with non-trivial running statistics.
            let _ = tch::no_grad(|| embed_as(&model, &unpacked[0], Kind::Double, true));
            let alone = tch::no_grad(|| embed_as(&model, &unpacked[0], Kind::Double, false));
            let together = tch::no_grad(|| embed_as(&model, &packed[0], Kind::Double, false));
            assert!(
                relative(&alone, &together) < 1e-9,
                "gap {gap}, evaluation {}",
                relative(&alone, &together)
            );
            let near = tch::no_grad(|| embed_as(&model, &adjacent[0], Kind::Double, false));
            let leak = relative(&alone, &near);
            assert!(leak > 1e-3, "gap 0 should leak: {leak}");
            // Training: values and every encoder parameter's gradient.
            let weights = Tensor::randn([6, model.encoder.out_dim()], (Kind::Double, Device::Cpu));
            let mut runs = Vec::new();
            for m in [&unpacked[0], &packed[0]] {
                let mut model = Model::new(&config, Device::Cpu, 3);
                model.vars.double();
                let e = embed_as(&model, m, Kind::Double, true);
                (&e * &weights).sum(Kind::Double).backward();
                let grads: Vec<(String, Tensor)> = (model.named_parameters().into_iter())
                    .filter(|(name, _)| name.starts_with("encoder."))
                    .map(|(name, t)| (name, t.grad().copy()))
                    .collect();
                runs.push((e.detach(), grads));
            }
            let (a, b) = (&runs[0], &runs[1]);
            assert!(relative(&a.0, &b.0) < 1e-9, "gap {gap}, training values");
            for ((name, ga), (_, gb)) in a.1.iter().zip(&b.1) {
                // The stem convolution's bias has a true gradient of 0 (batch norm follows): skip it.
                if ga.abs().max().double_value(&[]) < 1e-6 {
                    continue;
                }
                let rel = relative(ga, gb);
                assert!(rel < 1e-9, "gap {gap}, gradient of {name}: {rel}");
            }
        }
    }

    /// Encoder gradients of a training pass in `f32` against the same pass in `f64`, on a length mix that
    /// once exposed the batch norm's one-pass moments accumulated in `f32` (a gradient element 27 % off,
    /// ~4 % of whole tensors' norms, cancellation in E[x²] − E[x]² on a channel of 132 real positions).
    /// With the moments accumulated in `f64`: within 1e-4 of each tensor's largest element, one sequence
    /// per line and packed.
    #[test]
    fn batch_statistics_keep_gradients_accurate_in_f32() {
        let _generator = crate::model::lock_generator();
        tch::manual_seed(1);
        let config = ModelConfig {
            dropout: 0.0,
            ..config(Norm::Batch)
        };
        let (unpacked, packed) = packing_case(config.shape().packing_gap());
        let weights = Tensor::randn([6, 64], (Kind::Double, Device::Cpu));
        for m in [&unpacked[0], &packed[0]] {
            let mut grads = Vec::new();
            for kind in [Kind::Float, Kind::Double] {
                let mut model = Model::new(&config, Device::Cpu, 3);
                if kind == Kind::Double {
                    model.vars.double();
                }
                let e = embed_as(&model, m, kind, true).to_kind(Kind::Double);
                (&e * &weights).sum(Kind::Double).backward();
                let g: Vec<(String, Tensor)> = (model.named_parameters().into_iter())
                    .filter(|(name, _)| name.starts_with("encoder."))
                    .map(|(name, t)| (name, t.grad().to_kind(Kind::Double)))
                    .collect();
                grads.push(g);
            }
            for ((name, g32), (_, g64)) in grads[0].iter().zip(&grads[1]) {
                let scale = g64.abs().max().double_value(&[]);
                if scale < 1e-6 {
                    continue; // the stem convolution's bias: batch norm follows, its true gradient is 0
                }
                let error = (g32 - g64).abs().max().double_value(&[]) / scale;
                assert!(error < 1e-4, "packed {}: {name} off by {error:.2e}", m.is_packed());
            }
        }
    }

    #[test]
    fn save_then_load_restores_every_tensor_and_rejects_other_shapes() {
        let _generator = crate::model::lock_generator();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let a = Model::new(&config(Norm::Batch), Device::Cpu, 1);
        a.save(&path).unwrap();
        let mut b = Model::new(&config(Norm::Batch), Device::Cpu, 2);
        b.load(&path).unwrap();
        for ((na, ta), (nb, tb)) in a.named_tensors().iter().zip(b.named_tensors()) {
            assert_eq!(na, &nb);
            assert!(ta.equal(&tb), "{na}");
        }
        assert!(
            a.named_tensors()
                .iter()
                .any(|(n, _)| n == "encoder.stages.0.0.norm1.running_var")
        );
        let mut wide = Model::new(
            &ModelConfig {
                head_hidden: 64,
                ..config(Norm::Batch)
            },
            Device::Cpu,
            1,
        );
        let err = wide.load(&path).unwrap_err().to_string();
        assert!(err.contains("head.fc1.") && err.contains("needs"), "{err}");
        // Damaged files are described in words, with the file named.
        let bytes = std::fs::read(&path).unwrap();
        let damaged = dir.path().join("damaged.safetensors");
        for (what, cut) in [("truncated", bytes.len() - 100), ("header", 4), ("header", 12)] {
            let mut copy = bytes[..cut].to_vec();
            if cut == 12 {
                copy = bytes.clone();
                copy[10] = 0xff; // inside the JSON header
            }
            std::fs::write(&damaged, &copy).unwrap();
            let err = b.load(&damaged).unwrap_err().to_string();
            assert!(
                err.contains("damaged.safetensors") && err.contains("not a readable safetensors file"),
                "{what}: {err}"
            );
            assert!(
                !err.contains("InvalidOffset") && !err.contains("HeaderTooSmall"),
                "{what}: {err}"
            );
        }
        // Batch-norm weights under a group-norm configuration: the running statistics are left over.
        let mut group = Model::new(&config(Norm::Group), Device::Cpu, 1);
        let err = group.load(&path).unwrap_err().to_string();
        assert!(
            err.contains("running_") && err.contains("another architecture"),
            "{err}"
        );
        // One non-finite value anywhere is refused, naming the tensor.
        let mut tensors = a.named_tensors();
        let (name, t) = &mut tensors[5];
        let bad = t.copy();
        let _ = bad.view([-1]).get(0).fill_(f64::NAN);
        *t = bad;
        let name = name.clone();
        let err = b.load_tensors(tensors).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("NaN"), "{err}");
    }
}
