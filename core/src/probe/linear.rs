//! Ridge and L2-regularised logistic regression on standardised features, each with its penalty chosen by
//! grouped k-fold cross-validation on the training rows. Dense linear algebra comes from nalgebra (Cholesky,
//! symmetric eigendecomposition); nothing here knows about tensors.
//!
//! Both fits minimise "sum of per-row losses + λ/2 · ‖w‖²" over standardised features with an unpenalised
//! intercept: ridge's loss is ½ (y − ŷ)², so its objective is half of ‖y − ŷ‖² + λ‖w‖² (scikit-learn's `Ridge`
//! with `alpha = λ`); logistic's loss is the log-loss. When there are more features than rows, both fit in the
//! row space of the standardised features instead (the optimum lies there for any L2 penalty), so the systems
//! solved are never larger than min(rows, features) + 1.

use nalgebra::{Cholesky, DMatrix, DVector, SymmetricEigen};
use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{ProbeError, Result, check_finite, check_len};

/// The penalty grid of the issue: 1e-4, 1e-3, …, 1e4.
pub const DEFAULT_PENALTIES: [f64; 9] = [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3, 1e4];

/// Per-feature centring and scaling fitted on training rows only, so nothing about the test rows leaks into the
/// probe. Uses the population standard deviation; a feature constant on the training rows gets scale 1, so it
/// becomes 0 everywhere and drops out of the fit instead of dividing by zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Standardizer {
    mean: Vec<f64>,
    scale: Vec<f64>,
}

impl Standardizer {
    /// Fits on `x`, row-major with `n_features` columns.
    ///
    /// # Errors
    /// Empty or non-finite `x`, or a length that is not a multiple of `n_features`.
    pub fn fit(x: &[f64], n_features: usize) -> Result<Self> {
        let rows = check_matrix(x, n_features)?;
        let mut mean = vec![0.0; n_features];
        for row in x.chunks_exact(n_features) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= rows as f64);
        let mut var = vec![0.0; n_features];
        for row in x.chunks_exact(n_features) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m).powi(2);
            }
        }
        let scale = var
            .iter()
            .zip(&mean)
            .map(|(s, m)| {
                let sd = (s / rows as f64).sqrt();
                // Constant up to rounding of its own magnitude counts as constant.
                if sd <= 1e-12 * m.abs().max(1e-300) || sd == 0.0 {
                    1.0
                } else {
                    sd
                }
            })
            .collect();
        Ok(Self { mean, scale })
    }

    /// Number of features it was fitted on.
    pub fn n_features(&self) -> usize {
        self.mean.len()
    }

    /// Standardises `x` (row-major, [`n_features`](Self::n_features) columns) into a new matrix.
    ///
    /// # Errors
    /// As [`fit`](Self::fit).
    pub fn transform(&self, x: &[f64]) -> Result<Vec<f64>> {
        check_matrix(x, self.n_features())?;
        let mut out = x.to_vec();
        for row in out.chunks_exact_mut(self.n_features()) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
                *v = (*v - m) / s;
            }
        }
        Ok(out)
    }
}

/// Rows of a row-major matrix with `n_features` columns, after checking it.
fn check_matrix(x: &[f64], n_features: usize) -> Result<usize> {
    if n_features == 0 {
        return Err(ProbeError::Empty {
            what: "feature columns",
        });
    }
    check_finite("features", x)?;
    if !x.len().is_multiple_of(n_features) {
        return Err(ProbeError::LengthMismatch {
            what: "features",
            expected: x.len().div_ceil(n_features) * n_features,
            got: x.len(),
        });
    }
    Ok(x.len() / n_features)
}

/// Settings of the grouped k-fold cross-validation that picks a penalty.
#[derive(Debug, Clone, PartialEq)]
pub struct CvOptions {
    /// Folds (default 5); there must be at least this many distinct groups.
    pub folds: usize,
    /// Seed of the group-to-fold assignment.
    pub seed: u64,
    /// Penalties tried (default [`DEFAULT_PENALTIES`]); all must be positive.
    pub penalties: Vec<f64>,
}

impl Default for CvOptions {
    fn default() -> Self {
        Self {
            folds: 5,
            seed: 0,
            penalties: DEFAULT_PENALTIES.to_vec(),
        }
    }
}

impl CvOptions {
    fn validate(&self) -> Result<()> {
        if self.folds < 2 {
            return Err(ProbeError::InvalidOption {
                name: "folds",
                why: format!("{} is below 2", self.folds),
            });
        }
        if self.penalties.is_empty() {
            return Err(ProbeError::InvalidOption {
                name: "penalties",
                why: "the grid is empty".into(),
            });
        }
        match self.penalties.iter().find(|p| !(p.is_finite() && **p > 0.0)) {
            Some(p) => Err(ProbeError::InvalidOption {
                name: "penalties",
                why: format!("{p} is not positive"),
            }),
            None => Ok(()),
        }
    }
}

/// One penalty's cross-validation score: mean squared error (ridge) or mean log-loss (logistic) over all
/// held-out rows, lower is better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CvScore {
    /// The penalty λ.
    pub penalty: f64,
    /// Mean held-out loss.
    pub loss: f64,
}

/// Assigns each row a fold in `0..folds` so that all rows of a group share a fold: groups in seeded random
/// order, each to the fold with the fewest rows so far (balanced even when group sizes differ).
fn group_folds(groups: &[u32], folds: usize, seed: u64) -> Result<Vec<usize>> {
    let mut sizes = std::collections::BTreeMap::<u32, usize>::new();
    for g in groups {
        *sizes.entry(*g).or_default() += 1;
    }
    if sizes.len() < folds {
        return Err(ProbeError::TooFewGroups {
            groups: sizes.len(),
            folds,
        });
    }
    let mut order: Vec<(u32, usize)> = sizes.into_iter().collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let mut load = vec![0usize; folds];
    let mut fold_of = std::collections::HashMap::new();
    for (g, size) in order {
        // Lowest load, ties to the lowest index: deterministic given the shuffled order.
        let f = (0..folds).min_by_key(|&f| (load[f], f)).unwrap_or(0);
        load[f] += size;
        fold_of.insert(g, f);
    }
    Ok(groups.iter().map(|g| fold_of[g]).collect())
}

/// Picks the rows `idx` of a row-major matrix.
fn take_rows(x: &[f64], p: usize, idx: &[usize]) -> Vec<f64> {
    idx.iter()
        .flat_map(|&i| x[i * p..(i + 1) * p].iter().copied())
        .collect()
}

/// Standardised training features in the space the fit is solved in: the features themselves when rows ≥
/// features, else coordinates in their row space (`F = U·S` from the eigendecomposition of `Z Zᵀ`, with the map
/// `T = Zᵀ U S⁻¹` back, so `Z T β = F β` and `‖T β‖ = ‖β‖`).
struct Design {
    standardizer: Standardizer,
    /// Rows × k, the coordinates fitted in (k = features, or the rank of Z when features > rows).
    f: DMatrix<f64>,
    /// Features × k, back to weights on standardised features; `None` when `f` is `Z` itself.
    back: Option<DMatrix<f64>>,
    /// The diagonal of `FᵀF` when it is diagonal (the row-space case: the kept eigenvalues of `Z Zᵀ`), so a
    /// ridge solve per penalty costs O(n·k) instead of a k×k Cholesky.
    gram_diagonal: Option<DVector<f64>>,
}

impl Design {
    fn new(x: &[f64], p: usize) -> Result<Self> {
        let standardizer = Standardizer::fit(x, p)?;
        let z_rows = standardizer.transform(x)?;
        let n = z_rows.len() / p;
        let z = DMatrix::from_row_slice(n, p, &z_rows);
        if n >= p {
            return Ok(Self {
                standardizer,
                f: z,
                back: None,
                gram_diagonal: None,
            });
        }
        let eig = SymmetricEigen::new(&z * z.transpose());
        let top = eig.eigenvalues.iter().copied().fold(0.0, f64::max);
        // Directions with (numerically) zero variance carry nothing the penalty would not zero anyway.
        let keep: Vec<usize> = (0..n)
            .filter(|&i| eig.eigenvalues[i] > 1e-12 * top.max(1e-300))
            .collect();
        let mut f = DMatrix::zeros(n, keep.len());
        let mut u_inv_s = DMatrix::zeros(n, keep.len());
        for (c, &i) in keep.iter().enumerate() {
            let s = eig.eigenvalues[i].sqrt();
            f.set_column(c, &(eig.eigenvectors.column(i) * s));
            u_inv_s.set_column(c, &(eig.eigenvectors.column(i) / s));
        }
        let back = z.transpose() * u_inv_s;
        let gram_diagonal = DVector::from_iterator(keep.len(), keep.iter().map(|&i| eig.eigenvalues[i]));
        Ok(Self {
            standardizer,
            f,
            back: Some(back),
            gram_diagonal: Some(gram_diagonal),
        })
    }

    /// Weights on standardised features from coefficients `beta` on the fitted coordinates.
    fn weights(&self, beta: &DVector<f64>) -> Vec<f64> {
        match &self.back {
            Some(t) => (t * beta).iter().copied().collect(),
            None => beta.iter().copied().collect(),
        }
    }
}

/// A fitted linear model on standardised features, shared by both probes.
#[derive(Debug, Clone, PartialEq)]
struct LinearModel {
    standardizer: Standardizer,
    weights: Vec<f64>,
    intercept: f64,
}

impl LinearModel {
    /// `intercept + w · standardise(row)` per row of `x`.
    fn decision(&self, x: &[f64]) -> Result<Vec<f64>> {
        let z = self.standardizer.transform(x)?;
        Ok(z.chunks_exact(self.weights.len())
            .map(|row| self.intercept + row.iter().zip(&self.weights).map(|(a, b)| a * b).sum::<f64>())
            .collect())
    }
}

/// Ridge regression on standardised features with an unpenalised intercept (see the module doc for the
/// objective).
#[derive(Debug, Clone, PartialEq)]
pub struct RidgeProbe {
    model: LinearModel,
    penalty: f64,
    cv: Vec<CvScore>,
}

impl RidgeProbe {
    /// Fits with a fixed `penalty` on all rows of `x` (row-major, `n_features` columns) and targets `y`.
    ///
    /// # Errors
    /// Empty, non-finite or mismatched inputs; a non-positive penalty.
    pub fn fit(x: &[f64], n_features: usize, y: &[f64], penalty: f64) -> Result<Self> {
        let (design, y) = ridge_inputs(x, n_features, y)?;
        check_penalty(penalty)?;
        let model = ridge_solve(&design, &y, penalty)?;
        Ok(Self {
            model,
            penalty,
            cv: Vec::new(),
        })
    }

    /// Chooses the penalty by grouped k-fold cross-validation (lowest mean held-out squared error; ties go to
    /// the larger penalty), then refits on all rows with it. `groups` has one id per row.
    ///
    /// # Errors
    /// As [`fit`](Self::fit); [`ProbeError::TooFewGroups`]; invalid [`CvOptions`].
    pub fn fit_cv(x: &[f64], n_features: usize, y: &[f64], groups: &[u32], options: &CvOptions) -> Result<Self> {
        options.validate()?;
        let rows = check_matrix(x, n_features)?;
        check_finite("targets", y)?;
        check_len("targets", rows, y.len())?;
        check_len("groups", rows, groups.len())?;
        let fold_of = group_folds(groups, options.folds, options.seed)?;
        let mut sse = vec![0.0; options.penalties.len()];
        for fold in 0..options.folds {
            let (train, test) = split(&fold_of, fold);
            let (design, y_train) = ridge_inputs(&take_rows(x, n_features, &train), n_features, &pick(y, &train))?;
            let x_test = take_rows(x, n_features, &test);
            for (k, &penalty) in options.penalties.iter().enumerate() {
                let pred = ridge_solve(&design, &y_train, penalty)?.decision(&x_test)?;
                sse[k] += test.iter().zip(pred).map(|(&i, p)| (y[i] - p).powi(2)).sum::<f64>();
            }
        }
        let cv: Vec<CvScore> = options
            .penalties
            .iter()
            .zip(sse)
            .map(|(&penalty, s)| CvScore {
                penalty,
                loss: s / rows as f64,
            })
            .collect();
        let mut fitted = Self::fit(x, n_features, y, best_penalty(&cv))?;
        fitted.cv = cv;
        Ok(fitted)
    }

    /// Predictions for the rows of `x` (row-major, the fitted number of columns).
    ///
    /// # Errors
    /// Empty, non-finite or ragged `x`.
    pub fn predict(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.model.decision(x)
    }

    /// The penalty λ of the fit.
    pub fn penalty(&self) -> f64 {
        self.penalty
    }

    /// Weights on the standardised features.
    pub fn weights(&self) -> &[f64] {
        &self.model.weights
    }

    /// The intercept (the training mean of the targets, since standardised features are centred).
    pub fn intercept(&self) -> f64 {
        self.model.intercept
    }

    /// Every penalty's cross-validation score, in grid order; empty after [`fit`](Self::fit).
    pub fn cv_scores(&self) -> &[CvScore] {
        &self.cv
    }
}

fn check_penalty(penalty: f64) -> Result<()> {
    if penalty.is_finite() && penalty > 0.0 {
        Ok(())
    } else {
        Err(ProbeError::InvalidOption {
            name: "penalty",
            why: format!("{penalty} is not positive"),
        })
    }
}

fn ridge_inputs(x: &[f64], p: usize, y: &[f64]) -> Result<(Design, Vec<f64>)> {
    let rows = check_matrix(x, p)?;
    check_finite("targets", y)?;
    check_len("targets", rows, y.len())?;
    Ok((Design::new(x, p)?, y.to_vec()))
}

/// Closed form: the intercept is the mean of `y` (the coordinates are centred), `β = (FᵀF + λI)⁻¹ Fᵀ(y − ȳ)` by
/// Cholesky.
fn ridge_solve(design: &Design, y: &[f64], penalty: f64) -> Result<LinearModel> {
    let mean = y.iter().sum::<f64>() / y.len() as f64;
    let yc = DVector::from_iterator(y.len(), y.iter().map(|v| v - mean));
    let f = &design.f;
    let fty = f.tr_mul(&yc);
    let beta = match &design.gram_diagonal {
        // FᵀF = S² in the row-space coordinates: the normal equations are diagonal.
        Some(d) => fty.zip_map(d, |v, s2| v / (s2 + penalty)),
        None => {
            let mut gram = f.tr_mul(f);
            for i in 0..gram.nrows() {
                gram[(i, i)] += penalty;
            }
            let chol = Cholesky::new(gram).ok_or(ProbeError::NotPositiveDefinite {
                what: "ridge normal equations",
            })?;
            chol.solve(&fty)
        }
    };
    Ok(LinearModel {
        standardizer: design.standardizer.clone(),
        weights: design.weights(&beta),
        intercept: mean,
    })
}

fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
    idx.iter().map(|&i| v[i]).collect()
}

/// Row indices outside and inside `fold`.
fn split(fold_of: &[usize], fold: usize) -> (Vec<usize>, Vec<usize>) {
    (0..fold_of.len()).partition(|&i| fold_of[i] != fold)
}

/// The penalty with the lowest loss, ties to the larger penalty (the simpler model).
fn best_penalty(cv: &[CvScore]) -> f64 {
    let mut best = cv[0];
    for s in &cv[1..] {
        if s.loss < best.loss || (s.loss == best.loss && s.penalty > best.penalty) {
            best = *s;
        }
    }
    best.penalty
}

/// Settings of the logistic fit's Newton iterations.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticOptions {
    /// Iteration cap (default 100); hitting it is [`ProbeError::NotConverged`].
    pub max_iterations: usize,
    /// Converged when half the squared Newton decrement, per row, falls below this (default 1e-12): the
    /// predicted objective decrease left is then negligible.
    pub tolerance: f64,
}

impl Default for LogisticOptions {
    fn default() -> Self {
        Self {
            max_iterations: 100,
            tolerance: 1e-12,
        }
    }
}

/// L2-regularised logistic regression for one binary target on standardised features, unpenalised intercept.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticProbe {
    model: LinearModel,
    penalty: f64,
    cv: Vec<CvScore>,
}

impl LogisticProbe {
    /// Fits with a fixed `penalty` on all rows of `x` (row-major, `n_features` columns) and labels `y`.
    ///
    /// # Errors
    /// Empty, non-finite or mismatched inputs; a non-positive penalty; [`ProbeError::SingleClass`];
    /// [`ProbeError::NotConverged`].
    pub fn fit(x: &[f64], n_features: usize, y: &[bool], penalty: f64, options: &LogisticOptions) -> Result<Self> {
        check_penalty(penalty)?;
        let rows = check_matrix(x, n_features)?;
        check_len("labels", rows, y.len())?;
        check_two_classes(y, 0)?;
        let design = Design::new(x, n_features)?;
        let (model, _) = logistic_solve(&design, y, penalty, options, None)?;
        Ok(Self {
            model,
            penalty,
            cv: Vec::new(),
        })
    }

    /// Chooses the penalty by grouped k-fold cross-validation on mean held-out log-loss (a proper score that,
    /// unlike AUROC, is defined on a fold with one class; ties go to the larger penalty), then refits on all
    /// rows. A fold whose training rows hold one class is skipped.
    ///
    /// # Errors
    /// As [`fit`](Self::fit); [`ProbeError::TooFewGroups`]; invalid [`CvOptions`].
    pub fn fit_cv(
        x: &[f64],
        n_features: usize,
        y: &[bool],
        groups: &[u32],
        cv_options: &CvOptions,
        options: &LogisticOptions,
    ) -> Result<Self> {
        Self::fit_cv_label(x, n_features, y, 0, groups, cv_options, options)
    }

    /// One independent [`fit_cv`](Self::fit_cv) per label column: `labels[j]` holds label j for every row.
    ///
    /// # Errors
    /// As [`fit_cv`](Self::fit_cv), with the failing label's index in [`ProbeError::SingleClass`];
    /// [`ProbeError::Empty`] for no labels.
    pub fn fit_cv_multilabel(
        x: &[f64],
        n_features: usize,
        labels: &[&[bool]],
        groups: &[u32],
        cv_options: &CvOptions,
        options: &LogisticOptions,
    ) -> Result<Vec<Self>> {
        if labels.is_empty() {
            return Err(ProbeError::Empty { what: "label columns" });
        }
        labels
            .iter()
            .enumerate()
            .map(|(j, y)| Self::fit_cv_label(x, n_features, y, j, groups, cv_options, options))
            .collect()
    }

    fn fit_cv_label(
        x: &[f64],
        n_features: usize,
        y: &[bool],
        label: usize,
        groups: &[u32],
        cv_options: &CvOptions,
        options: &LogisticOptions,
    ) -> Result<Self> {
        cv_options.validate()?;
        let rows = check_matrix(x, n_features)?;
        check_len("labels", rows, y.len())?;
        check_len("groups", rows, groups.len())?;
        check_two_classes(y, label)?;
        let fold_of = group_folds(groups, cv_options.folds, cv_options.seed)?;
        // Largest penalty first: each fit warm-starts the next, less penalised one.
        let mut order: Vec<usize> = (0..cv_options.penalties.len()).collect();
        order.sort_by(|&a, &b| cv_options.penalties[b].total_cmp(&cv_options.penalties[a]));
        let mut loss = vec![0.0; cv_options.penalties.len()];
        let mut scored = 0usize;
        for fold in 0..cv_options.folds {
            let (train, test) = split(&fold_of, fold);
            let y_train = pick(y, &train);
            if check_two_classes(&y_train, label).is_err() {
                continue;
            }
            let design = Design::new(&take_rows(x, n_features, &train), n_features)?;
            let x_test = take_rows(x, n_features, &test);
            let mut start = None;
            for &k in &order {
                let (model, beta) = logistic_solve(&design, &y_train, cv_options.penalties[k], options, start)?;
                let eta = model.decision(&x_test)?;
                loss[k] += test.iter().zip(eta).map(|(&i, e)| log_loss(e, y[i])).sum::<f64>();
                start = Some(beta);
            }
            scored += test.len();
        }
        if scored == 0 {
            return Err(ProbeError::SingleClass {
                label,
                class: y[0],
                rows,
            });
        }
        let cv: Vec<CvScore> = cv_options
            .penalties
            .iter()
            .zip(loss)
            .map(|(&penalty, l)| CvScore {
                penalty,
                loss: l / scored as f64,
            })
            .collect();
        let mut fitted = Self::fit(x, n_features, y, best_penalty(&cv), options)?;
        fitted.cv = cv;
        Ok(fitted)
    }

    /// Probabilities of the positive class for the rows of `x`.
    ///
    /// # Errors
    /// Empty, non-finite or ragged `x`.
    pub fn predict_proba(&self, x: &[f64]) -> Result<Vec<f64>> {
        Ok(self.model.decision(x)?.into_iter().map(sigmoid).collect())
    }

    /// Log-odds of the positive class for the rows of `x` (the scores to rank by for AUROC and AUPRC).
    ///
    /// # Errors
    /// Empty, non-finite or ragged `x`.
    pub fn decision_function(&self, x: &[f64]) -> Result<Vec<f64>> {
        self.model.decision(x)
    }

    /// The penalty λ of the fit.
    pub fn penalty(&self) -> f64 {
        self.penalty
    }

    /// Weights on the standardised features.
    pub fn weights(&self) -> &[f64] {
        &self.model.weights
    }

    /// The intercept (log-odds at the training mean of the features).
    pub fn intercept(&self) -> f64 {
        self.model.intercept
    }

    /// Every penalty's cross-validation score, in grid order; empty after [`fit`](Self::fit).
    pub fn cv_scores(&self) -> &[CvScore] {
        &self.cv
    }
}

fn check_two_classes(y: &[bool], label: usize) -> Result<()> {
    match y.first() {
        None => Err(ProbeError::Empty { what: "labels" }),
        Some(&first) if y.iter().all(|&v| v == first) => Err(ProbeError::SingleClass {
            label,
            class: first,
            rows: y.len(),
        }),
        Some(_) => Ok(()),
    }
}

fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        t.exp() / (1.0 + t.exp())
    }
}

/// log(1 + e^η) − y·η without overflow.
fn log_loss(eta: f64, y: bool) -> f64 {
    let softplus = eta.max(0.0) + (-eta.abs()).exp().ln_1p();
    if y { softplus - eta } else { softplus }
}

/// Newton's method with Armijo backtracking on Σ log-loss + λ/2 ‖β‖² over `[1, F]` (the first coefficient is
/// the unpenalised intercept). Returns the model and the coefficients, to warm-start the next penalty.
fn logistic_solve(
    design: &Design,
    y: &[bool],
    penalty: f64,
    options: &LogisticOptions,
    start: Option<DVector<f64>>,
) -> Result<(LinearModel, DVector<f64>)> {
    let f = &design.f;
    let (n, k) = (f.nrows(), f.ncols());
    let a = f.clone().insert_column(0, 1.0);
    let t = DVector::from_iterator(n, y.iter().map(|&v| f64::from(u8::from(v))));
    let objective = |beta: &DVector<f64>| -> f64 {
        let eta = &a * beta;
        let data: f64 = eta.iter().zip(y).map(|(&e, &v)| log_loss(e, v)).sum();
        data + 0.5 * penalty * beta.rows(1, k).norm_squared()
    };
    let mut beta = start
        .filter(|b| b.len() == k + 1)
        .unwrap_or_else(|| DVector::zeros(k + 1));
    let mut value = objective(&beta);
    let tolerance = options.tolerance * n as f64;
    let mut decrement = f64::INFINITY;
    for _ in 0..options.max_iterations {
        let eta = &a * &beta;
        let prob = eta.map(sigmoid);
        let mut grad = a.tr_mul(&(&prob - &t));
        let mut penalised = beta.clone();
        penalised[0] = 0.0;
        grad += penalty * &penalised;
        // Hessian Aᵀ diag(p(1−p)) A + λ·diag(0, 1, …, 1); a floor on the weights keeps the intercept's pivot
        // positive when every probability has saturated.
        let w = prob.map(|p| (p * (1.0 - p)).max(1e-12));
        let step = match newton_step_cg(&a, &w, penalty, &grad) {
            Some(step) => step,
            None => newton_step_direct(&a, &w, penalty, &grad)?,
        };
        decrement = 0.5 * grad.dot(&step);
        if decrement <= tolerance {
            // One last full Newton step: this close to the optimum it is inside the quadratic regime, so it is
            // accepted without a line search and squares the remaining gradient away.
            beta -= &step;
            let model = LinearModel {
                standardizer: design.standardizer.clone(),
                weights: design.weights(&beta.rows(1, k).into_owned()),
                intercept: beta[0],
            };
            return Ok((model, beta));
        }
        // Backtrack until the Armijo condition holds (sufficient decrease along the Newton direction).
        let mut size = 1.0;
        loop {
            let candidate = &beta - size * &step;
            let candidate_value = objective(&candidate);
            if candidate_value <= value - 1e-4 * size * 2.0 * decrement || size < 1e-10 {
                beta = candidate;
                value = candidate_value;
                break;
            }
            size *= 0.5;
        }
    }
    Err(ProbeError::NotConverged {
        penalty,
        iterations: options.max_iterations,
        decrement: decrement / n as f64,
        tolerance: options.tolerance,
    })
}

/// The Newton step `H⁻¹ g` by Jacobi-preconditioned conjugate gradients, where `H = Aᵀ diag(w) A + λ·diag(0,
/// 1, …, 1)`, using only products with `A` and `Aᵀ` (O(n·k) each instead of the O(n·k²) of forming `H`).
/// Solved to a relative residual of 1e-10, which leaves the step as exact as the direct solve for the
/// convergence test; `None` when that takes more than `2(k + 1)` iterations (rounding makes an
/// ill-conditioned system need more than the `k + 1` of exact arithmetic; past that, solving directly is
/// cheaper).
fn newton_step_cg(a: &DMatrix<f64>, w: &DVector<f64>, penalty: f64, g: &DVector<f64>) -> Option<DVector<f64>> {
    let m = a.ncols();
    let hessian_times = |v: &DVector<f64>| -> DVector<f64> {
        let mut out = a.tr_mul(&(a * v).component_mul(w));
        for i in 1..m {
            out[i] += penalty * v[i];
        }
        out
    };
    // diag(H)_j = Σ_i w_i a_ij² (+ λ for weights).
    let mut diag = DVector::from_iterator(
        m,
        a.column_iter()
            .map(|c| c.iter().zip(w.iter()).map(|(x, wi)| wi * x * x).sum::<f64>()),
    );
    for i in 1..m {
        diag[i] += penalty;
    }
    if diag.iter().any(|&d| d <= 0.0 || !d.is_finite()) {
        return None;
    }
    let target = 1e-10 * g.norm();
    let mut x = DVector::zeros(m);
    let mut r = g.clone();
    let mut z = r.component_div(&diag);
    let mut p = z.clone();
    let mut rz = r.dot(&z);
    for _ in 0..2 * (m + 1) {
        if r.norm() <= target {
            return Some(x);
        }
        let hp = hessian_times(&p);
        let curvature = p.dot(&hp);
        if curvature <= 0.0 || !curvature.is_finite() {
            return None;
        }
        let alpha = rz / curvature;
        x.axpy(alpha, &p, 1.0);
        r.axpy(-alpha, &hp, 1.0);
        z = r.component_div(&diag);
        let rz_next = r.dot(&z);
        p = &z + (rz_next / rz) * &p;
        rz = rz_next;
    }
    (r.norm() <= target).then_some(x)
}

/// The Newton step `H⁻¹ g` by forming `H` and a Cholesky factorisation.
fn newton_step_direct(a: &DMatrix<f64>, w: &DVector<f64>, penalty: f64, g: &DVector<f64>) -> Result<DVector<f64>> {
    let mut weighted = a.clone();
    for (mut row, wi) in weighted.row_iter_mut().zip(w.iter()) {
        row *= *wi;
    }
    let mut hess = a.tr_mul(&weighted);
    for i in 1..hess.nrows() {
        hess[(i, i)] += penalty;
    }
    let chol = Cholesky::new(hess).ok_or(ProbeError::NotPositiveDefinite {
        what: "logistic Hessian",
    })?;
    Ok(chol.solve(g))
}

#[cfg(test)]
#[path = "linear_tests.rs"]
mod tests;
