//! `metrics.jsonl`: one JSON object per trained step, written by the single-process trainer and by the
//! coordinator of a multi-process job alike, so tools read one format.
//!
//! A run that resumes from a checkpoint continues the file: lines of the steps it will train again (those
//! a failed or stopped attempt logged after its last checkpoint) are dropped first, so every step appears
//! once. Knows nothing of tensors or the coordinator.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use crate::run_dir::METRICS_FILE;

/// What one rank measured of one finished step: the loop builds it, the single-process metrics sink and the
/// coordinator (through its wire message) turn it into [`MetricsLine`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StepMetrics {
    /// The step (0-based).
    pub step: u64,
    /// The global batch's loss (as every rank has it after its all-reduce).
    pub loss: f64,
    /// Contrastive accuracy.
    pub accuracy: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// The masked-nucleotide loss of this rank's passes (`model.mlm_weight > 0`), nats.
    pub mlm_loss: Option<f64>,
    /// Fraction of this rank's computed positions that were padding.
    pub pad_fraction: f64,
    /// Sequences per second this rank trained in this step, the wait for its batch included.
    pub seq_per_s: f64,
    /// Seconds the step's computation took.
    pub step_time_s: f64,
    /// Seconds spent waiting for the step's batch.
    pub data_wait_s: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsLine {
    /// The step (0-based).
    pub step: u64,
    /// Its epoch.
    pub epoch: u64,
    /// The global batch's loss.
    pub loss: f64,
    /// Contrastive accuracy.
    pub accuracy: f64,
    /// Learning rate of the step.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Sequences per second (every rank together).
    pub seq_per_s: f64,
    /// Fraction of computed positions that were padding.
    pub pad_fraction: f64,
    /// Seconds since this attempt of the run started.
    pub elapsed_s: f64,
    /// Processes of a multi-process job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub world_size: Option<usize>,
    /// The slowest rank's step time (multi-process jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step_time_s: Option<f64>,
    /// The longest wait for a batch among the ranks (multi-process jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_wait_s: Option<f64>,
    /// Contrastive loss of a batch of held-out groups with two or more transcripts (`data.holdout_fraction`),
    /// without augmentation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_loss: Option<f64>,
    /// Contrastive accuracy of the held-out groups' batch; chance is 1 / its number of groups.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held_out_accuracy: Option<f64>,
    /// The masked-nucleotide loss (`model.mlm_weight > 0`; single-process runs), nats; ln 4 = 1.386 is chance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlm_loss: Option<f64>,
}

/// An open `metrics.jsonl`, appended to line by line.
#[derive(Debug)]
pub struct MetricsFile {
    path: PathBuf,
    file: File,
}

impl MetricsFile {
    /// Opens `out_dir/metrics.jsonl` for a run that starts at `start_step`: empty for a new run; for a
    /// resumed one, the lines of earlier steps are kept and those from `start_step` on are dropped
    /// (rewritten through a temporary file, so a crash leaves the old file whole).
    pub fn open(out_dir: &Path, start_step: u64) -> std::io::Result<Self> {
        let path = out_dir.join(METRICS_FILE);
        if start_step == 0 || !path.exists() {
            let file = File::create(&path)?;
            return Ok(Self { path, file });
        }
        let tmp = out_dir.join(format!("{METRICS_FILE}.tmp"));
        {
            let mut kept = std::io::BufWriter::new(File::create(&tmp)?);
            for line in BufReader::new(File::open(&path)?).lines() {
                let line = line?;
                if step_of(&line).is_some_and(|step| step < start_step) {
                    writeln!(kept, "{line}")?;
                }
            }
            kept.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path)?;
        Ok(Self { path, file })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line.
    pub fn write(&mut self, line: &MetricsLine) -> std::io::Result<()> {
        // A struct of numbers always serialises.
        let json = serde_json::to_string(line).unwrap_or_default();
        writeln!(self.file, "{json}")
    }
}

/// The `step` of a metrics line, if it is one.
fn step_of(line: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(line)
        .ok()?
        .get("step")?
        .as_u64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(step: u64) -> MetricsLine {
        MetricsLine {
            step,
            epoch: 0,
            loss: 1.0,
            accuracy: 0.5,
            lr: 1e-3,
            grad_norm: 1.0,
            seq_per_s: 10.0,
            pad_fraction: 0.0,
            elapsed_s: 0.0,
            world_size: None,
            step_time_s: None,
            data_wait_s: None,
            held_out_loss: None,
            held_out_accuracy: None,
            mlm_loss: None,
        }
    }

    fn steps(path: &Path) -> Vec<u64> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| step_of(l).unwrap())
            .collect()
    }

    #[test]
    fn a_resumed_run_drops_the_steps_it_trains_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = MetricsFile::open(dir.path(), 0).unwrap();
        for step in 0..7 {
            first.write(&line(step)).unwrap();
        }
        drop(first);
        let mut resumed = MetricsFile::open(dir.path(), 4).unwrap();
        assert_eq!(steps(resumed.path()), [0, 1, 2, 3]);
        resumed.write(&line(4)).unwrap();
        assert_eq!(steps(resumed.path()), [0, 1, 2, 3, 4]);
        let fresh = MetricsFile::open(dir.path(), 0).unwrap();
        assert_eq!(
            std::fs::read_to_string(fresh.path()).unwrap(),
            "",
            "a new run starts empty"
        );
    }

    #[test]
    fn single_process_lines_have_no_job_fields() {
        let json = serde_json::to_string(&line(3)).unwrap();
        assert!(!json.contains("world_size"), "{json}");
        let job = MetricsLine {
            world_size: Some(2),
            ..line(3)
        };
        assert!(serde_json::to_string(&job).unwrap().contains("\"world_size\":2"));
    }
}
