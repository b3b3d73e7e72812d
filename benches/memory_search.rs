//! The largest global batch that trains on this device: for each preset, with and without
//! `train.gradient_cache`, the number of pairs per step (every sequence `ISOCLR_SEARCH_LEN` nt) is doubled
//! from `ISOCLR_SEARCH_START` until a step runs out of memory or `ISOCLR_SEARCH_MAX` is reached, then
//! bisected between the largest batch that trained and the smallest that did not, to within 1/16 of it.
//!
//! Each probe builds a fresh trainer and runs `ISOCLR_SEARCH_STEPS` steps (the first allocates AdamW's
//! state) as `isoclr train` runs them: passes cut at `ISOCLR_SEARCH_POSITIONS` positions, bf16 autocast on
//! CUDA. An out-of-memory is the step's typed error (`TrainError::OutOfMemory`), not a crash, so the search
//! goes on in the same process after giving the cached memory back. On CUDA the table also gives each
//! batch's peak allocated memory (the statistic of `torch.cuda.max_memory_allocated`).
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ISOCLR_BENCH_DEVICE` | `cpu` or `cuda` | `cpu` |
//! | `ISOCLR_SEARCH_PRESETS` | comma-separated presets | `small,medium` |
//! | `ISOCLR_SEARCH_LEN` | every sequence this long | 12288 |
//! | `ISOCLR_SEARCH_START` | pairs of the first probe | 16 |
//! | `ISOCLR_SEARCH_MAX` | pairs at most | 4096 |
//! | `ISOCLR_SEARCH_POSITIONS` | positions per pass (`train.positions_per_pass`) | 786432 |
//! | `ISOCLR_SEARCH_STEPS` | steps per probe | 2 |
//!
//! Run: `cargo bench --bench memory_search` (on a CPU, under `ulimit -v`, it exercises the search itself).

use std::time::Instant;

use isoclr::config::{Config, ModelConfig, Preset, ScheduleKind, TrainConfig};
use isoclr::data::batch::encode_for_embedding;
use isoclr::data::{Pair, StepBatch, Transcript};
use isoclr::dist::SingleProcess;
use isoclr::train::TrainError;
use isoclr::train::step::Trainer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Device;

mod common;
use common::setting;

/// What one probe found: whether the batch trained, and its peak allocated bytes on CUDA.
struct Probe {
    fits: bool,
    peak_bytes: Option<u64>,
}

/// A step of `pairs` pairs of random `len`-nt transcripts, cut into passes of at most `positions` positions.
fn batch(pairs: usize, len: usize, positions: usize) -> StepBatch {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let transcripts: Vec<Transcript> = (0..2 * pairs)
        .map(|_| {
            let seq: Vec<u8> = (0..len).map(|_| b"ACGT"[rng.random_range(0..4)]).collect();
            Transcript::new("t", "g", 0, &seq, vec![len as u32 - 1], None).expect("a valid transcript")
        })
        .collect();
    let refs: Vec<&Transcript> = transcripts.iter().collect();
    StepBatch {
        step: 0,
        offset: 0,
        global_pairs: pairs,
        pairs: (0..pairs as u32)
            .map(|i| Pair {
                group: i,
                views: [i, pairs as u32 + i],
                group_size: 2,
            })
            .collect(),
        micro: encode_for_embedding(&refs, positions),
    }
}

fn probe(config: &Config, device: Device, pairs: usize, len: usize, steps: usize) -> Probe {
    let cuda = device.is_cuda();
    if cuda {
        isoclr::device::cuda_empty_cache();
        isoclr::device::reset_cuda_peak_memory(0);
    }
    let step_batch = batch(pairs, len, config.train.positions_per_pass);
    let fits = {
        let mut trainer = Trainer::new(config, device, 1);
        (0..steps).all(|step| {
            let step_batch = StepBatch {
                step: step as u64,
                ..step_batch.clone()
            };
            match trainer.train_step(&step_batch, &mut SingleProcess) {
                Ok(_) => true,
                Err(TrainError::OutOfMemory { .. }) => false,
                Err(other) => panic!("{pairs} pairs: {other}"),
            }
        })
    };
    let peak_bytes = if cuda {
        isoclr::device::cuda_peak_allocated_bytes(0)
    } else {
        None
    };
    if cuda {
        isoclr::device::cuda_empty_cache();
    }
    Probe { fits, peak_bytes }
}

fn main() {
    let device = common::device();
    isoclr::device::failure::report_only_unguarded_panics();
    let presets = std::env::var("ISOCLR_SEARCH_PRESETS").unwrap_or_else(|_| "small,medium".to_owned());
    let len: usize = setting("ISOCLR_SEARCH_LEN", 12_288);
    let start: usize = setting("ISOCLR_SEARCH_START", 16).max(1);
    let max: usize = setting("ISOCLR_SEARCH_MAX", 4096).max(start);
    let positions: usize = setting("ISOCLR_SEARCH_POSITIONS", 786_432);
    let steps: usize = setting("ISOCLR_SEARCH_STEPS", 2).max(1);
    println!(
        "| preset | gradient caching | largest batch that trained (pairs) | smallest that did not | peak GiB at the largest | probes | seconds |"
    );
    println!("|---|---|---|---|---|---|---|");
    for name in presets.split(',').map(str::trim) {
        let preset: Preset = serde_json::from_value(serde_json::Value::String(name.to_owned()))
            .unwrap_or_else(|_| panic!("ISOCLR_SEARCH_PRESETS: {name:?} is not a preset"));
        for gradient_cache in [false, true] {
            let config = Config {
                model: ModelConfig {
                    preset,
                    ..Default::default()
                },
                train: TrainConfig {
                    schedule: ScheduleKind::Constant,
                    gradient_cache,
                    positions_per_pass: positions,
                    ..Default::default()
                },
                ..Default::default()
            };
            let started = Instant::now();
            let mut probes = 0;
            let mut run = |pairs: usize| {
                probes += 1;
                let found = probe(&config, device, pairs, len, steps);
                eprintln!(
                    "memory_search: {name}, gradient caching {gradient_cache}: {pairs} pairs {}",
                    if found.fits { "trained" } else { "ran out of memory" }
                );
                found
            };
            // Double until a batch does not fit (or the cap), then bisect.
            let (mut fit, mut failed): (Option<(usize, Probe)>, Option<usize>) = (None, None);
            let mut pairs = start;
            loop {
                let found = run(pairs);
                if !found.fits {
                    failed = Some(pairs);
                    break;
                }
                fit = Some((pairs, found));
                if pairs >= max {
                    break;
                }
                pairs = (pairs * 2).min(max);
            }
            while let (Some((lo, _)), Some(hi)) = (&fit, failed) {
                if hi - lo <= (lo / 16).max(1) {
                    break;
                }
                let mid = lo + (hi - lo) / 2;
                let found = run(mid);
                if found.fits {
                    fit = Some((mid, found));
                } else {
                    failed = Some(mid);
                }
            }
            let (largest, peak) = match &fit {
                Some((pairs, found)) => (
                    pairs.to_string(),
                    found
                        .peak_bytes
                        .map_or("n/a".to_owned(), |b| format!("{:.2}", b as f64 / (1u64 << 30) as f64)),
                ),
                None => (format!("none (< {start})"), "n/a".to_owned()),
            };
            let smallest_failed = failed.map_or(format!("none up to {max}"), |p| p.to_string());
            println!(
                "| {name} | {} | {largest} | {smallest_failed} | {peak} | {probes} | {:.0} |",
                if gradient_cache { "on" } else { "off" },
                started.elapsed().as_secs_f64()
            );
        }
    }
    println!();
    println!(
        "{device:?}, every sequence {len} nt, passes of ≤ {positions} positions, {steps} steps per probe{}",
        if device.is_cuda() { ", bf16 autocast" } else { "" }
    );
}
