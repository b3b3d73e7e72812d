//! The job's `metrics.jsonl` (one line per step once every rank reported it) and its one progress display:
//! an indicatif bar when stderr is a terminal, tracing lines every `train.log_every` steps otherwise.
//!
//! Must not import tch, the model or train modules.

use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use tracing::info;

use super::{CoordError, Progress, Result};
use crate::metrics::StepMetrics;
use crate::metrics::{MetricsFile, MetricsLine};

/// Writes metrics lines and shows progress.
pub(super) struct Metrics {
    file: MetricsFile,
    bar: Option<ProgressBar>,
    log: bool,
    log_every: u64,
    end_step: u64,
    steps_per_epoch: u64,
    world_size: usize,
    sequences_per_step: u64,
    started: Instant,
    lines: u64,
    first_at: Option<Instant>,
    last_at: Option<Instant>,
}

/// What the job's metrics file and display need to know.
pub(super) struct MetricsSettings<'a> {
    pub out_dir: &'a Path,
    pub progress: Progress,
    pub start_step: u64,
    pub end_step: u64,
    pub log_every: u64,
    pub steps_per_epoch: u64,
    pub world_size: usize,
    pub sequences_per_step: u64,
}

impl Metrics {
    /// Opens `out_dir/metrics.jsonl` for a job starting at `start_step` ([`MetricsFile::open`]).
    pub(super) fn create(s: MetricsSettings<'_>) -> Result<Self> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| CoordError::Io { path, source }
        };
        std::fs::create_dir_all(s.out_dir).map_err(io(s.out_dir))?;
        let file = MetricsFile::open(s.out_dir, s.start_step)
            .map_err(io(&crate::run_dir::RunDir::new(s.out_dir).metrics()))?;
        let terminal = std::io::stderr().is_terminal();
        let bar = (s.progress == Progress::Auto && terminal).then(|| {
            let bar = ProgressBar::new(s.end_step.saturating_sub(s.start_step));
            let style = ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} steps {msg}")
                .map(|style| style.progress_chars("=> "))
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Ok(Self {
            file,
            log: s.progress == Progress::Log || (s.progress == Progress::Auto && !terminal),
            bar,
            log_every: s.log_every.max(1),
            end_step: s.end_step,
            steps_per_epoch: s.steps_per_epoch.max(1),
            world_size: s.world_size,
            sequences_per_step: s.sequences_per_step,
            started: Instant::now(),
            lines: 0,
            first_at: None,
            last_at: None,
        })
    }

    /// The metrics file.
    pub(super) fn path(&self) -> &Path {
        self.file.path()
    }

    /// Appends one step's line and advances the display.
    pub(super) fn write(&mut self, line: &StepMetrics) -> Result<()> {
        let now = Instant::now();
        self.first_at.get_or_insert(now);
        self.last_at = Some(now);
        self.lines += 1;
        let json = MetricsLine {
            step: line.step,
            epoch: line.step / self.steps_per_epoch,
            loss: line.loss,
            accuracy: line.accuracy,
            lr: line.lr,
            grad_norm: line.grad_norm,
            seq_per_s: line.seq_per_s,
            pad_fraction: line.pad_fraction,
            elapsed_s: now.duration_since(self.started).as_secs_f64(),
            world_size: Some(self.world_size),
            step_time_s: Some(line.step_time_s),
            data_wait_s: Some(line.data_wait_s),
            // The single-process loop measures these; the worker loop does not.
            held_out_loss: None,
            held_out_accuracy: None,
            mlm_loss: None,
        };
        self.file.write(&json).map_err(|source| CoordError::Io {
            path: self.file.path().to_owned(),
            source,
        })?;
        if let Some(bar) = &self.bar {
            bar.set_message(format!(
                "loss {:.4} acc {:.3} {:.0} seq/s",
                line.loss, line.accuracy, line.seq_per_s
            ));
            bar.inc(1);
        } else if self.log && (line.step.is_multiple_of(self.log_every) || line.step + 1 == self.end_step) {
            info!(
                step = line.step,
                loss = line.loss,
                accuracy = line.accuracy,
                lr = line.lr,
                seq_per_s = line.seq_per_s,
                "step"
            );
        }
        Ok(())
    }

    /// Sequences per second over the job after its first step (0 with fewer than two steps).
    pub(super) fn seq_per_s(&self) -> f64 {
        match (self.first_at, self.last_at) {
            (Some(first), Some(last)) if self.lines > 1 => {
                ((self.lines - 1) * self.sequences_per_step) as f64 / last.duration_since(first).as_secs_f64().max(1e-9)
            }
            _ => 0.0,
        }
    }

    /// Closes the display.
    pub(super) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
