//! isoclr: contrastive pre-training of mature-RNA encoders (IsoCLR, see `../shared/METHOD.md`).
//!
//! The map of the crate:
//! - [`boundary`]: what happens after a step (continue, checkpoint, suspend, stop), one pure rule for the
//!   single process and the coordinator.
//! - [`ckpt`]: checkpoints in object storage: manifest last, `LATEST`, retention, verified loading. No tch.
//! - [`config`]: the layered run configuration (defaults < TOML < `ISOCLR_*` < `--set`), validated.
//! - [`data`]: annotation and sequence readers, `prep`, `synth`, the seeded sampler, batch payloads as plain
//!   buffers. Knows nothing of tensors.
//! - [`coord`]: the coordinator: rendezvous, per-rank batch streams over gRPC, heartbeats, step-boundary
//!   decisions, the job's metrics and progress. No tch.
//! - [`worker`]: the coordinator's client for worker processes: ready batches off the training thread,
//!   reports, heartbeats. No tch.
//! - [`dist`]: collective communication (all-reduce, all-gather, broadcast, barrier) on flat buffers.
//! - `model` (feature `torch`): the dilated ResNet encoder, projection head and contrastive losses, for one
//!   device.
//! - `train` (feature `torch`): AdamW with plain named state, learning-rate schedules, the training loop and
//!   its outputs.
//! - [`launch`]: single-node distributed mode: a coordinator here plus N `isoclr worker` processes, restarted
//!   from the latest checkpoint when one dies.
//! - [`metrics`]: the one `metrics.jsonl` line format, and continuing the file on resume.
//! - [`run_dir`]: a run directory's file names (`config.toml`, `model.safetensors`, `metrics.jsonl`, …).
//! - [`shutdown`]: the process's stop requests (SIGTERM, SIGUSR2, SIGINT), made once in `main` and passed in.
//! - [`probe`]: linear probes of frozen embeddings: input tables, leakage-free splits, k-mer baseline features,
//!   ridge and logistic probes with their metrics (no tch), and frozen-encoder embeddings (feature `torch`).
//! - `device` (feature `torch`): libtorch start-up (CUDA library loading, quiet warnings), CUDA memory statistics.

pub mod boundary;
pub mod ckpt;
pub mod config;
pub mod coord;
pub mod data;
#[cfg(feature = "torch")]
pub mod device;
pub mod dist;
pub mod launch;
pub mod metrics;
#[cfg(feature = "torch")]
pub mod model;
pub mod probe;
pub mod run_dir;
pub mod shutdown;
#[cfg(feature = "torch")]
pub mod train;
pub mod worker;
