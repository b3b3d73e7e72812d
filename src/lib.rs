//! isoclr: contrastive pre-training of mature-RNA encoders (IsoCLR, see `../shared/METHOD.md`).
//!
//! The map of the crate:
//! - [`config`]: the layered run configuration (defaults < TOML < `ISOCLR_*` < `--set`), validated.
//! - [`data`]: annotation and sequence readers, `prep`, `synth`, the seeded sampler, batch payloads as plain
//!   buffers. Knows nothing of tensors.
//! - [`dist`]: collective communication (all-reduce, all-gather, broadcast, barrier) on flat buffers.
//! - `model` (feature `torch`): the dilated ResNet encoder, projection head and contrastive losses, for one
//!   device.
//! - `train` (feature `torch`): AdamW with plain named state, learning-rate schedules, the training loop and
//!   its outputs.
//! - `device` (feature `torch`): libtorch start-up (CUDA library loading, quiet warnings).

pub mod config;
pub mod data;
#[cfg(feature = "torch")]
pub mod device;
pub mod dist;
#[cfg(feature = "torch")]
pub mod model;
#[cfg(feature = "torch")]
pub mod train;
