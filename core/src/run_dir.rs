//! A run's output directory and the names of what it holds, in one place: every reader and writer of a run
//! directory (training, the coordinator, the launcher, embedding and the probes) asks [`RunDir`]. No tch.

use std::path::{Path, PathBuf};

/// The trained weights (encoder and head), safetensors; also their name inside a checkpoint.
pub const MODEL_FILE: &str = "model.safetensors";
/// The resolved configuration of the run, TOML.
pub const CONFIG_FILE: &str = "config.toml";
/// One JSON line per logged step.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// A run's output directory (`--out`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// The run directory at `path` (nothing is created).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `config.toml`: the configuration the run trained with.
    pub fn config(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    /// `model.safetensors`: the trained weights.
    pub fn model(&self) -> PathBuf {
        self.path.join(MODEL_FILE)
    }

    /// Where the weights are written before they are renamed into place, so no reader sees half a file.
    pub fn model_being_written(&self) -> PathBuf {
        self.path.join(format!("{MODEL_FILE}.tmp"))
    }

    /// `metrics.jsonl`.
    pub fn metrics(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    /// `probes/`: the report of the probes run after training.
    pub fn probes(&self) -> PathBuf {
        self.path.join("probes")
    }

    /// `data/synthetic/` and `data/prepared/`: the synthetic default transcriptome a run without `data.path`
    /// generates, and the dataset prepared from it.
    pub fn synthetic_data(&self) -> (PathBuf, PathBuf) {
        let data = self.path.join("data");
        (data.join("synthetic"), data.join("prepared"))
    }

    /// Whether the directory holds a trained model with its configuration.
    pub fn has_model(&self) -> bool {
        self.model().is_file() && self.config().is_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_lies_in_the_directory() {
        let run = RunDir::new("/runs/a");
        let (raw, prepared) = run.synthetic_data();
        for path in [
            run.config(),
            run.model(),
            run.model_being_written(),
            run.metrics(),
            run.probes(),
            raw,
            prepared,
        ] {
            assert_eq!(
                path.parent().map(|p| p.starts_with("/runs/a")),
                Some(true),
                "{}",
                path.display()
            );
        }
        assert_ne!(run.model(), run.model_being_written());
        assert!(!RunDir::new("/nonexistent/run").has_model());
    }
}
