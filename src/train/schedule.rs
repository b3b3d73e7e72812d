//! Learning-rate schedules as pure functions of the step (METHOD.md, "Optimisation").

use crate::config::{ScheduleKind, TrainConfig};

/// The value the paper's schedule cools down to.
const FLOOR: f64 = 1e-8;

/// A learning-rate schedule over `total_steps` optimiser steps.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: ScheduleKind,
    peak: f64,
    total_steps: u64,
    steps_per_epoch: u64,
    warmup_epochs: u64,
    cooldown_epochs: u64,
    warmup_fraction: f64,
}

impl Schedule {
    /// The schedule of a run; `steps_per_epoch` comes from the sampler.
    pub fn new(config: &TrainConfig, steps_per_epoch: u64) -> Self {
        Self {
            kind: config.schedule,
            peak: config.lr,
            total_steps: config.steps,
            steps_per_epoch: steps_per_epoch.max(1),
            warmup_epochs: config.warmup_epochs,
            cooldown_epochs: config.cooldown_epochs,
            warmup_fraction: config.warmup_fraction,
        }
    }

    /// Learning rate at step `step` (counted from 0).
    pub fn lr(&self, step: u64) -> f64 {
        match self.kind {
            ScheduleKind::Constant => self.peak,
            ScheduleKind::Paper => {
                // Per epoch e of E: warm-up lr0·(e+1)/W; then lr0/√(1+e−W); over the last C epochs a linear
                // blend toward 1e-8 that reaches it in the final epoch.
                let e = step / self.steps_per_epoch;
                let epochs = self.total_steps.div_ceil(self.steps_per_epoch);
                let w = self.warmup_epochs;
                let base = if e < w {
                    self.peak * (e + 1) as f64 / w as f64
                } else {
                    self.peak / ((1 + e - w) as f64).sqrt()
                };
                let c = self.cooldown_epochs.min(epochs);
                let cool_from = epochs - c;
                if c > 0 && e >= cool_from {
                    let alpha = (e - cool_from + 1) as f64 / c as f64;
                    (1.0 - alpha) * base + alpha * FLOOR
                } else {
                    base
                }
            }
            ScheduleKind::Cosine => {
                let warm = (self.warmup_fraction * self.total_steps as f64).ceil() as u64;
                if step < warm {
                    self.peak * (0.1 + 0.9 * step as f64 / warm as f64)
                } else {
                    let span = (self.total_steps - warm).max(1) as f64;
                    let progress = ((step - warm) as f64 / span).min(1.0);
                    self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(kind: ScheduleKind, steps: u64) -> TrainConfig {
        TrainConfig {
            schedule: kind,
            lr: 0.01,
            steps,
            ..Default::default()
        }
    }

    #[test]
    fn paper_schedule_warms_decays_and_cools() {
        // 100 steps per epoch, 600 epochs.
        let s = Schedule::new(&config(ScheduleKind::Paper, 60_000), 100);
        assert!((s.lr(0) - 0.001).abs() < 1e-15);
        assert!((s.lr(99) - 0.001).abs() < 1e-15, "constant within an epoch");
        assert!((s.lr(900) - 0.01).abs() < 1e-15, "epoch 9 ends the warm-up");
        assert!((s.lr(1000) - 0.01).abs() < 1e-15);
        assert!((s.lr(1300) - 0.01 / 2.0).abs() < 1e-15, "epoch 13: 1/√4");
        let e549 = 0.01 / (540.0f64).sqrt();
        assert!((s.lr(54_900) - e549).abs() < 1e-12, "last epoch before cool-down");
        let e550 = 0.01 / (541.0f64).sqrt();
        assert!((s.lr(55_000) - ((1.0 - 1.0 / 50.0) * e550 + 1e-8 / 50.0)).abs() < 1e-12);
        assert!((s.lr(59_999) - 1e-8).abs() < 1e-15, "reaches 1e-8 in the last epoch");
    }

    #[test]
    fn cosine_schedule_warms_from_a_tenth_then_decays_to_zero() {
        let s = Schedule::new(&config(ScheduleKind::Cosine, 100), 7);
        assert!((s.lr(0) - 0.001).abs() < 1e-12);
        assert!((s.lr(10) - 0.01).abs() < 1e-12);
        assert!((s.lr(55) - 0.005).abs() < 1e-12);
        assert!(s.lr(100) < 1e-12);
        assert!((11..100).all(|t| s.lr(t) <= s.lr(t - 1) + 1e-15));
        assert!((1..=10).all(|t| s.lr(t) > s.lr(t - 1)));
    }
}
