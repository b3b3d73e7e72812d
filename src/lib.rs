//! isoclr: contrastive pre-training of mature-RNA encoders (IsoCLR, see `../shared/METHOD.md`).
//!
//! This crate holds what runs libtorch (through tch); everything else is in `isoclr-core`, re-exported
//! here under the same names, so `isoclr::data` and `isoclr_core::data` are one module.
//!
//! The map of the crate:
//! - [`model`]: the dilated ResNet encoder, projection head and contrastive losses, for one device.
//! - [`train`]: the one training loop and its components (step source, gradient synchronisation, metrics
//!   sink, controller, checkpointer), the one-device step, AdamW with plain named state, learning-rate
//!   schedules.
//! - [`probe`]: the tensor-free probes of `isoclr-core`, plus frozen-encoder embeddings (`embed`), the
//!   from-scratch baseline (`supervised`) and the whole run of a probe task (`runner`).
//! - [`device`]: libtorch start-up (CUDA library loading, quiet warnings), CUDA memory statistics.
//! - From `isoclr-core`: [`boundary`], [`ckpt`], [`config`], [`coord`], [`data`], [`dist`], [`launch`],
//!   [`metrics`], [`run_dir`], [`shutdown`], [`worker`].

pub use isoclr_core::{boundary, ckpt, config, coord, data, dist, launch, metrics, run_dir, shutdown, worker};

pub mod device;
pub mod model;
pub mod probe;
pub mod train;
