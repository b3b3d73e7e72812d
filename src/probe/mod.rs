//! Linear probes of frozen embeddings (METHOD.md, "Evaluation").
//!
//! - `embed` (feature `torch`): load a trained encoder and embed transcripts.

#[cfg(feature = "torch")]
pub mod embed;
