//! isoclr-core: everything of isoclr that knows no tensors, so that the commands and services built on it
//! (`isoclr synth`, `prep`, `inspect`, `config`, `coordinator`, and the launcher) run on a machine without
//! libtorch. The `isoclr` crate adds the encoder, training and embedding on top, with tch.
//!
//! The map of the crate:
//! - [`boundary`]: what happens after a step (continue, checkpoint, suspend, stop), one pure rule for the
//!   single process and the coordinator.
//! - [`cli`]: the `isoclr` command line (clap), parsed by both binaries.
//! - [`ckpt`]: checkpoints in object storage: manifest last, `LATEST`, retention, verified loading.
//! - [`config`]: the layered run configuration (defaults < TOML < `ISOCLR_*` < `--set`), validated.
//! - [`data`]: annotation and sequence readers, `prep`, `synth`, the seeded sampler, batch payloads as plain
//!   buffers.
//! - [`coord`]: the coordinator: rendezvous, per-rank batch streams over gRPC, heartbeats, step-boundary
//!   decisions, the job's metrics and progress.
//! - [`worker`]: the coordinator's client for worker processes: ready batches off the training thread,
//!   reports, heartbeats.
//! - [`dist`]: collective communication (all-reduce, all-gather, broadcast, barrier) on flat buffers.
//! - [`launch`]: single-node distributed mode: a coordinator here plus N `isoclr worker` processes, restarted
//!   from the latest checkpoint when one dies.
//! - [`metrics`]: the one step-metrics type and the `metrics.jsonl` line format.
//! - [`run_dir`]: a run directory's file names (`config.toml`, `model.safetensors`, `metrics.jsonl`, …).
//! - [`shutdown`]: the process's stop requests (SIGTERM, SIGUSR2, SIGINT), made once in `main` and passed in.
//! - [`probe`]: linear probes of frozen embeddings: input tables, leakage-free splits, k-mer baseline features,
//!   ridge and logistic probes with their metrics, reports and plots.

pub mod boundary;
pub mod ckpt;
pub mod cli;
pub mod config;
pub mod coord;
pub mod data;
pub mod dist;
pub mod launch;
pub mod metrics;
pub mod probe;
pub mod run_dir;
pub mod shutdown;
pub mod worker;
