//! Frozen-encoder embeddings: load a trained encoder from a run's output directory or a checkpoint URL, and
//! embed transcripts in length-sorted micro-batches (the training layout: padding-invariant, so a
//! transcript's embedding does not depend on its neighbours), on the GPU when there is one.

use std::path::{Path, PathBuf};

use indicatif::ProgressBar;
use tch::{Device, Kind};

use crate::ckpt::{CheckpointStore, STATE_FILE, TrainState};
use crate::config::{Config, Pooling};
use crate::data::Transcript;
use crate::data::batch::{MicroBatch, encode_for_embedding};
use crate::device::failure::{LibtorchFailure, catch_libtorch_failure};
use crate::model::Model;
use crate::run_dir::{MODEL_FILE, RunDir};

/// Sequences the calibrated random baseline's batch-norm statistics are estimated from, at most: a few
/// thousand estimate a channel's mean and variance far more finely than the probes can tell.
pub const CALIBRATION_ROWS: usize = 4096;

/// Transcripts embedded per chunk: bounds the host memory of the encoded tracks.
const CHUNK: usize = 2048;

/// Errors of loading an encoder or embedding.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The source holds no usable model or configuration.
    #[error("{source_name}: {why}")]
    Source {
        /// The directory or URL.
        source_name: String,
        /// What is missing or wrong.
        why: String,
    },
    /// The checkpoint store failed.
    #[error(transparent)]
    Checkpoint(#[from] crate::ckpt::CheckpointError),
    /// The weights do not fit the configured model.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// libtorch failed while embedding.
    #[error("embedding: {0}")]
    Torch(#[from] tch::TchError),
    /// libtorch ran out of memory in an encoder pass.
    #[error(
        "{what}: out of memory with passes of up to {lines} sequences × {padded_len} positions ({message}); \
         lower --positions-per-pass (now {positions_per_pass})"
    )]
    OutOfMemory {
        /// "embedding" or "batch-norm calibration".
        what: &'static str,
        /// Sequences in the largest pass.
        lines: usize,
        /// Its padded length.
        padded_len: usize,
        /// The positions per pass asked for.
        positions_per_pass: usize,
        /// libtorch's message.
        message: String,
    },
    /// The transcripts to embed or the embeddings' file could not be read or written.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        why: String,
    },
    /// The transcripts to embed are not a usable dataset or table.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// The encoder gave a NaN or infinite embedding: nothing downstream can use it.
    #[error("{source_name}: the embedding of transcript {transcript} has a NaN or infinite value")]
    NonFinite {
        /// The encoder's source.
        source_name: String,
        /// The transcript's id.
        transcript: String,
    },
}

/// A trained encoder with the configuration it was trained with.
#[derive(Debug)]
pub struct Encoder {
    /// The model (encoder and projection head; embeddings come from the encoder).
    pub model: Model,
    /// The run's configuration.
    pub config: Config,
    /// Where it came from (for reports): a directory, or a checkpoint URL and step.
    pub source: String,
}

impl Encoder {
    /// Loads an encoder from `source`: a run's output directory (`model.safetensors` and `config.toml`), or
    /// a checkpoint URL or directory (its newest valid checkpoint: `model.safetensors` and the configuration
    /// in `state.json`).
    ///
    /// Errors: nothing usable at `source`, a configuration that does not parse, weights of another shape.
    pub fn load(source: &str, device: Device) -> Result<Self, EmbedError> {
        let bad = |why: String| EmbedError::Source {
            source_name: source.to_owned(),
            why,
        };
        let run = RunDir::new(source);
        if run.has_model() {
            let config_path = run.config();
            let text = std::fs::read_to_string(&config_path).map_err(|e| bad(format!("config.toml: {e}")))?;
            let config = Config::from_toml_str(&text, &config_path.display().to_string())
                .map_err(|e| bad(format!("config.toml: {e}")))?;
            let mut model = Model::new(&config.model, device, config.train.seed);
            model.load(&run.model())?;
            return Ok(Self {
                model,
                config,
                source: source.to_owned(),
            });
        }
        let store = CheckpointStore::open(source, Default::default())?;
        let loaded = store.load_latest(true)?.ok_or_else(|| {
            bad(
                "neither a run directory (model.safetensors + config.toml) nor a checkpoint store with a checkpoint"
                    .into(),
            )
        })?;
        let state = TrainState::from_checkpoint(&loaded, store.url())?;
        let config = Config::from_toml_str(&state.config, &format!("{source} {STATE_FILE}"))
            .map_err(|e| bad(format!("the configuration in {STATE_FILE}: {e}")))?;
        let weights = loaded
            .file(MODEL_FILE)
            .ok_or_else(|| bad(format!("checkpoint step {} has no model.safetensors", loaded.step)))?;
        let mut model = Model::new(&config.model, device, config.train.seed);
        model.load_tensors(crate::model::weights::decode(weights)?)?;
        Ok(Self {
            model,
            config,
            source: format!("{} (step {})", store.url(), loaded.step),
        })
    }

    /// The same architecture with freshly initialised weights (`seed`): the random-encoder baseline.
    pub fn random_like(&self, seed: u64) -> Self {
        Self {
            model: Model::new(&self.config.model, self.model.vars.device(), seed),
            config: self.config.clone(),
            source: format!("random weights (seed {seed})"),
        }
    }

    /// This encoder with the running statistics of its batch norms calibrated on `transcripts` (at most
    /// [`CALIBRATION_ROWS`] of them, evenly spaced in the order given) in training-mode passes of
    /// `positions_per_pass` positions; dropout seeded by `seed`, so the same inputs give the same encoder.
    /// The source names the calibration.
    ///
    /// # Errors
    /// [`EmbedError::OutOfMemory`] or [`EmbedError::Torch`] when libtorch fails in a pass.
    pub fn calibrated(
        mut self,
        transcripts: &[&Transcript],
        positions_per_pass: usize,
        seed: u64,
    ) -> Result<Self, EmbedError> {
        let step = transcripts.len().div_ceil(CALIBRATION_ROWS).max(1);
        let sample: Vec<&Transcript> = transcripts.iter().step_by(step).copied().collect();
        let micro = encode_for_embedding(&sample, positions_per_pass);
        tch::manual_seed(seed as i64 & i64::MAX);
        let cuda = self.model.vars.device().is_cuda();
        catch_libtorch_failure(|| crate::device::autocast_bf16(cuda, || self.model.calibrate_batch_norm(&micro)))
            .map_err(|failure| tensor_error("batch-norm calibration", failure, &micro, positions_per_pass))?;
        self.source = format!("{}, batch norm calibrated on {} sequences", self.source, sample.len());
        Ok(self)
    }

    /// Width of an embedding pooled as `pooling` says.
    pub fn dim(&self, pooling: Pooling) -> usize {
        pooling.dim(self.config.model.shape().filters.last().copied().unwrap_or(0) as usize)
    }

    /// Embeds `transcripts` in evaluation mode, `positions_per_pass` positions per encoder pass, pooled as
    /// `pooling` says; returns `transcripts.len() × dim(pooling)` values, row-major, in the order given.
    /// Advances `progress` by transcripts.
    pub fn embed(
        &self,
        transcripts: &[&Transcript],
        positions_per_pass: usize,
        pooling: Pooling,
        progress: Option<&ProgressBar>,
    ) -> Result<Vec<f32>, EmbedError> {
        // Sorting all transcripts by length before chunking keeps each chunk's passes evenly filled.
        let mut order: Vec<usize> = (0..transcripts.len()).collect();
        order.sort_by_key(|&i| transcripts[i].len());
        let dim = self.dim(pooling);
        let mut out = vec![0f32; transcripts.len() * dim];
        let cuda = self.model.vars.device().is_cuda();
        for chunk in order.chunks(CHUNK) {
            let members: Vec<&Transcript> = chunk.iter().map(|&i| transcripts[i]).collect();
            let micro = encode_for_embedding(&members, positions_per_pass);
            let values = catch_libtorch_failure(|| {
                tch::no_grad(|| {
                    let embeddings = crate::device::autocast_bf16(cuda, || {
                        self.model.embed_micro_batches_pooled(&micro, pooling, false)
                    });
                    let flat = embeddings
                        .to_kind(Kind::Float)
                        .to_device(Device::Cpu)
                        .contiguous()
                        .view([-1]);
                    Vec::<f32>::try_from(&flat)
                })
            })
            .map_err(|failure| tensor_error("embedding", failure, &micro, positions_per_pass))??;
            for (k, &i) in chunk.iter().enumerate() {
                let row = &values[k * dim..(k + 1) * dim];
                if !row.iter().all(|v| v.is_finite()) {
                    return Err(EmbedError::NonFinite {
                        source_name: self.source.clone(),
                        transcript: transcripts[i].id.clone(),
                    });
                }
                out[i * dim..(i + 1) * dim].copy_from_slice(row);
            }
            if let Some(bar) = progress {
                bar.inc(chunk.len() as u64);
            }
        }
        Ok(out)
    }
}

/// The error for libtorch's `failure` in the passes `micro`: out of memory, naming the largest pass, or
/// another libtorch failure.
fn tensor_error(
    what: &'static str,
    failure: LibtorchFailure,
    micro: &[MicroBatch],
    positions_per_pass: usize,
) -> EmbedError {
    if !failure.is_out_of_memory() {
        return EmbedError::Torch(tch::TchError::Torch(format!("{what}: {failure}")));
    }
    let (lines, padded_len) = (micro.iter())
        .max_by_key(|m| m.lines * m.padded_len)
        .map_or((0, 0), |m| (m.lines, m.padded_len));
    EmbedError::OutOfMemory {
        what,
        lines,
        padded_len,
        positions_per_pass,
        message: failure.message,
    }
}

/// The transcripts in `input`: a dataset directory made by `isoclr prep`, or a transcript table (TSV, CSV,
/// Parquet), with the notes the table's reader made about it.
pub fn read_transcripts(input: &Path) -> Result<(Vec<Transcript>, Vec<String>), EmbedError> {
    if input.is_dir() {
        return Ok((crate::data::Dataset::open(input)?.transcripts, Vec::new()));
    }
    let table = crate::data::table::TranscriptTable::read(input, &[])
        .map_err(|e| crate::data::DataError::Table(Box::new(e)))?;
    Ok((table.rows.into_iter().map(|r| r.transcript).collect(), table.notes))
}

/// Writes embeddings (`ids.len() × dim`, row-major) to `out`: a Parquet file (`id`, `e0`, …) when its name
/// ends in `.parquet`, else a `.npy` matrix with the ids in row order in `OUT.ids.txt`. Returns the files
/// written.
pub fn write_embeddings(out: &Path, ids: &[&str], values: &[f32], dim: usize) -> Result<Vec<PathBuf>, EmbedError> {
    let failed = |path: &Path, e: &dyn std::fmt::Display| EmbedError::File {
        path: path.to_owned(),
        why: e.to_string(),
    };
    if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        super::parquet::write_embeddings(out, ids, values, dim).map_err(|e| failed(out, &e))?;
        return Ok(vec![out.to_owned()]);
    }
    write_npy(out, values, ids.len(), dim).map_err(|e| failed(out, &e))?;
    let ids_path = PathBuf::from(format!("{}.ids.txt", out.display()));
    let text: String = ids.iter().map(|id| format!("{id}\n")).collect();
    std::fs::write(&ids_path, text).map_err(|e| failed(&ids_path, &e))?;
    Ok(vec![out.to_owned(), ids_path])
}

/// Writes `values` (`rows × cols`, row-major) as a little-endian float32 `.npy` file (NumPy format 1.0).
pub fn write_npy(path: &Path, values: &[f32], rows: usize, cols: usize) -> std::io::Result<()> {
    use std::io::Write;
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + header length (2) + header + '\n' must be a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(b"\x93NUMPY\x01\x00")?;
    file.write_all(&(header.len() as u16).to_le_bytes())?;
    file.write_all(header.as_bytes())?;
    for v in values {
        file.write_all(&v.to_le_bytes())?;
    }
    file.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// The embeddings as a tensor, for tests: `[n, dim]`.
#[cfg(test)]
fn as_tensor(values: &[f32], dim: usize) -> tch::Tensor {
    tch::Tensor::from_slice(values).view([-1, dim as i64])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Norm, Preset};

    fn transcript(i: usize, len: usize) -> Transcript {
        let seq: Vec<u8> = (0..len).map(|p| b"ACGT"[(p * (i + 5) + p / 3) % 4]).collect();
        Transcript::new(format!("t{i}"), format!("g{i}"), 0, &seq, vec![len as u32 - 1], None).unwrap()
    }

    fn run_dir(norm: Norm) -> (tempfile::TempDir, Config) {
        let mut config = Config::default();
        config.model.preset = Preset::Tiny;
        config.model.norm = norm;
        config.model.head_hidden = 32;
        config.model.projection_dim = 16;
        let dir = tempfile::tempdir().unwrap();
        let model = Model::new(&config.model, Device::Cpu, 7);
        model.save(&dir.path().join("model.safetensors")).unwrap();
        std::fs::write(dir.path().join("config.toml"), config.to_toml()).unwrap();
        (dir, config)
    }

    #[test]
    fn embeddings_do_not_depend_on_order_chunking_or_neighbours() {
        let _generator = crate::model::lock_generator();
        let (dir, _) = run_dir(Norm::Batch);
        let encoder = Encoder::load(dir.path().to_str().unwrap(), Device::Cpu).unwrap();
        let transcripts: Vec<Transcript> = (0..9).map(|i| transcript(i, 50 + 97 * i)).collect();
        let all: Vec<&Transcript> = transcripts.iter().collect();
        let together = encoder.embed(&all, 4096, Pooling::Mean, None).unwrap();
        assert_eq!(together.len(), 9 * encoder.dim(Pooling::Mean));
        for (i, t) in transcripts.iter().enumerate() {
            let alone = encoder.embed(&[t], 4096, Pooling::Mean, None).unwrap();
            let (a, b) = (
                as_tensor(&alone, encoder.dim(Pooling::Mean)),
                as_tensor(&together, encoder.dim(Pooling::Mean)).get(i as i64),
            );
            let diff = (a.get(0) - b).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "transcript {i}: alone vs in a batch differ by {diff}");
        }
        let random = encoder.random_like(99).embed(&all, 4096, Pooling::Mean, None).unwrap();
        assert_ne!(random, together, "the random baseline has other weights");
    }

    /// Finite weights whose activations overflow: the embedding is refused, naming encoder and transcript.
    #[test]
    fn a_non_finite_embedding_is_an_error_naming_the_transcript() {
        let _generator = crate::model::lock_generator();
        let (dir, _) = run_dir(Norm::Layer);
        let encoder = Encoder::load(dir.path().to_str().unwrap(), Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (name, t) in encoder.model.named_parameters() {
                if name.starts_with("encoder.") {
                    let _ = t.shallow_clone().fill_(1e30);
                }
            }
        });
        let t = transcript(3, 200);
        let err = encoder.embed(&[&t], 4096, Pooling::Mean, None).unwrap_err().to_string();
        assert!(err.contains(&t.id) && err.contains("NaN or infinite"), "{err}");
    }

    #[test]
    fn the_calibrated_random_baseline_repeats_for_a_seed_and_differs_from_the_uncalibrated_one() {
        let _generator = crate::model::lock_generator();
        let (dir, _) = run_dir(Norm::Batch);
        let encoder = Encoder::load(dir.path().to_str().unwrap(), Device::Cpu).unwrap();
        let transcripts: Vec<Transcript> = (0..12).map(|i| transcript(i, 80 + 61 * i)).collect();
        let all: Vec<&Transcript> = transcripts.iter().collect();
        let embed = |e: &Encoder| e.embed(&all, 4096, Pooling::Mean, None).unwrap();
        let plain = embed(&encoder.random_like(5));
        assert_eq!(
            plain,
            embed(&encoder.random_like(5)),
            "same seed, same random embeddings"
        );
        let first = embed(&encoder.random_like(5).calibrated(&all, 4096, 5).unwrap());
        let again = embed(&encoder.random_like(5).calibrated(&all, 4096, 5).unwrap());
        assert_eq!(first, again, "same seed, same calibrated embeddings");
        assert_ne!(first, plain, "calibration changes the embeddings");
        let other = embed(&encoder.random_like(6).calibrated(&all, 4096, 6).unwrap());
        assert_ne!(first, other);
    }

    #[test]
    fn a_checkpoint_store_is_a_source_too_and_bad_sources_are_named() {
        let _generator = crate::model::lock_generator();
        let (dir, config) = run_dir(Norm::Layer);
        let store_dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", store_dir.path().display());
        let store = CheckpointStore::open(&url, Default::default()).unwrap();
        let state = TrainState {
            format_version: crate::ckpt::STATE_VERSION,
            step: 3,
            epoch: 0,
            seed: 0,
            batch_size: 4,
            lr: 1e-3,
            world_size: 1,
            dataset_fingerprint: "f".into(),
            config: config.to_toml(),
            code_version: "test".into(),
        };
        let weights = std::fs::read(dir.path().join("model.safetensors")).unwrap();
        store
            .save(
                3,
                vec![
                    ("model.safetensors".into(), weights.into()),
                    (STATE_FILE.into(), state.to_json().unwrap()),
                ],
            )
            .unwrap();
        let from_dir = Encoder::load(dir.path().to_str().unwrap(), Device::Cpu).unwrap();
        let from_store = Encoder::load(&url, Device::Cpu).unwrap();
        assert!(from_store.source.contains("step 3"), "{}", from_store.source);
        let t = transcript(1, 300);
        assert_eq!(
            from_dir.embed(&[&t], 4096, Pooling::Mean, None).unwrap(),
            from_store.embed(&[&t], 4096, Pooling::Mean, None).unwrap()
        );
        let empty = tempfile::tempdir().unwrap();
        let err = Encoder::load(empty.path().to_str().unwrap(), Device::Cpu)
            .unwrap_err()
            .to_string();
        assert!(err.contains("neither a run directory"), "{err}");
    }

    #[test]
    fn npy_files_have_numpys_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.npy");
        write_npy(&path, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"\x93NUMPY\x01\x00");
        let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        assert_eq!((10 + header_len) % 64, 0);
        let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
        assert!(header.contains("'shape': (2, 3)") && header.ends_with('\n'), "{header}");
        assert_eq!(bytes.len(), 10 + header_len + 6 * 4);
        assert_eq!(f32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap()), 6.0);
    }
}
