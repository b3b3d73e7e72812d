//! Cost of one cross-validated probe fit (5 grouped folds, 9 penalties, then the refit) on k-mer-sized
//! features, by training rows: the part of a probe run that grows fastest (cubically in rows, through the
//! row-space decomposition and, for the logistic probe, one Newton system per iteration).
//!
//! Run: `cargo bench -p isoclr-core --bench probe_fit` (optional: `ISOCLR_BENCH_ROWS=300,600,1200`); see docs/PERFORMANCE.md.

use std::time::Instant;

use isoclr_core::probe::kmer::KMER_FEATURES;
use isoclr_core::probe::{CvOptions, LogisticOptions, LogisticProbe, RidgeProbe};

fn main() -> anyhow::Result<()> {
    let rows: Vec<usize> = std::env::var("ISOCLR_BENCH_ROWS")
        .unwrap_or_else(|_| "300,600".into())
        .split(',')
        .map(|r| r.trim().parse())
        .collect::<Result<_, _>>()?;
    let p = KMER_FEATURES;
    println!("| training rows | features | ridge fit_cv (s) | logistic fit_cv (s) |");
    println!("|---:|---:|---:|---:|");
    for n in rows {
        // A fixed pseudo-random design; the target depends on two features plus noise.
        let mut state: u64 = 1;
        let mut uniform = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let x: Vec<f64> = (0..n * p).map(|_| uniform()).collect();
        let y: Vec<bool> = (0..n)
            .map(|i| x[i * p] + x[i * p + 1] + 0.3 * uniform() > 1.15)
            .collect();
        let yf: Vec<f64> = y.iter().map(|&b| f64::from(u8::from(b))).collect();
        let groups: Vec<u32> = (0..n as u32).map(|i| i / 2).collect();
        let t = Instant::now();
        RidgeProbe::fit_cv(&x, p, &yf, &groups, &CvOptions::default())?;
        let ridge = t.elapsed().as_secs_f64();
        let t = Instant::now();
        LogisticProbe::fit_cv(&x, p, &y, &groups, &CvOptions::default(), &LogisticOptions::default())?;
        let logistic = t.elapsed().as_secs_f64();
        println!("| {n} | {p} | {ridge:.2} | {logistic:.2} |");
    }
    Ok(())
}
