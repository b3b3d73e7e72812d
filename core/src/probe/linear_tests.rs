//! Tests of the ridge and logistic probes against independent solutions.

use rand::{Rng, SeedableRng};

use super::*;

/// Standard normal draws (Box–Muller) from a seeded generator.
fn normals(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let (u, v): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        })
        .collect()
}

/// Solves `a · x = b` (dense, row-major `m × m`) by Gaussian elimination with partial pivoting: a solver
/// independent of the module's Cholesky and eigendecomposition paths.
fn gauss_solve(mut a: Vec<f64>, mut b: Vec<f64>) -> Vec<f64> {
    let m = b.len();
    for c in 0..m {
        let piv = (c..m)
            .max_by(|&i, &j| a[i * m + c].abs().total_cmp(&a[j * m + c].abs()))
            .unwrap();
        for k in 0..m {
            a.swap(c * m + k, piv * m + k);
        }
        b.swap(c, piv);
        for r in c + 1..m {
            let f = a[r * m + c] / a[c * m + c];
            for k in c..m {
                a[r * m + k] -= f * a[c * m + k];
            }
            b[r] -= f * b[c];
        }
    }
    let mut x = vec![0.0; m];
    for r in (0..m).rev() {
        let s: f64 = (r + 1..m).map(|k| a[r * m + k] * x[k]).sum();
        x[r] = (b[r] - s) / a[r * m + r];
    }
    x
}

/// Ridge by the augmented normal equations `(AᵀA + λ diag(0, 1, …)) θ = Aᵀy` with `A = [1, Z]`, `Z` standardised
/// by hand: returns (intercept, weights).
fn ridge_reference(x: &[f64], p: usize, y: &[f64], penalty: f64) -> (f64, Vec<f64>) {
    let n = y.len();
    let mut z = x.to_vec();
    for j in 0..p {
        let mean = (0..n).map(|i| x[i * p + j]).sum::<f64>() / n as f64;
        let sd = ((0..n).map(|i| (x[i * p + j] - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        for i in 0..n {
            z[i * p + j] = (x[i * p + j] - mean) / sd;
        }
    }
    let m = p + 1;
    let a = |i: usize, j: usize| if j == 0 { 1.0 } else { z[i * p + j - 1] };
    let mut lhs = vec![0.0; m * m];
    let mut rhs = vec![0.0; m];
    for r in 0..m {
        for c in 0..m {
            lhs[r * m + c] =
                (0..n).map(|i| a(i, r) * a(i, c)).sum::<f64>() + if r == c && r > 0 { penalty } else { 0.0 };
        }
        rhs[r] = (0..n).map(|i| a(i, r) * y[i]).sum();
    }
    let theta = gauss_solve(lhs, rhs);
    (theta[0], theta[1..].to_vec())
}

fn assert_close(a: &[f64], b: &[f64], tol: f64) {
    assert_eq!(a.len(), b.len());
    for (i, (u, v)) in a.iter().zip(b).enumerate() {
        assert!(
            (u - v).abs() <= tol * (1.0 + v.abs()),
            "index {i}: {u} vs {v} (tolerance {tol})"
        );
    }
}

/// `y = x · beta + noise·ε` on `n × p` normal features with unequal scales and offsets.
fn linear_problem(n: usize, p: usize, noise: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let x: Vec<f64> = normals(n * p, seed)
        .iter()
        .enumerate()
        .map(|(k, v)| v * (1 + k % p) as f64 + 3.0)
        .collect();
    let beta: Vec<f64> = (0..p).map(|j| 1.0 - 0.3 * j as f64).collect();
    let eps = normals(n, seed + 1);
    let y = x
        .chunks_exact(p)
        .zip(&eps)
        .map(|(r, e)| r.iter().zip(&beta).map(|(a, b)| a * b).sum::<f64>() + noise * e);
    let y = y.collect();
    (x, y)
}

#[test]
fn ridge_matches_independent_normal_equations() {
    // Relative tolerance 1e-10: both are float64 direct solves of a well-conditioned 5 × 5 system.
    let (x, y) = linear_problem(30, 4, 0.5, 11);
    for penalty in [1e-4, 0.7, 50.0] {
        let fit = RidgeProbe::fit(&x, 4, &y, penalty).unwrap();
        let (b, w) = ridge_reference(&x, 4, &y, penalty);
        assert_close(fit.weights(), &w, 1e-10);
        assert_close(&[fit.intercept()], &[b], 1e-10);
    }
}

#[test]
fn ridge_with_more_features_than_rows_matches_primal_solution() {
    // 8 rows, 20 features: the module solves in the 7-dimensional row space, the reference in the full
    // 21-dimensional primal; tolerance 1e-8 relative (the primal system is less well conditioned).
    let (x, y) = linear_problem(8, 20, 0.1, 12);
    for penalty in [1e-2, 1.0, 100.0] {
        let fit = RidgeProbe::fit(&x, 20, &y, penalty).unwrap();
        let (b, w) = ridge_reference(&x, 20, &y, penalty);
        assert_close(fit.weights(), &w, 1e-8);
        assert_close(&[fit.intercept()], &[b], 1e-10);
        let pred = fit.predict(&x).unwrap();
        assert_eq!(pred.len(), 8);
    }
}

#[test]
fn standardizer_uses_training_statistics_and_zeroes_constant_features() {
    // Column 0 varies, column 1 is constant.
    let train = [1.0, 5.0, 3.0, 5.0];
    let s = Standardizer::fit(&train, 2).unwrap();
    assert_eq!(s.transform(&train).unwrap(), vec![-1.0, 0.0, 1.0, 0.0]);
    // A test row uses the training mean 2 and sd 1; the constant column stays finite.
    assert_eq!(s.transform(&[4.0, 9.0]).unwrap(), vec![2.0, 4.0]);
    // A constant feature drops out of the ridge fit instead of producing NaN.
    let fit = RidgeProbe::fit(&[1.0, 5.0, 2.0, 5.0, 3.0, 5.0], 2, &[1.0, 2.0, 3.0], 1e-4).unwrap();
    assert_eq!(fit.weights()[1], 0.0);
    assert!(fit.weights()[0].is_finite());
}

#[test]
fn group_folds_keep_groups_together_and_balance_rows() {
    let groups: Vec<u32> = (0..200).map(|i| (i * 7 % 37) as u32).collect();
    let folds = group_folds(&groups, 5, 3).unwrap();
    let mut fold_of_group = std::collections::HashMap::new();
    for (g, f) in groups.iter().zip(&folds) {
        assert_eq!(*fold_of_group.entry(*g).or_insert(*f), *f, "group {g} straddles folds");
    }
    let mut load = [0usize; 5];
    folds.iter().for_each(|&f| load[f] += 1);
    assert!(load.iter().all(|&l| (30..=50).contains(&l)), "{load:?}");
    // Seeded: the same seed gives the same folds, another seed another assignment.
    assert_eq!(group_folds(&groups, 5, 3).unwrap(), folds);
    assert_ne!(group_folds(&groups, 5, 4).unwrap(), folds);
    assert_eq!(
        group_folds(&[1, 1, 2, 2, 3], 5, 0),
        Err(ProbeError::TooFewGroups { groups: 3, folds: 5 })
    );
}

#[test]
fn ridge_cv_picks_large_penalty_on_noise_and_small_on_noiseless_target() {
    let (n, p) = (120, 10);
    let groups: Vec<u32> = (0..n as u32).map(|i| i / 3).collect();
    let (x, y) = linear_problem(n, p, 0.0, 21);
    let fit = RidgeProbe::fit_cv(&x, p, &y, &groups, &CvOptions::default()).unwrap();
    assert_eq!(fit.penalty(), 1e-4, "{:?}", fit.cv_scores());
    let pred = fit.predict(&x).unwrap();
    assert!(crate::probe::r2(&y, &pred).unwrap() > 0.999_999);

    let noise = normals(n, 99);
    let fit = RidgeProbe::fit_cv(&x, p, &noise, &groups, &CvOptions::default()).unwrap();
    // 1e2 already shrinks the 120-row fit by about half; the grid's small end would chase the noise.
    assert!(fit.penalty() >= 1e2, "{:?}", fit.cv_scores());
    assert_eq!(fit.cv_scores().len(), DEFAULT_PENALTIES.len());
}

/// Gradient of Σ log-loss + λ/2 ‖w‖² at the fit, computed from the public surface and an independently fitted
/// standardiser: (∂/∂b, ∂/∂w).
fn logistic_gradient(fit: &LogisticProbe, x: &[f64], p: usize, y: &[bool]) -> (f64, Vec<f64>) {
    let z = Standardizer::fit(x, p).unwrap().transform(x).unwrap();
    let prob = fit.predict_proba(x).unwrap();
    let mut gw: Vec<f64> = fit.weights().iter().map(|w| fit.penalty() * w).collect();
    let mut gb = 0.0;
    for ((row, pr), &t) in z.chunks_exact(p).zip(&prob).zip(y) {
        let r = pr - f64::from(u8::from(t));
        gb += r;
        gw.iter_mut().zip(row).for_each(|(g, v)| *g += r * v);
    }
    (gb, gw)
}

fn noisy_labels(x: &[f64], p: usize, seed: u64) -> Vec<bool> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    x.chunks_exact(p)
        .map(|r| {
            let eta = 0.3 * (r[0] - 3.0) - 0.2 * (r[1] - 3.0) + 0.1;
            rng.random::<f64>() < 1.0 / (1.0 + (-eta).exp())
        })
        .collect()
}

#[test]
fn logistic_fit_satisfies_kkt_conditions() {
    // Tolerance 1e-8 on the gradient of a sum over rows: Newton stops at a decrement of 1e-12 per row.
    for (n, p) in [(60, 5), (10, 25)] {
        let (x, _) = linear_problem(n, p, 0.0, 31);
        let y = noisy_labels(&x, p, 32);
        for penalty in [1e-2, 1.0, 30.0] {
            let fit = LogisticProbe::fit(&x, p, &y, penalty, &LogisticOptions::default()).unwrap();
            let (gb, gw) = logistic_gradient(&fit, &x, p, &y);
            assert!(gb.abs() < 1e-8, "n {n} p {p} λ {penalty}: ∂b {gb}");
            assert!(gw.iter().all(|g| g.abs() < 1e-8), "n {n} p {p} λ {penalty}: ∂w {gw:?}");
        }
    }
}

#[test]
fn logistic_matches_torch_reference() {
    // Made once with the project's .venv Python: 16 × 3 features from torch.Generator().manual_seed(6)
    // (randn · (1, 3, 0.5) + (0, 2, −1), rounded to 2 decimals), labels drawn from a logistic model; the
    // objective Σ softplus(η) − yη + 0.5 · 0.5 · ‖w‖² on features standardised with the population sd, minimised
    // by torch float64 LBFGS (strong Wolfe, tolerance_grad 1e-14) to a gradient below 2e-9;
    // printed to 15 digits, pasted here to 12.
    const X: [f64; 48] = [
        1.13, 7.57, -1.40, 0.86, 5.18, -1.74, -0.14, 6.73, -1.33, -1.02, 7.66, -0.74, -0.43, 1.93, -1.17, -0.21, 1.64,
        -0.81, -0.86, 1.92, -0.56, -0.69, 7.75, -0.81, 0.36, 0.13, -1.52, 0.35, -0.84, -0.22, -0.23, 3.35, -0.64, 1.53,
        0.69, -1.00, -1.10, -1.32, -1.23, 0.55, -0.80, -1.58, -1.64, 3.35, -1.53, -0.44, 4.94, -1.28,
    ];
    const Y: [bool; 16] = [
        false, false, false, false, false, false, false, false, false, true, false, false, true, false, false, false,
    ];
    const W: [f64; 3] = [-0.539_538_431_70, -1.747_455_899_15, 0.733_324_537_53];
    const B: f64 = -3.078_708_449_16;
    let fit = LogisticProbe::fit(&X, 3, &Y, 0.5, &LogisticOptions::default()).unwrap();
    // 1e-7: the reference's own gradient is ~1e-9 and the objective's curvature is O(1).
    assert_close(fit.weights(), &W, 1e-7);
    assert_close(&[fit.intercept()], &[B], 1e-7);
}

#[test]
fn logistic_cv_picks_large_penalty_on_noise_labels() {
    let (n, p) = (150, 8);
    let (x, _) = linear_problem(n, p, 0.0, 41);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(42);
    let y: Vec<bool> = (0..n).map(|_| rng.random::<bool>()).collect();
    let groups: Vec<u32> = (0..n as u32).map(|i| i / 2).collect();
    let fit = LogisticProbe::fit_cv(&x, p, &y, &groups, &CvOptions::default(), &LogisticOptions::default()).unwrap();
    assert!(fit.penalty() >= 1e2, "{:?}", fit.cv_scores());
    // On a clean signal the selected penalty is small.
    let y: Vec<bool> = x
        .chunks_exact(p)
        .map(|r| r[0] + 0.5 * normals(1, (r[1] * 1e6) as u64)[0] > 3.0)
        .collect();
    let fit = LogisticProbe::fit_cv(&x, p, &y, &groups, &CvOptions::default(), &LogisticOptions::default()).unwrap();
    assert!(fit.penalty() <= 10.0, "{:?}", fit.cv_scores());
}

#[test]
fn multilabel_fits_one_model_per_label_and_names_a_single_class_label() {
    let (n, p) = (60, 4);
    let (x, _) = linear_problem(n, p, 0.0, 51);
    let a = noisy_labels(&x, p, 52);
    let b: Vec<bool> = a.iter().map(|v| !v).collect();
    let groups: Vec<u32> = (0..n as u32).collect();
    let (cv, opts) = (CvOptions::default(), LogisticOptions::default());
    let fits = LogisticProbe::fit_cv_multilabel(&x, p, &[&a, &b], &groups, &cv, &opts).unwrap();
    assert_eq!(fits.len(), 2);
    // Complementary labels: the same penalty and mirrored weights.
    assert_eq!(fits[0].penalty(), fits[1].penalty());
    assert_close(
        fits[0].weights(),
        &fits[1].weights().iter().map(|w| -w).collect::<Vec<_>>(),
        1e-7,
    );
    let none = vec![false; n];
    assert_eq!(
        LogisticProbe::fit_cv_multilabel(&x, p, &[&a, &none], &groups, &cv, &opts).unwrap_err(),
        ProbeError::SingleClass {
            label: 1,
            class: false,
            rows: n
        }
    );
}

#[test]
fn bad_inputs_get_typed_errors() {
    let opts = LogisticOptions::default();
    assert_eq!(
        RidgeProbe::fit(&[], 3, &[], 1.0),
        Err(ProbeError::Empty { what: "features" })
    );
    assert_eq!(
        RidgeProbe::fit(&[1.0, 2.0, 3.0, 4.0], 2, &[1.0], 1.0),
        Err(ProbeError::LengthMismatch {
            what: "targets",
            expected: 2,
            got: 1
        })
    );
    assert!(matches!(
        RidgeProbe::fit(&[1.0, 2.0, 3.0], 2, &[1.0, 2.0], 1.0),
        Err(ProbeError::LengthMismatch { .. })
    ));
    assert!(matches!(
        RidgeProbe::fit(&[1.0, 2.0], 1, &[1.0, 2.0], 0.0),
        Err(ProbeError::InvalidOption { .. })
    ));
    assert_eq!(
        RidgeProbe::fit_cv(&[1.0, 2.0], 1, &[1.0, 2.0], &[0], &CvOptions::default()),
        Err(ProbeError::LengthMismatch {
            what: "groups",
            expected: 2,
            got: 1
        })
    );
    assert_eq!(
        LogisticProbe::fit(&[1.0, 2.0, 3.0], 1, &[true, true, true], 1.0, &opts),
        Err(ProbeError::SingleClass {
            label: 0,
            class: true,
            rows: 3
        })
    );
    // An iteration cap of one cannot reach the tolerance.
    let (x, _) = linear_problem(40, 3, 0.0, 61);
    let y = noisy_labels(&x, 3, 62);
    let capped = LogisticOptions {
        max_iterations: 1,
        ..LogisticOptions::default()
    };
    let err = LogisticProbe::fit(&x, 3, &y, 1e-3, &capped).unwrap_err();
    assert!(matches!(err, ProbeError::NotConverged { iterations: 1, .. }), "{err}");
    assert!(err.to_string().contains("did not converge in 1 iterations"), "{err}");
}

#[test]
fn conjugate_gradient_newton_step_matches_independent_solve() {
    // H = Aᵀ diag(w) A + λ·diag(0, 1, …) built by hand and solved by Gaussian elimination; the CG step must
    // agree to 1e-8 relative, with weights spread over six orders of magnitude (a nearly saturated fit).
    let (n, m) = (40, 12);
    let a_rows: Vec<f64> = normals(n * m, 41)
        .iter()
        .enumerate()
        .map(|(i, v)| if i % m == 0 { 1.0 } else { *v })
        .collect();
    let a = DMatrix::from_row_slice(n, m, &a_rows);
    let w = DVector::from_iterator(n, (0..n).map(|i| 10f64.powi(-((i % 7) as i32)) * 0.25));
    let g = DVector::from_vec(normals(m, 42));
    for penalty in [1e-4, 0.3, 50.0] {
        let mut h = vec![0.0; m * m];
        for r in 0..m {
            for c in 0..m {
                h[r * m + c] = (0..n).map(|i| w[i] * a[(i, r)] * a[(i, c)]).sum::<f64>();
            }
            if r > 0 {
                h[r * m + r] += penalty;
            }
        }
        let expected = gauss_solve(h, g.iter().copied().collect());
        let cg = newton_step_cg(&a, &w, penalty, &g).expect("CG converges on a 12-unknown system");
        let scale = expected.iter().fold(0.0f64, |s, v| s.max(v.abs()));
        assert_close(
            &cg.iter().map(|v| v / scale).collect::<Vec<_>>(),
            &expected.iter().map(|v| v / scale).collect::<Vec<_>>(),
            1e-8,
        );
        let direct = newton_step_direct(&a, &w, penalty, &g).unwrap();
        assert_close(
            &direct.iter().map(|v| v / scale).collect::<Vec<_>>(),
            &expected.iter().map(|v| v / scale).collect::<Vec<_>>(),
            1e-8,
        );
    }
    // A Hessian CG cannot use (a zero weight column with no penalty on the intercept) falls back: `None`.
    let zero = DVector::zeros(n);
    assert!(newton_step_cg(&a, &zero, 1.0, &g).is_none());
}
