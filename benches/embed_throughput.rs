//! Embedding throughput (`isoclr embed`, the probe runner) next to the training forward pass, on the same
//! transcripts, model and machine, in one run.
//!
//! Three measurements per round, in turn, so load from other work falls on all alike; figures are medians
//! over rounds:
//! - `embed (mean)`: `probe::embed::Encoder::embed` with mean pooling: length-sorted chunks, encoding,
//!   evaluation-mode passes without gradients, the copy back to the host;
//! - `embed (regions)`: the same with 5'UTR/CDS/3'UTR pooling;
//! - `train forward`: the encoder's training-mode forward pass (gradients recorded, as in a training step)
//!   over the same transcripts in the same micro-batches, including their encoding; no backward pass.
//!
//! Settings (environment): `ISOCLR_BENCH_DEVICE` (`cpu` or `cuda`, default `cpu`), `ISOCLR_BENCH_PRESET`
//! (default `tiny` on CPU, `small` on CUDA), `ISOCLR_BENCH_GENES` (synthetic genes, default 300),
//! `ISOCLR_BENCH_SCALE` (synthetic length scale, default 0.4), `ISOCLR_BENCH_ROUNDS` (default 5),
//! `ISOCLR_BENCH_POSITIONS` (positions per pass, default 32,768 on CPU, 64 × 12,288 on CUDA).
//!
//! Run: `cargo bench --bench embed_throughput` (see docs/PERFORMANCE.md, "Embedding throughput").

use std::time::Instant;

use isoclr::config::{Config, Norm, Pooling, Preset};
use isoclr::data::batch::encode_for_embedding;
use isoclr::data::{Dataset, Transcript};
use isoclr::model::Model;
use isoclr::probe::embed::Encoder;
use tch::Device;

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let cuda = std::env::var("ISOCLR_BENCH_DEVICE").is_ok_and(|d| d == "cuda");
    let device = if cuda { Device::Cuda(0) } else { Device::Cpu };
    // Without this, libtorch registers no CUDA backend (rustc drops libtorch_cuda at link time) and the
    // first CUDA tensor fails; `isoclr` itself does the same at start-up.
    if cuda {
        isoclr::device::init();
        anyhow::ensure!(
            tch::Cuda::is_available(),
            "ISOCLR_BENCH_DEVICE=cuda but libtorch sees no CUDA device (is torch's lib directory on LD_LIBRARY_PATH?)"
        );
    }
    let preset = match std::env::var("ISOCLR_BENCH_PRESET").as_deref() {
        Ok("small") => Preset::Small,
        Ok("medium") => Preset::Medium,
        Ok("large") => Preset::Large,
        Ok(_) => Preset::Tiny,
        Err(_) if cuda => Preset::Small,
        Err(_) => Preset::Tiny,
    };
    let rounds: usize = env("ISOCLR_BENCH_ROUNDS", 5);
    let positions: usize = env("ISOCLR_BENCH_POSITIONS", if cuda { 64 * 12_288 } else { 32_768 });

    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.data.synth_genes = env("ISOCLR_BENCH_GENES", 300);
    config.data.synth_length_scale = env("ISOCLR_BENCH_SCALE", 0.4);
    config.model.preset = preset;
    config.model.norm = Norm::Batch;
    let dataset: Dataset = isoclr::data::resolve_dataset(&config.data, dir.path())?;
    let transcripts: Vec<&Transcript> = dataset.transcripts.iter().collect();
    let nt: usize = transcripts.iter().map(|t| t.len()).sum();
    let encoder = Encoder {
        model: Model::new(&config.model, device, 0),
        config: config.clone(),
        source: "bench".into(),
    };
    let sync = || {
        if cuda {
            tch::Cuda::synchronize(0);
        }
    };
    let train_forward = || {
        // A training step's forward: encode, training mode, autograd recording (no backward).
        let mut order: Vec<usize> = (0..transcripts.len()).collect();
        order.sort_by_key(|&i| transcripts[i].len());
        for chunk in order.chunks(2048) {
            let members: Vec<&Transcript> = chunk.iter().map(|&i| transcripts[i]).collect();
            let micro = encode_for_embedding(&members, positions);
            let out = isoclr::device::autocast_bf16(cuda, || encoder.model.embed_micro_batches(&micro, true));
            let _ = out.sum(tch::Kind::Float).double_value(&[]);
        }
    };
    // Warm-up: allocator, kernels, page cache.
    encoder.embed(&transcripts, positions, Pooling::Mean, None)?;
    train_forward();
    sync();

    let (mut mean, mut regions, mut train) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let t = Instant::now();
        encoder.embed(&transcripts, positions, Pooling::Mean, None)?;
        sync();
        mean.push(transcripts.len() as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        encoder.embed(&transcripts, positions, Pooling::Regions, None)?;
        sync();
        regions.push(transcripts.len() as f64 / t.elapsed().as_secs_f64());
        let t = Instant::now();
        train_forward();
        sync();
        train.push(transcripts.len() as f64 / t.elapsed().as_secs_f64());
    }
    let ratios: Vec<f64> = mean.iter().zip(&train).map(|(a, b)| a / b).collect();
    println!(
        "{} transcripts ({} nt, mean {:.0} nt), preset {preset:?}, {device:?}, {positions} positions per pass, \
         {rounds} rounds, libtorch threads {}",
        transcripts.len(),
        nt,
        nt as f64 / transcripts.len() as f64,
        tch::get_num_threads()
    );
    println!("| pass | sequences/s (median) | nt/s |");
    println!("|---|---:|---:|");
    let avg_nt = nt as f64 / transcripts.len() as f64;
    for (name, v) in [
        ("embed, mean pooling", &mean),
        ("embed, region pooling", &regions),
        ("training forward", &train),
    ] {
        let m = median(v.clone());
        println!("| {name} | {m:.0} | {:.0} |", m * avg_nt);
    }
    println!(
        "embed (mean) / training forward, per round: {}; median {:.2}×",
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", "),
        median(ratios.clone())
    );
    Ok(())
}
