//! Linear probes of frozen embeddings and the metrics that score them (`../shared/METHOD.md`, "Evaluation").
//! Everything here knows no tensors (plain `f64`/`f32` slices in, plain numbers out), so the
//! probes build and test without libtorch.
//!
//! # Pieces
//! - Probe input tables are [`crate::data::table`]'s transcript tables (the one table format of the project,
//!   also read by `isoclr prep --table`); [`published`]: the
//!   published half-life and ribosome-load label layouts joined with a dataset made by `isoclr prep`.
//! - [`split`]: group-aware train/validation/test splits and low-data subsets, as index lists.
//! - [`kmer`]: k-mer frequency features (k = 3…6), the sequence-only baseline.
//! - [`Standardizer`]: per-feature mean and standard deviation fitted on training rows only.
//! - [`RidgeProbe`]: ridge regression in closed form on standardised features, the penalty chosen by grouped
//!   k-fold cross-validation ([`CvOptions`]).
//! - [`LogisticProbe`]: L2-regularised logistic regression for one binary target (Newton's method with a
//!   backtracking line search), the penalty chosen by the same grouped cross-validation; multi-label targets
//!   are one independent model per label ([`LogisticProbe::fit_cv_multilabel`]).
//! - [`pearson`], [`spearman`], [`r2`], [`auroc`], [`auprc`], and [`bootstrap_interval`] for a seeded
//!   percentile bootstrap 95 % interval of any of them.
//! - [`plot`]: PNG plots of low-data learning curves (metric against log-scaled training rows, one line per
//!   method, with spread bars), drawn with an embedded font so they need no system fonts.
//! - [`rank`]: the effective rank of embeddings (RankMe), reported for every embedding method.
//! - [`task`]: probe task files (TOML); [`evaluate`]: test-split scoring with bootstrap intervals and paired
//!   comparisons; [`report`]: `report.json`, `report.md` and the plots.
//! - Embedding with a trained encoder, the from-scratch baseline and the whole run of a task need libtorch:
//!   they are `isoclr::probe::{embed, supervised, runner}`.
//!
//! # Layout of inputs
//! A feature matrix is a row-major `&[f64]` of `rows × n_features` values (one row per sequence). `groups`
//! holds one id per row (homology group or gene): cross-validation never puts one group on both sides of a
//! fold.

pub mod evaluate;
pub mod kmer;
mod linear;
mod metrics;
pub mod parquet;
pub mod plot;
pub mod published;
pub mod rank;
pub mod report;
pub mod split;
pub mod task;

pub use linear::{CvOptions, CvScore, DEFAULT_PENALTIES, LogisticOptions, LogisticProbe, RidgeProbe, Standardizer};
pub use metrics::{BootstrapOptions, Interval, auprc, auroc, bootstrap_interval, pearson, r2, spearman};

/// Errors of the probe module. Each variant is a kind a caller can match on; messages name what was wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProbeError {
    /// An input with no rows (or no features) where at least one is needed.
    #[error("{what} is empty")]
    Empty {
        /// Which input was empty.
        what: &'static str,
    },
    /// Two inputs that must agree in length do not.
    #[error("{what} has {got} values, expected {expected}")]
    LengthMismatch {
        /// Which input has the wrong length.
        what: &'static str,
        /// The length it should have.
        expected: usize,
        /// The length it has.
        got: usize,
    },
    /// A NaN or infinite value in the input.
    #[error("{what} has a non-finite value at index {index}")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// The flat index of the first non-finite value.
        index: usize,
    },
    /// A binary target whose training rows are all one class: logistic regression has no finite optimum
    /// without a penalty and nothing to learn with one.
    #[error("target {label} has only one class ({class}) in its {rows} training rows")]
    SingleClass {
        /// Index of the label column (0 for a single binary target).
        label: usize,
        /// The only class present.
        class: bool,
        /// How many rows there were.
        rows: usize,
    },
    /// Fewer distinct groups than cross-validation folds, so some fold would be empty.
    #[error("{groups} distinct groups cannot fill {folds} cross-validation folds")]
    TooFewGroups {
        /// Distinct groups in the training rows.
        groups: usize,
        /// Folds asked for.
        folds: usize,
    },
    /// A setting out of its range (fewer than 2 folds, a non-positive penalty, an empty grid …).
    #[error("invalid option {name}: {why}")]
    InvalidOption {
        /// The option.
        name: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// Newton's method for the logistic fit hit its iteration cap.
    #[error(
        "logistic fit (penalty {penalty:e}) did not converge in {iterations} iterations: \
         Newton decrement {decrement:.3e} above tolerance {tolerance:.1e}"
    )]
    NotConverged {
        /// The penalty being fitted.
        penalty: f64,
        /// Iterations run.
        iterations: usize,
        /// Half the squared Newton decrement at the last iterate, per row.
        decrement: f64,
        /// The tolerance it had to fall below.
        tolerance: f64,
    },
    /// A linear system that should be positive definite was not (numerically).
    #[error("{what} is not positive definite")]
    NotPositiveDefinite {
        /// Which system.
        what: &'static str,
    },
    /// A metric that is not defined on this input (a constant vector for a correlation, one class for AUROC).
    #[error("{metric} is undefined: {why}")]
    Undefined {
        /// The metric.
        metric: &'static str,
        /// Why.
        why: &'static str,
    },
}

/// The probe module's result.
pub type Result<T, E = ProbeError> = std::result::Result<T, E>;

/// Checks that `values` is non-empty and finite; `what` names it in the error.
fn check_finite(what: &'static str, values: &[f64]) -> Result<()> {
    if values.is_empty() {
        return Err(ProbeError::Empty { what });
    }
    match values.iter().position(|v| !v.is_finite()) {
        Some(index) => Err(ProbeError::NonFinite { what, index }),
        None => Ok(()),
    }
}

/// Checks that `got == expected`; `what` names the input in the error.
fn check_len(what: &'static str, expected: usize, got: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(ProbeError::LengthMismatch { what, expected, got })
    }
}
