//! Linear probes of frozen embeddings: the tensor-free part (tables, splits, k-mers, ridge and logistic
//! probes, metrics, reports) is `isoclr_core::probe`, re-exported here; this module adds what needs the
//! encoder.
//! - [`embed`]: load a trained encoder and embed transcripts.
//! - [`supervised`]: the from-scratch baseline, the same architecture trained on the task's labels.
//! - [`runner`]: the whole run of a probe task, with its baselines and low-data curves.

pub use isoclr_core::probe::*;

pub mod embed;
pub mod runner;
pub mod supervised;
