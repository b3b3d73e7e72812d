//! Data: reading annotations and sequences, building dataset directories (`prep`), the synthetic
//! transcriptome (`synth`), the seeded contrastive sampler and batch payloads as plain buffers.
//!
//! Must not depend on tch, tonic or tokio: the coordinator uses this layer without libtorch.

pub mod batch;
pub mod corpus;
pub mod dataset;
pub mod inspect;
pub mod orf;
pub mod packing;
pub mod parquet_rows;
pub mod prep;
pub mod sampler;
pub mod synth;
pub mod table;
pub mod transcript;

use std::path::PathBuf;

pub use batch::{MicroBatch, PassLayout, StepBatch};
pub use dataset::{Dataset, Group, Manifest};
pub use sampler::{Augment, Pair, Sampler};
pub use transcript::{CODON_TRACK, TRACK_UNIT, TRACKS, Transcript};

/// Errors of the data layer; each names the file, line, record or key involved.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A malformed record in an input file.
    #[error("{path}:{line}: {why}")]
    Parse {
        /// The input file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        why: String,
    },
    /// A transcript table that cannot be read or checked; the error names the file, line and column.
    #[error(transparent)]
    Table(Box<table::TableError>),
    /// Input that parsed but does not make sense (an annotation that disagrees with its sequence, ...).
    #[error("{what}: {why}")]
    Invalid {
        /// The object involved (a transcript, a file, a setting).
        what: String,
        /// What is wrong.
        why: String,
    },
}

/// Result alias of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> DataError {
        let path = path.into();
        move |source| DataError::Io { path, source }
    }
}

/// The dataset of a run: the corpus of `data.paths` (or the one dataset `data.path`), with `data.weights`,
/// `data.orthology` and `data.holdout_fraction` applied ([`corpus::open`]), or else the synthetic default,
/// synthesised and prepared once under `out/data/` (reused when already there).
pub fn resolve_dataset(config: &crate::config::DataConfig, out: &std::path::Path) -> Result<Dataset> {
    let corpus = |paths: Vec<std::path::PathBuf>| {
        corpus::open(&corpus::CorpusOptions {
            paths,
            weights: config.weights.clone(),
            orthology: config.orthology.clone(),
            holdout_fraction: config.holdout_fraction,
        })
    };
    if !config.paths.is_empty() {
        return corpus(config.paths.clone());
    }
    if let Some(path) = &config.path {
        // A directory with a corpus file stands for its datasets; the run's own settings take precedence.
        if let Some(file) = corpus::CorpusOptions::from_directory(path)? {
            return corpus::open(&corpus::CorpusOptions {
                weights: if config.weights.is_empty() {
                    file.weights
                } else {
                    config.weights.clone()
                },
                orthology: config.orthology.clone().or(file.orthology),
                holdout_fraction: config.holdout_fraction,
                paths: file.paths,
            });
        }
        return corpus(vec![path.clone()]);
    }
    let (raw, prepared) = crate::run_dir::RunDir::new(out).synthetic_data();
    if Dataset::read_manifest(&prepared).is_err() {
        tracing::info!(
            genes = config.synth_genes,
            seed = config.synth_seed,
            "synthesising the default dataset"
        );
        let summary = synth::synth(&synth::SynthOptions {
            out: raw,
            genes: config.synth_genes,
            seed: config.synth_seed,
            length_scale: config.synth_length_scale,
            ..Default::default()
        })?;
        prep::prep(&prep::PrepOptions {
            homology: Some(summary.homology),
            max_len: config.max_len,
            ..prep::PrepOptions::new(
                prep::PrepInput::Genome {
                    annotation: summary.gtf,
                    genome: summary.genome,
                },
                prepared.clone(),
            )
        })?;
    }
    corpus(vec![prepared])
}
