//! Benchmark of batch serving: a real coordinator streams every rank's shards over gRPC on loopback to 4
//! draining worker clients (`WorkerClient::shards`, decoded and validated into `Shard`s; then again with
//! `WorkerClient::batches`, which also runs `Shard::encode` into f32 tracks), next to the rate of planning
//! the same shards in this process with no network, measured in the same run. Also breaks the in-process
//! path down (planning, message building, prost encoding, decoding, track encoding) to show where time goes.
//!
//! Data: the synthetic transcriptome at realistic lengths (`synth`, length scale 1.0, 3,000 genes by default:
//! median about 3 kb, at most 12,288 nt after `prep`), made once under `target/bench-data/`.
//!
//! `cargo bench -p isoclr-core --bench batch_serving`; `ISOCLR_BENCH_GENES` (3000), `ISOCLR_BENCH_BATCH`
//! (global pairs per step, 256), `ISOCLR_BENCH_STEPS` (200), `ISOCLR_BENCH_WORKERS` (4) change the run.

use std::path::PathBuf;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use isoclr_core::config::Config;
use isoclr_core::coord::{Coordinator, CoordinatorOptions, Progress};
use isoclr_core::data::batch::plan_shard;
use isoclr_core::data::prep::{PrepInput, PrepOptions, prep};
use isoclr_core::data::synth::{SynthOptions, synth};
use isoclr_core::data::{Augment, Dataset, PassLayout, Sampler};
use isoclr_core::worker::wire::{shard_from_message, shard_to_message};
use isoclr_core::worker::{Registration, Token, WorkerClient};
use prost::Message;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The benchmark's dataset, made once and reused.
fn dataset(genes: usize, length_scale: f64) -> Result<Dataset> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bench-data")
        .join(format!("synth-{genes}-{length_scale}"));
    let prepared = root.join("prepared");
    if Dataset::read_manifest(&prepared).is_err() {
        eprintln!("making the benchmark dataset ({genes} genes) under {}", root.display());
        let summary = synth(&SynthOptions {
            out: root.join("raw"),
            genes,
            seed: 5,
            length_scale,
            ..Default::default()
        })?;
        prep(&PrepOptions {
            homology: Some(summary.homology),
            ..PrepOptions::new(
                PrepInput::Genome {
                    annotation: summary.gtf,
                    genome: summary.genome,
                },
                prepared.clone(),
            )
        })?;
    }
    Ok(Dataset::open(&prepared)?)
}

struct Setup {
    config: Config,
    data: Arc<Dataset>,
    sampler: Sampler,
    augment: Augment,
    steps: u64,
    world: usize,
}

impl Setup {
    fn views(&self) -> u64 {
        self.steps * 2 * self.config.train.batch_size as u64
    }
}

/// Times `f` over every (step, rank) shard; returns seconds.
fn time_in_process(setup: &Setup, mut f: impl FnMut(u64, usize) -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    for step in 0..setup.steps {
        for rank in 0..setup.world {
            f(step, rank)?;
        }
    }
    Ok(start.elapsed().as_secs_f64())
}

/// Serves `setup.steps` steps to `world` clients on loopback; each client drains its stream with `drain`
/// (returning the views it received). Returns the wall time from the first stream opening to the last end.
fn serve_over_grpc(
    setup: &Setup,
    drain: impl Fn(&WorkerClient, usize) -> Result<u64> + Send + Sync + 'static,
) -> Result<f64> {
    let token = Token::generate();
    let out = tempfile::tempdir()?;
    let mut opts = CoordinatorOptions::new(
        setup.config.clone(),
        setup.data.clone(),
        setup.world,
        token.clone(),
        out.path().to_owned(),
    );
    opts.progress = Progress::Off;
    let runtime = tokio::runtime::Runtime::new()?;
    let coordinator = runtime.block_on(Coordinator::bind(opts))?;
    let addr = coordinator.local_addr().to_string();
    let handle = coordinator.handle();
    let served = runtime.spawn(coordinator.serve());
    let barrier = Arc::new(Barrier::new(setup.world + 1));
    let drain = Arc::new(drain);
    let clients: Vec<_> = (0..setup.world)
        .map(|local| {
            let (addr, token, barrier, drain) = (addr.clone(), token.clone(), barrier.clone(), drain.clone());
            std::thread::spawn(move || -> Result<u64> {
                let client = WorkerClient::connect(&addr, &token, None, Duration::from_secs(10))?;
                let rendezvous = client.register(
                    &Registration::this_process(local as u32, "cpu", ""),
                    Duration::from_secs(60),
                )?;
                barrier.wait();
                drain(&client, rendezvous.rank)
            })
        })
        .collect();
    barrier.wait();
    let start = Instant::now();
    let mut views = 0;
    for client in clients {
        views += client.join().map_err(|_| anyhow!("a client panicked"))??;
    }
    let seconds = start.elapsed().as_secs_f64();
    if views != setup.views() {
        return Err(anyhow!("clients received {views} views, expected {}", setup.views()));
    }
    handle.abort("benchmark over");
    let _ = runtime.block_on(served);
    Ok(seconds)
}

fn main() -> Result<()> {
    let genes: usize = env_or("ISOCLR_BENCH_GENES", 3000);
    let batch: usize = env_or("ISOCLR_BENCH_BATCH", 256);
    let steps: u64 = env_or("ISOCLR_BENCH_STEPS", 200);
    let world: usize = env_or("ISOCLR_BENCH_WORKERS", 4);
    let length_scale: f64 = env_or("ISOCLR_BENCH_LENGTH_SCALE", 1.2);
    let data = dataset(genes, length_scale).context("benchmark dataset")?;
    let lengths = data.manifest.lengths.clone();
    let config = Config::load(
        None,
        &[
            format!("train.batch_size={batch}"),
            format!("train.steps={steps}"),
            "dist.heartbeat_timeout_s=600".into(),
            "dist.prefetch=4".into(),
        ],
    )?;
    let t = &config.train;
    let sampler = Sampler::new(t.seed, t.batch_size, data.groups.len())?;
    let augment = Augment {
        mask_fraction: t.mask_fraction,
        max_shift: t.max_shift,
        max_len: data.manifest.max_len,
    };
    let setup = Setup {
        config: config.clone(),
        data: Arc::new(data),
        sampler,
        augment,
        steps,
        world,
    };
    let layout = PassLayout::of(&config);
    println!(
        "dataset: {} transcripts in {} groups, length median {} mean {:.0} max {}; {world} ranks, {batch} pairs \
         ({} views) per step, {steps} steps",
        setup.data.transcripts.len(),
        setup.data.groups.len(),
        lengths.median,
        lengths.mean,
        lengths.max,
        2 * batch
    );

    let (d, s, a, seed) = (&setup.data, &setup.sampler, &setup.augment, config.train.seed);
    let plan = |step, rank| plan_shard(d, s, a, seed, step, rank, world);
    // Warm up caches and the allocator.
    for rank in 0..world {
        plan(0, rank)?;
    }
    let planning = time_in_process(&setup, |step, rank| plan(step, rank).map(drop).map_err(Into::into))?;
    let mut bytes = 0usize;
    let to_wire = time_in_process(&setup, |step, rank| {
        bytes += shard_to_message(plan(step, rank)?).encode_to_vec().len();
        Ok(())
    })?;
    // What masks would cost as absolute positions instead of deltas (step 0 is representative).
    let varint = |v: u32| prost::encoding::encoded_len_varint(u64::from(v));
    let (mut mask_delta, mut mask_absolute) = (0usize, 0usize);
    for rank in 0..world {
        let shard = plan(0, rank)?;
        mask_absolute += shard
            .views
            .iter()
            .flat_map(|v| &v.masked)
            .map(|&p| varint(p))
            .sum::<usize>();
        let message = shard_to_message(shard);
        mask_delta += message
            .views
            .iter()
            .flat_map(|v| &v.masked_deltas)
            .map(|&d| varint(d))
            .sum::<usize>();
    }
    let round_trip = time_in_process(&setup, |step, rank| {
        let wire = shard_to_message(plan(step, rank)?).encode_to_vec();
        let message = isoclr_proto::v1::ShardMessage::decode(wire.as_slice())?;
        shard_from_message(message)?;
        Ok(())
    })?;
    let with_tracks = time_in_process(&setup, |step, rank| {
        plan(step, rank)?.encode(layout);
        Ok(())
    })?;

    let grpc_shards = serve_over_grpc(&setup, |client, rank| {
        let shards = client.shards(rank, 0, 4)?;
        let mut views = 0;
        for shard in shards {
            views += shard?.views.len() as u64;
        }
        Ok(views)
    })?;
    let grpc_batches = serve_over_grpc(&setup, move |client, rank| {
        let batches = client.batches(rank, 0, layout, 4)?;
        let mut views = 0;
        for batch in batches {
            views += batch?.micro.iter().map(|m| m.rows.len() as u64).sum::<u64>();
        }
        Ok(views)
    })?;

    let views = setup.views() as f64;
    let rate = |seconds: f64| views / seconds;
    let step_views = (2 * batch) as f64;
    println!(
        "bytes on the wire per view: {:.0}; of them masks {:.0} delta-encoded ({:.0} as absolute positions)",
        bytes as f64 / views,
        mask_delta as f64 / step_views,
        mask_absolute as f64 / step_views
    );
    println!("| path | sequences/s |");
    println!("|---|---|");
    println!("| in-process: plan_shard only (no network) | {:.0} |", rate(planning));
    println!(
        "| in-process: plan + build message + prost encode | {:.0} |",
        rate(to_wire)
    );
    println!(
        "| in-process: plan + encode + prost decode + validate into Shard | {:.0} |",
        rate(round_trip)
    );
    println!(
        "| in-process: plan + Shard::encode to f32 tracks | {:.0} |",
        rate(with_tracks)
    );
    println!(
        "| gRPC loopback, {world} clients draining Shards | {:.0} |",
        rate(grpc_shards)
    );
    println!(
        "| gRPC loopback, {world} clients draining encoded StepBatches | {:.0} |",
        rate(grpc_batches)
    );
    println!(
        "ratio gRPC Shards / in-process planning: {:.2}; goal ≥ 30,000 sequences/s: {}",
        rate(grpc_shards) / rate(planning),
        if rate(grpc_shards) >= 30_000.0 { "met" } else { "missed" }
    );
    Ok(())
}
