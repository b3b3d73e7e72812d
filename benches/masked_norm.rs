//! One batch norm, forward and backward, on the same tensor: isoclr's masked batch norm (statistics over
//! real positions only, output zero in padding; on the CPU the two fused kernels of src/device/shim.cpp)
//! against libtorch's `batch_norm`, the kernel `nn.BatchNorm1d` runs (statistics over every position,
//! padding included, no mask).
//!
//! Shapes are those of `small` at 8 pairs × 2,048 nt (16 sequences): each stage's activations, at the
//! stage's channels and pooled length. A quarter of each sequence is padding. Each figure is the median
//! of `ISOCLR_BENCH_STEPS` (default 50) timed calls after 5 untimed ones, the two norms alternating call by
//! call so that load from other work falls on both alike; `ISOCLR_BENCH_THREADS` (default: all cores).
//!
//! Run: `cargo bench --bench masked_norm` (see docs/PERFORMANCE.md).

use std::time::Instant;

use isoclr::config::Norm;
use isoclr::model::norm::{MaskedNorm, Positions};
use tch::{Device, Kind, Tensor, nn};

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let threads: i32 = std::env::var("ISOCLR_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()) as i32);
    let steps: usize = std::env::var("ISOCLR_BENCH_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let n = 16;
    println!("| activations [n, C, L] | isoclr masked ms | libtorch batch_norm ms | batch_norm ÷ masked |");
    println!("|---|---|---|---|");
    for (c, l) in [(64i64, 1024i64), (64, 512), (128, 256), (128, 128), (256, 64)] {
        let vs = nn::VarStore::new(Device::Cpu);
        let masked = MaskedNorm::new(&vs.root(), c, Norm::Batch, 1);
        let weight = Tensor::ones([c], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let bias = Tensor::zeros([c], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let running_mean = Tensor::zeros([c], (Kind::Float, Device::Cpu));
        let running_var = Tensor::ones([c], (Kind::Float, Device::Cpu));
        let lengths: Vec<i64> = (0..n).map(|i| l * 3 / 4 + (i % 4) * l / 16).collect();
        let mask = Tensor::arange(l, (Kind::Int64, Device::Cpu))
            .unsqueeze(0)
            .lt_tensor(&Tensor::from_slice(&lengths).unsqueeze(1))
            .to_kind(Kind::Float)
            .unsqueeze(1);
        let positions = Positions::new(mask.shallow_clone());
        let x = (Tensor::randn([n, c, l], (Kind::Float, Device::Cpu)) * &mask).set_requires_grad(true);
        let upstream = Tensor::randn([n, c, l], (Kind::Float, Device::Cpu));
        let run_masked = || {
            let start = Instant::now();
            (masked.forward(&x, &positions, true) * &upstream)
                .sum(Kind::Float)
                .backward();
            start.elapsed().as_secs_f64() * 1e3
        };
        let run_plain = || {
            let start = Instant::now();
            let y = x.batch_norm(
                Some(&weight),
                Some(&bias),
                Some(&running_mean),
                Some(&running_var),
                true,
                0.1,
                1e-5,
                true,
            );
            (y * &upstream).sum(Kind::Float).backward();
            start.elapsed().as_secs_f64() * 1e3
        };
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for step in 0..steps + 5 {
            let (ta, tb) = (run_masked(), run_plain());
            if step >= 5 {
                a.push(ta);
                b.push(tb);
            }
        }
        let (ma, mb) = (median(a), median(b));
        println!("| [{n}, {c}, {l}] | {ma:.2} | {mb:.2} | {:.2} |", mb / ma);
    }
    println!();
    println!("forward + backward of one norm and a product with a fixed upstream gradient; {threads} threads");
}
