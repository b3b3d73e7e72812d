//! The projection head used only in training: Linear-BN-ReLU-Linear-BN-ReLU-Linear (no bias).
//!
//! Input `[n, D]` embeddings, output `[n, P]` projections (not yet normalised). Its norms are of the
//! encoder's kind: batch norms see the whole local batch at once (the head runs once per step, after the
//! micro-batched encoder); group and layer norms are per row, so a distributed run equals one process.

use tch::{Kind, Tensor, nn};

use super::norm::{MaskedNorm, Positions};
use crate::config::ModelConfig;

/// The projection head.
#[derive(Debug)]
pub struct ProjectionHead {
    fc1: nn::Linear,
    norm1: MaskedNorm,
    fc2: nn::Linear,
    norm2: MaskedNorm,
    fc3: nn::Linear,
}

impl ProjectionHead {
    /// Builds the head under `path` (tensors `fc1.weight`, `norm1.weight`, ..., `fc3.weight`).
    pub fn new(path: &nn::Path, in_dim: i64, config: &ModelConfig) -> Self {
        let hidden = config.head_hidden;
        let no_bias = nn::LinearConfig {
            bias: false,
            ..Default::default()
        };
        Self {
            fc1: nn::linear(path / "fc1", in_dim, hidden, Default::default()),
            norm1: MaskedNorm::new(&(path / "norm1"), hidden, config.norm, config.norm_groups),
            fc2: nn::linear(path / "fc2", hidden, hidden, Default::default()),
            norm2: MaskedNorm::new(&(path / "norm2"), hidden, config.norm, config.norm_groups),
            fc3: nn::linear(path / "fc3", hidden, config.projection_dim, no_bias),
        }
    }

    /// Projects `[n, D]` embeddings to `[n, P]`.
    pub fn forward(&self, x: &Tensor, train: bool) -> Tensor {
        let rows = Positions::new(Tensor::ones([x.size()[0], 1, 1], (Kind::Float, x.device())));
        let bn = |norm: &MaskedNorm, h: Tensor| norm.forward(&h.unsqueeze(2), &rows, train).squeeze_dim(2);
        let h = bn(&self.norm1, x.apply(&self.fc1)).relu();
        let h = bn(&self.norm2, h.apply(&self.fc2)).relu();
        h.apply(&self.fc3)
    }
}
