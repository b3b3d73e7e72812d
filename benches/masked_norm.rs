//! One batch norm, forward and backward, on the same tensor: isoclr's masked batch norm (statistics over
//! real positions only, output zero in padding) against libtorch's `batch_norm`, the kernel
//! `nn.BatchNorm1d` runs (on CUDA cuDNN's; statistics over every position, padding included, no mask).
//!
//! On the CPU (`ISOCLR_BENCH_DEVICE=cpu`, the default) isoclr's side is the two fused loops of
//! src/device/shim.cpp, f32, on the activations of `small` at 8 pairs × 2,048 nt (16 sequences): each
//! stage's channels at its pooled length. On CUDA (`ISOCLR_BENCH_DEVICE=cuda`) isoclr has two sides, the
//! elementwise composite (what training runs on a GPU by default) and ATen's batch-norm kernels
//! (`device::BatchNormKernels::Aten`, chosen in training by `ISOCLR_CUDA_BATCH_NORM=kernels`), bf16
//! activations with f32 weights as under autocast, on `small` at 64 pairs × 12,288 nt (128 sequences). A
//! quarter of each sequence is padding. Each figure is the median of `ISOCLR_BENCH_STEPS` (default 50)
//! timed calls after 5 untimed ones, the sides alternating call by call so that load from other work falls
//! on all alike; on CUDA each call ends with the device idle. `ISOCLR_BENCH_THREADS` (default: all cores).
//!
//! Run: `cargo bench --bench masked_norm` (see docs/PERFORMANCE.md).

use std::time::Instant;

use isoclr::config::Norm;
use isoclr::device::{BatchNormKernels, masked_batch_norm};
use isoclr::model::norm::{MaskedNorm, Positions};
use tch::{Kind, Tensor, nn};

mod common;
use common::setting;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let threads: i32 = setting(
        "ISOCLR_BENCH_THREADS",
        std::thread::available_parallelism().map_or(1, |n| n.get()) as i32,
    );
    let steps: usize = setting("ISOCLR_BENCH_STEPS", 50);
    let device = common::device();
    tch::set_num_threads(threads);
    tch::manual_seed(0);
    let cuda = device.is_cuda();
    let (n, kind) = if cuda { (128, Kind::BFloat16) } else { (16, Kind::Float) };
    let shapes: &[(i64, i64)] = if cuda {
        &[(64, 6144), (64, 3072), (128, 1536), (128, 768), (256, 384)]
    } else {
        &[(64, 1024), (64, 512), (128, 256), (128, 128), (256, 64)]
    };
    let sides: &[&str] = if cuda {
        &["isoclr composite", "isoclr ATen kernels"]
    } else {
        &["isoclr masked"]
    };
    let sync = || {
        if cuda {
            tch::Cuda::synchronize(0);
        }
    };
    let header: Vec<String> = (sides.iter())
        .map(|s| format!("{s} ms"))
        .chain(["libtorch batch_norm ms".into()])
        .chain(sides.iter().map(|s| format!("batch_norm ÷ {s}")))
        .collect();
    println!("| activations [n, C, L] | {} |", header.join(" | "));
    println!("|---{}|", "|---".repeat(header.len()));
    for &(c, l) in shapes {
        let vs = nn::VarStore::new(device);
        let masked = MaskedNorm::new(&vs.root(), c, Norm::Batch, 1);
        let f32s = (Kind::Float, device);
        let weight = Tensor::ones([c], f32s).set_requires_grad(true);
        let bias = Tensor::zeros([c], f32s).set_requires_grad(true);
        let running_mean = Tensor::zeros([c], f32s);
        let running_var = Tensor::ones([c], f32s);
        let lengths: Vec<i64> = (0..n).map(|i| l * 3 / 4 + (i % 4) * l / 16).collect();
        let mask = Tensor::arange(l, (Kind::Int64, device))
            .unsqueeze(0)
            .lt_tensor(&Tensor::from_slice(&lengths).to_device(device).unsqueeze(1))
            .to_kind(Kind::Float)
            .unsqueeze(1);
        let positions = Positions::new(mask.shallow_clone());
        let x = (Tensor::randn([n, c, l], f32s) * &mask)
            .to_kind(kind)
            .set_requires_grad(true);
        let upstream = Tensor::randn([n, c, l], f32s).to_kind(kind);
        let timed = |body: &dyn Fn() -> Tensor| {
            sync();
            let start = Instant::now();
            (body().to_kind(kind) * &upstream).sum(Kind::Float).backward();
            sync();
            start.elapsed().as_secs_f64() * 1e3
        };
        let run_side = |side: usize| match side {
            0 => timed(&|| masked.forward(&x, &positions, true)),
            _ => timed(&|| {
                let mut out = masked_batch_norm(BatchNormKernels::Aten, &[&x], &[&mask], &weight, &bias, 1e-5)
                    .expect("ATen's batch-norm kernels apply");
                out.outputs.swap_remove(0)
            }),
        };
        let run_plain = || {
            timed(&|| {
                x.batch_norm(
                    Some(&weight),
                    Some(&bias),
                    Some(&running_mean),
                    Some(&running_var),
                    true,
                    0.1,
                    1e-5,
                    true,
                )
            })
        };
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); sides.len() + 1];
        for step in 0..steps + 5 {
            let mut round: Vec<f64> = (0..sides.len()).map(run_side).collect();
            round.push(run_plain());
            if step >= 5 {
                for (t, r) in times.iter_mut().zip(round) {
                    t.push(r);
                }
            }
        }
        let medians: Vec<f64> = times.into_iter().map(median).collect();
        let plain = medians[sides.len()];
        let cells: Vec<String> = (medians.iter())
            .map(|m| format!("{m:.2}"))
            .chain(medians[..sides.len()].iter().map(|m| format!("{:.2}", plain / m)))
            .collect();
        println!("| [{n}, {c}, {l}] | {} |", cells.join(" | "));
    }
    println!();
    let what = if cuda {
        "bf16 activations, f32 weights, GPU 0".to_owned()
    } else {
        format!("f32, {threads} threads")
    };
    println!("forward + backward of one norm and a product with a fixed upstream gradient; {what}");
}
