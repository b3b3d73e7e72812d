//! Checkpoint cost, two ways (issue 4):
//!
//! 1. **Stall**: a real `Trainer` trains on a fixed batch and hands a checkpoint to `Checkpointing::save`
//!    (`final_save = false`, as `isoclr train` does between steps) every K steps. Each step is timed as the
//!    training loop runs it (the step, then the save call when one is due) and put in one of three classes:
//!    the step that takes the snapshot (the save call runs on the training thread), steps during which the
//!    background save is in flight, and steps with neither. Medians of each class and their ratio to the quiet
//!    steps, in the same run. `Trainer::snapshot` alone, and one plain copy of the same tensors, are timed
//!    after the loop.
//! 2. **Throughput**: the bytes of a preset's model + optimiser (a real snapshot) and a synthetic payload are
//!    saved with `CheckpointStore::save` (files, SHA-256 manifest, LATEST, retention) and loaded back with
//!    `CheckpointStore::load(verify = true)`, against a plain `ObjectStore::put` / `get` of the same files to
//!    the same store (an `object_store` built with the settings `CheckpointStore::open` uses), the two taking
//!    turns, repeated; medians. For a local directory (`file://`) and for S3 on a SeaweedFS server on
//!    loopback (`scripts/seaweedfs.sh`).
//!
//! When the background save ends is read from the checkpoint module's own log event ("checkpoint saved"),
//! caught by a tracing layer: `Checkpointing` exposes no in-flight query, and polling the store from the
//! training thread would add work to the very steps being measured.
//!
//! Settings (environment):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ISOCLR_BENCH_PARTS` | `stall`, `throughput` or both, comma-separated | `stall,throughput` |
//! | `ISOCLR_BENCH_PRESET` | stall: model preset (`tiny`, `small`, `medium`, `large`) | `small` |
//! | `ISOCLR_BENCH_BATCH` | stall: groups per step (2N sequences) | 16 |
//! | `ISOCLR_BENCH_LEN` | stall: length of every transcript | 2048 |
//! | `ISOCLR_BENCH_STEPS` | stall: timed steps | 40 |
//! | `ISOCLR_BENCH_WARMUP` | stall: untimed steps first (no saves) | 2 |
//! | `ISOCLR_BENCH_EVERY` | stall: a save every this many steps | 5 |
//! | `ISOCLR_BENCH_STALL_STORES` | stall: `file`, `s3` or both | `file` |
//! | `ISOCLR_BENCH_THREADS` | libtorch CPU threads | available cores |
//! | `ISOCLR_BENCH_SIZES` | throughput: presets whose model + optimiser bytes are saved | `medium` |
//! | `ISOCLR_BENCH_SYNTH_MIB` | throughput: a synthetic payload of this many MiB (0: none) | 256 |
//! | `ISOCLR_BENCH_REPS` | throughput: timed repetitions (after one untimed) | 5 |
//! | `ISOCLR_BENCH_S3` | `0`: no S3 (SeaweedFS is not started) | `1` |
//! | `ISOCLR_BENCH_MULTIPART_MIB` | the checkpoint store's `multipart_threshold_mib` | 8 (the default) |
//!
//! Run: `cargo bench --bench checkpoint` (see docs/PERFORMANCE.md). MB = 10^6 bytes.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use isoclr::boundary::{Action, Boundary};
use isoclr::ckpt::{CheckpointConfig, CheckpointStore};
use isoclr::config::{Config, Preset, ScheduleKind};
use isoclr::data::batch::encode_for_embedding;
use isoclr::data::{MicroBatch, Pair, StepBatch, Transcript};
use isoclr::dist::SingleProcess;
use isoclr::train::checkpointing::{Checkpointing, train_state};
use isoclr::train::step::Trainer;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};
use tch::{Device, Kind};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, filter::LevelFilter};

const BUCKET: &str = "isoclr-bench";
const MB: f64 = 1e6;

// ----------------------------------------------------------------------------------------------- settings

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> Result<T> {
    match std::env::var(key) {
        Ok(v) => v.trim().parse().map_err(|_| anyhow!("{key}={v:?} is not valid")),
        Err(_) => Ok(default),
    }
}

fn env_list(key: &str, default: &str) -> Vec<String> {
    std::env::var(key)
        .unwrap_or_else(|_| default.to_owned())
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// A preset as the config files spell it.
fn preset(name: &str) -> Result<Preset> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).map_err(|_| anyhow!("unknown preset {name:?}"))
}

struct Settings {
    stall: bool,
    throughput: bool,
    preset: String,
    batch: usize,
    len: usize,
    steps: usize,
    warmup: usize,
    every: usize,
    stall_stores: Vec<String>,
    threads: i32,
    sizes: Vec<String>,
    synth_mib: usize,
    reps: usize,
    s3: bool,
}

impl Settings {
    fn from_env() -> Result<Self> {
        let parts = env_list("ISOCLR_BENCH_PARTS", "stall,throughput");
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        let settings = Self {
            stall: parts.iter().any(|p| p == "stall"),
            throughput: parts.iter().any(|p| p == "throughput"),
            preset: std::env::var("ISOCLR_BENCH_PRESET").unwrap_or_else(|_| "small".to_owned()),
            batch: env_or("ISOCLR_BENCH_BATCH", 16)?,
            len: env_or("ISOCLR_BENCH_LEN", 2048)?,
            steps: env_or("ISOCLR_BENCH_STEPS", 40)?,
            warmup: env_or("ISOCLR_BENCH_WARMUP", 2)?,
            every: env_or("ISOCLR_BENCH_EVERY", 5)?,
            stall_stores: env_list("ISOCLR_BENCH_STALL_STORES", "file"),
            threads: env_or("ISOCLR_BENCH_THREADS", cores)?,
            sizes: env_list("ISOCLR_BENCH_SIZES", "medium"),
            synth_mib: env_or("ISOCLR_BENCH_SYNTH_MIB", 256)?,
            reps: env_or("ISOCLR_BENCH_REPS", 5)?,
            s3: env_or("ISOCLR_BENCH_S3", 1)? != 0,
        };
        ensure!(settings.every >= 1 && settings.steps >= 1 && settings.reps >= 1 && settings.len >= 64);
        for store in &settings.stall_stores {
            ensure!(
                store == "file" || store == "s3",
                "ISOCLR_BENCH_STALL_STORES: unknown store {store:?}"
            );
        }
        Ok(settings)
    }

    fn needs_s3(&self) -> bool {
        self.s3 && (self.throughput || (self.stall && self.stall_stores.iter().any(|s| s == "s3")))
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => sorted[mid],
        _ => (sorted[mid - 1] + sorted[mid]) / 2.0,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----------------------------------------------------------------------------------- the save-event log

/// What the checkpoint module logged, with when this process saw it.
#[derive(Debug, Clone)]
struct SaveEvent {
    at: Instant,
    message: String,
    step: Option<u64>,
}

/// A tracing layer keeping the checkpoint module's save, skip and failure events.
#[derive(Clone, Default)]
struct SaveLog(Arc<Mutex<Vec<SaveEvent>>>);

impl SaveLog {
    fn take(&self) -> Vec<SaveEvent> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

#[derive(Default)]
struct Fields {
    message: String,
    step: Option<u64>,
}

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
    fn record_u64(&mut self, field: &tracing::field::Field, value: u64) {
        if field.name() == "step" {
            self.step = Some(value);
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for SaveLog {
    fn on_event(&self, event: &tracing::Event<'_>, _: LayerContext<'_, S>) {
        let at = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let m = fields.message.as_str();
        if m.starts_with("checkpoint saved")
            || m.starts_with("checkpoint skipped")
            || m.starts_with("CHECKPOINT SAVE FAILED")
        {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push(SaveEvent {
                at,
                message: fields.message,
                step: fields.step,
            });
        }
    }
}

// -------------------------------------------------------------------------------------------- SeaweedFS

/// SeaweedFS started by scripts/seaweedfs.sh (as tests/ckpt_s3.rs does it); dropping it stops the server.
struct Seaweed {
    script: PathBuf,
    dir: tempfile::TempDir,
    endpoint: String,
}

impl Seaweed {
    fn start(root: &Path) -> Result<Self> {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/seaweedfs.sh");
        let dir = tempfile::tempdir_in(root)?;
        let port = free_port_range()?;
        let output = Command::new("bash")
            .arg(&script)
            .args(["start", &dir.path().display().to_string(), &port.to_string()])
            .env("S3_BUCKET", BUCKET)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        let mut server = Self {
            script,
            dir,
            endpoint: String::new(),
        };
        ensure!(
            output.status.success(),
            "seaweedfs.sh start failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let endpoint = stdout
            .lines()
            .last()
            .filter(|l| l.starts_with("http://127.0.0.1:"))
            .ok_or_else(|| anyhow!("seaweedfs.sh printed no endpoint: {stdout:?}"))?;
        server.endpoint = endpoint.to_owned();
        Ok(server)
    }
}

impl Drop for Seaweed {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .args(["stop", &self.dir.path().display().to_string()])
            .status();
    }
}

/// A base port whose ten consecutive ports (the server takes PORT..PORT+9) are free on loopback.
fn free_port_range() -> Result<u16> {
    let mut base = 30_000 + (std::process::id() % 1_000) as u16 * 10;
    for _ in 0..1_000 {
        if (base..base + 10).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok()) {
            return Ok(base);
        }
        base = if base > 59_000 { 30_000 } else { base + 10 };
    }
    bail!("no range of free loopback ports")
}

// ------------------------------------------------------------------------------------------------ stores

/// Where checkpoints go: a local directory or the SeaweedFS bucket.
#[derive(Clone)]
enum Target {
    File(PathBuf),
    S3 { endpoint: String, prefix: String },
}

impl Target {
    fn label(&self) -> &'static str {
        match self {
            Target::File(_) => "file:// (local disk)",
            Target::S3 { .. } => "S3 (SeaweedFS, loopback)",
        }
    }

    /// The `[checkpoint]` settings a run would use: defaults, plus what an S3-compatible server needs.
    fn checkpoint_config(&self, sub: &str) -> CheckpointConfig {
        // To see what multipart uploads cost: a threshold above the file sizes turns them off.
        let multipart_threshold_mib = std::env::var("ISOCLR_BENCH_MULTIPART_MIB")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(CheckpointConfig::default().multipart_threshold_mib);
        let config = match self {
            Target::File(dir) => CheckpointConfig {
                url: Some(format!("file://{}", dir.join(sub).display())),
                ..CheckpointConfig::default()
            },
            Target::S3 { endpoint, prefix } => CheckpointConfig {
                url: Some(format!("s3://{BUCKET}/{prefix}/{sub}")),
                s3_endpoint: Some(endpoint.clone()),
                s3_region: Some("us-east-1".to_owned()),
                s3_allow_http: true,
                s3_path_style: true,
                ..CheckpointConfig::default()
            },
        };
        CheckpointConfig {
            multipart_threshold_mib,
            ..config
        }
    }

    /// A plain `object_store` for the same place, built with the settings core/src/ckpt/storage.rs uses (fsync on
    /// a local disk; the same timeouts, endpoint and request style on S3), and the key prefix under it.
    fn plain_store(&self, sub: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
        let defaults = CheckpointConfig::default().store_options();
        match self {
            Target::File(dir) => {
                let dir = dir.join(sub);
                std::fs::create_dir_all(&dir)?;
                let store = LocalFileSystem::new_with_prefix(&dir)?
                    .with_fsync(true)
                    .with_automatic_cleanup(true);
                Ok((Arc::new(store), String::new()))
            }
            Target::S3 { endpoint, prefix } => {
                let _ = rustls::crypto::ring::default_provider().install_default();
                let client = ClientOptions::new()
                    .with_timeout(defaults.call_timeout)
                    .with_connect_timeout(defaults.connect_timeout)
                    .with_allow_http(true);
                let store = AmazonS3Builder::from_env()
                    .with_url(format!("s3://{BUCKET}"))
                    .with_client_options(client)
                    .with_endpoint(endpoint)
                    .with_region("us-east-1")
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false)
                    .build()?;
                Ok((Arc::new(store), format!("{prefix}/{sub}")))
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------- stall

/// A random transcript: uniform bases, 1-8 exons, a CDS over most of it (as benches/train_throughput.rs).
fn transcript(rng: &mut ChaCha8Rng, len: usize) -> Result<Transcript> {
    let seq: Vec<u8> = (0..len).map(|_| b"ACGT"[rng.random_range(0..4)]).collect();
    let mut ends: Vec<u32> = (0..rng.random_range(0..8))
        .map(|_| rng.random_range(0..len as u32 - 1))
        .collect();
    ends.push(len as u32 - 1);
    ends.sort_unstable();
    ends.dedup();
    let start = rng.random_range(0..len as u32 / 4);
    let cds = Some((start, start + (len as u32 - start) / 3 * 3));
    Ok(Transcript::new("t", "g", 0, &seq, ends, cds)?)
}

/// A fixed step batch: pair i's views are rows i and N + i, each view one pass padded to its longest member.
fn make_batch(n: usize, len: usize) -> Result<StepBatch> {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut view = |first: usize| -> Result<MicroBatch> {
        let transcripts = (0..n).map(|_| transcript(&mut rng, len)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Transcript> = transcripts.iter().collect();
        let mut pass = encode_for_embedding(&refs, usize::MAX).remove(0);
        pass.rows.iter_mut().for_each(|r| *r += first);
        Ok(pass)
    };
    let micro = vec![view(0)?, view(n)?];
    let pairs = (0..n as u32)
        .map(|i| Pair {
            group: i,
            views: [2 * i, 2 * i + 1],
            group_size: 2,
        })
        .collect();
    Ok(StepBatch {
        step: 0,
        offset: 0,
        global_pairs: n,
        pairs,
        micro,
    })
}

/// One timed loop iteration: the step and, when due, the save call.
struct StepTime {
    completed: u64,
    start: Instant,
    end: Instant,
    save_call: Option<Duration>,
}

struct StallResult {
    store: &'static str,
    preset: String,
    bytes: usize,
    quiet: Vec<f64>,
    snapshot_steps: Vec<f64>,
    in_flight: Vec<f64>,
    save_calls: Vec<f64>,
    background: Vec<f64>,
    submitted: usize,
    skipped: usize,
    snapshot_alone: Vec<f64>,
    one_copy: Vec<f64>,
}

fn stall(settings: &Settings, target: &Target, log: &SaveLog) -> Result<StallResult> {
    let mut config = Config::default();
    config.model.preset = preset(&settings.preset)?;
    config.train.schedule = ScheduleKind::Constant;
    config.train.batch_size = settings.batch;
    config.train.steps = (settings.warmup + settings.steps) as u64;
    config.checkpoint = CheckpointConfig {
        every_steps: settings.every as u64,
        ..target.checkpoint_config("stall")
    };
    let mut batch = make_batch(settings.batch, settings.len)?;
    let mut trainer = Trainer::new(&config, Device::Cpu, 1_000);
    let checkpoints = Checkpointing::open(&config)?.ok_or_else(|| anyhow!("checkpoint.url is not set"))?;
    log.take();
    let mut times = Vec::new();
    let mut submits = Vec::new();
    for step in 0..settings.warmup + settings.steps {
        batch.step = step as u64;
        let start = Instant::now();
        let report = trainer.train_step(&batch, &mut SingleProcess)?;
        let completed = step as u64 + 1;
        // As the training loop: after the step, hand over a checkpoint when one is due (none in the warm-up).
        let boundary = Boundary {
            completed,
            end_step: config.train.steps + 1,
            checkpoint_every: Some(settings.every as u64),
            suspend_requested: false,
            checkpoint_requested: false,
        };
        let save_call = if step >= settings.warmup && boundary.decide().0 == Action::Checkpoint {
            let called = Instant::now();
            checkpoints.save(
                &trainer,
                train_state(&config, completed, 0, report.lr, 1, "bench"),
                false,
            )?;
            submits.push((completed, Instant::now()));
            Some(called.elapsed())
        } else {
            None
        };
        if step >= settings.warmup {
            times.push(StepTime {
                completed,
                start,
                end: Instant::now(),
                save_call,
            });
        }
        eprint!(".");
    }
    eprintln!();
    checkpoints.finish()?;
    let events = log.take();
    if let Some(failed) = events.iter().find(|e| e.message.starts_with("CHECKPOINT SAVE FAILED")) {
        bail!("a checkpoint save failed: {failed:?}");
    }
    let skipped: Vec<u64> = events
        .iter()
        .filter(|e| e.message.starts_with("checkpoint skipped"))
        .filter_map(|e| e.step)
        .collect();
    // Each submitted save is in flight from the end of its save call to its "checkpoint saved" event.
    let mut windows = Vec::new();
    for (step, submitted) in submits.iter().filter(|(s, _)| !skipped.contains(s)) {
        let done = events
            .iter()
            .find(|e| e.message.starts_with("checkpoint saved") && e.step == Some(*step))
            .ok_or_else(|| anyhow!("no \"checkpoint saved\" event for step {step}"))?;
        windows.push((*submitted, done.at));
    }
    let mut result = StallResult {
        store: target.label(),
        preset: settings.preset.clone(),
        bytes: 0,
        quiet: Vec::new(),
        snapshot_steps: Vec::new(),
        in_flight: Vec::new(),
        save_calls: Vec::new(),
        background: windows.iter().map(|(a, b)| ms(*b - *a)).collect(),
        submitted: windows.len(),
        skipped: skipped.len(),
        snapshot_alone: Vec::new(),
        one_copy: Vec::new(),
    };
    for t in &times {
        let step_ms = ms(t.end - t.start);
        let overlaps = windows.iter().any(|(from, to)| t.start < *to && *from < t.end);
        match t.save_call {
            // A skipped save took no snapshot: its step is one with a save in flight.
            Some(call) if !skipped.contains(&t.completed) => {
                result.snapshot_steps.push(step_ms);
                result.save_calls.push(ms(call));
            }
            _ if overlaps => result.in_flight.push(step_ms),
            _ => result.quiet.push(step_ms),
        }
    }
    // The snapshot alone, and one plain copy of the same tensors into one buffer (the least a snapshot
    // must do), each a few times on the trained state.
    let tensors: Vec<_> = trainer
        .model
        .named_tensors()
        .into_iter()
        .chain(trainer.optimizer.state())
        .map(|(_, t)| t)
        .collect();
    for _ in 0..5 {
        let started = Instant::now();
        let snapshot = trainer.snapshot()?;
        result.snapshot_alone.push(ms(started.elapsed()));
        result.bytes = snapshot.model.len() + snapshot.optimizer.len();
        drop(snapshot);
        let started = Instant::now();
        let total: usize = tensors.iter().map(|t| t.numel() * t.kind().elt_size_in_bytes()).sum();
        let mut buffer = vec![0u8; total];
        let mut at = 0;
        for t in &tensors {
            let t = t.detach().contiguous();
            let n = t.numel() * t.kind().elt_size_in_bytes();
            ensure!(t.kind() == Kind::Float || t.kind() == Kind::Int64);
            t.copy_data_u8(&mut buffer[at..at + n], t.numel());
            at += n;
        }
        result.one_copy.push(ms(started.elapsed()));
        std::hint::black_box(&buffer);
    }
    Ok(result)
}

// -------------------------------------------------------------------------------------------- throughput

/// One payload: the files of a checkpoint.
struct Payload {
    name: String,
    files: Vec<(String, Bytes)>,
}

impl Payload {
    fn bytes(&self) -> usize {
        self.files.iter().map(|(_, d)| d.len()).sum()
    }
}

fn preset_payload(name: &str) -> Result<Payload> {
    let mut config = Config::default();
    config.model.preset = preset(name)?;
    let trainer = Trainer::new(&config, Device::Cpu, 1_000);
    let snapshot = trainer.snapshot()?;
    let state = serde_json::to_vec_pretty(&train_state(&config, 1, 0, 0.0, 1, "bench"))?;
    Ok(Payload {
        name: format!("{name}: model + optimizer"),
        files: vec![
            ("model.safetensors".to_owned(), Bytes::from(snapshot.model)),
            ("optimizer.safetensors".to_owned(), Bytes::from(snapshot.optimizer)),
            ("state.json".to_owned(), Bytes::from(state)),
        ],
    })
}

/// A synthetic payload of `mib` MiB in the same shape (model a third, optimiser two thirds), of bytes that
/// do not compress.
fn synthetic_payload(mib: usize) -> Payload {
    let total = mib << 20;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut random = |len: usize| {
        let mut data = vec![0u8; len];
        rng.fill(&mut data[..]);
        Bytes::from(data)
    };
    Payload {
        name: format!("synthetic {mib} MiB"),
        files: vec![
            ("model.safetensors".to_owned(), random(total / 3)),
            ("optimizer.safetensors".to_owned(), random(total - total / 3)),
            ("state.json".to_owned(), Bytes::from_static(b"{}")),
        ],
    }
}

struct ThroughputResult {
    store: &'static str,
    payload: String,
    bytes: usize,
    save: Vec<f64>,
    put: Vec<f64>,
    load: Vec<f64>,
    get: Vec<f64>,
}

fn throughput(target: &Target, payload: &Payload, sub: &str, reps: usize) -> Result<ThroughputResult> {
    let settings = target.checkpoint_config(&format!("{sub}/ckpt"));
    let store = CheckpointStore::open(settings.url.as_deref().unwrap_or_default(), settings.store_options())?;
    let (plain, prefix) = target.plain_store(&format!("{sub}/plain"))?;
    // The same size of I/O runtime as the checkpoint store's own (two workers).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let key = |name: &str| {
        if prefix.is_empty() {
            ObjectPath::from(name)
        } else {
            ObjectPath::from(format!("{prefix}/{name}"))
        }
    };
    let mut result = ThroughputResult {
        store: target.label(),
        payload: payload.name.clone(),
        bytes: payload.bytes(),
        save: Vec::new(),
        put: Vec::new(),
        load: Vec::new(),
        get: Vec::new(),
    };
    for rep in 0..=reps {
        let step = rep as u64 + 1;
        let time_save = || -> Result<(f64, f64)> {
            let started = Instant::now();
            store.save(step, payload.files.clone())?;
            let save = ms(started.elapsed());
            let started = Instant::now();
            let loaded = store.load(step, true)?;
            let load = ms(started.elapsed());
            ensure!(loaded.files.len() == payload.files.len());
            Ok((save, load))
        };
        let time_plain = || -> Result<(f64, f64)> {
            let started = Instant::now();
            for (name, data) in &payload.files {
                runtime.block_on(plain.put(&key(name), PutPayload::from(data.clone())))?;
            }
            let put = ms(started.elapsed());
            let started = Instant::now();
            let mut read = 0;
            for (name, _) in &payload.files {
                read += runtime
                    .block_on(async { plain.get(&key(name)).await?.bytes().await })?
                    .len();
            }
            let get = ms(started.elapsed());
            ensure!(read == payload.bytes());
            Ok((put, get))
        };
        // Taking turns in both orders, so a disturbance or a warm cache favours neither side.
        let ((save, load), (put, get)) = if rep % 2 == 0 {
            let c = time_save()?;
            (c, time_plain()?)
        } else {
            let p = time_plain()?;
            (time_save()?, p)
        };
        if rep > 0 {
            result.save.push(save);
            result.load.push(load);
            result.put.push(put);
            result.get.push(get);
        }
        eprint!(".");
    }
    eprintln!();
    Ok(result)
}

/// SHA-256 of the payload in MB/s, single-threaded: what the manifest costs per byte on save and on a
/// verified load.
fn sha256_rate(payload: &Payload) -> f64 {
    let started = Instant::now();
    for (_, data) in &payload.files {
        std::hint::black_box(Sha256::digest(data));
    }
    payload.bytes() as f64 / MB / started.elapsed().as_secs_f64()
}

// -------------------------------------------------------------------------------------------------- main

fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    if settings.needs_s3() {
        // The local server's identity, made up for this run. The S3 store takes credentials only from the
        // environment (by design), so they go there.
        // SAFETY: nothing else runs yet: no thread has been started in this process.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", format!("bench{:08x}", rand::random::<u32>()));
            std::env::set_var("AWS_SECRET_ACCESS_KEY", format!("{:032x}", rand::random::<u128>()));
            std::env::remove_var("AWS_SESSION_TOKEN");
        }
    }
    let log = SaveLog::default();
    tracing_subscriber::registry()
        .with(log.clone())
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_filter(LevelFilter::ERROR),
        )
        .init();
    tch::set_num_threads(settings.threads);

    // On the same disk as the build (target/tmp), not a RAM-backed /tmp.
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let seaweed = if settings.needs_s3() {
        let server = Seaweed::start(root.path())?;
        eprintln!("SeaweedFS S3 at {}", server.endpoint);
        // The bucket is created during start-up: wait until a listing answers.
        let probe = Target::S3 {
            endpoint: server.endpoint.clone(),
            prefix: "probe".to_owned(),
        }
        .checkpoint_config("probe");
        let probe = CheckpointStore::open(probe.url.as_deref().unwrap_or_default(), probe.store_options())?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Err(e) = probe.list_objects() {
            ensure!(Instant::now() < deadline, "the bucket never became usable: {e}");
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(server)
    } else {
        None
    };
    let target = |kind: &str, prefix: &str| -> Result<Target> {
        match (kind, &seaweed) {
            ("file", _) => Ok(Target::File(root.path().join(prefix))),
            ("s3", Some(server)) => Ok(Target::S3 {
                endpoint: server.endpoint.clone(),
                prefix: prefix.to_owned(),
            }),
            _ => bail!("S3 is off (ISOCLR_BENCH_S3=0)"),
        }
    };
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = String::new();
    writeln!(
        out,
        "\nthreads {}, nproc {}, load average at start {}",
        settings.threads,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )?;

    if settings.stall {
        writeln!(
            out,
            "\n### Stall: {} timed steps ({} pairs × {} nt, preset {}), a save every {} steps\n",
            settings.steps, settings.batch, settings.len, settings.preset, settings.every
        )?;
        writeln!(
            out,
            "| store | checkpoint | steps with no save: n, median | snapshot step: n, median, ratio | steps with a save in flight: n, median, ratio | save call on the training thread | `Trainer::snapshot` alone | one plain copy of the tensors | background save | saves done / skipped | extra time per save |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
        for kind in &settings.stall_stores {
            if kind == "s3" && seaweed.is_none() {
                continue;
            }
            eprintln!("stall on {kind}");
            let r = stall(&settings, &target(kind, "stall")?, &log)?;
            let quiet = median(&r.quiet);
            let extra: f64 = r
                .snapshot_steps
                .iter()
                .chain(&r.in_flight)
                .map(|t| t - quiet)
                .sum::<f64>()
                / r.submitted.max(1) as f64;
            writeln!(
                out,
                "| {} | {} {:.1} MB | {}, {:.0} ms | {}, {:.0} ms, {:.2} | {}, {:.0} ms, {:.2} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms | {} / {} | {:.0} ms |",
                r.store,
                r.preset,
                r.bytes as f64 / MB,
                r.quiet.len(),
                quiet,
                r.snapshot_steps.len(),
                median(&r.snapshot_steps),
                median(&r.snapshot_steps) / quiet,
                r.in_flight.len(),
                median(&r.in_flight),
                median(&r.in_flight) / quiet,
                median(&r.save_calls),
                median(&r.snapshot_alone),
                median(&r.one_copy),
                median(&r.background),
                r.submitted,
                r.skipped,
                extra,
            )?;
        }
    }

    if settings.throughput {
        let mut payloads = Vec::new();
        for name in &settings.sizes {
            payloads.push(preset_payload(name)?);
        }
        if settings.synth_mib > 0 {
            payloads.push(synthetic_payload(settings.synth_mib));
        }
        let mut stores = vec!["file"];
        if seaweed.is_some() {
            stores.push("s3");
        }
        writeln!(
            out,
            "\n### Throughput: median of {} repetitions (after 1 untimed), MB/s (10^6 bytes)\n",
            settings.reps
        )?;
        writeln!(
            out,
            "| store | payload | size | `CheckpointStore::save` | plain put | ratio | plain put + SHA-256 | `CheckpointStore::load` (verify) | plain get | ratio | plain get + SHA-256 |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|")?;
        let mut sha = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            let sha_rate = sha256_rate(payload);
            sha.push(format!("{}: {sha_rate:.0} MB/s", payload.name));
            for kind in &stores {
                eprintln!("throughput on {kind}: {}", payload.name);
                let r = throughput(&target(kind, "throughput")?, payload, &format!("p{i}"), settings.reps)?;
                let rate = |t: &[f64]| r.bytes as f64 / MB / (median(t) / 1e3);
                // What the plain copy would take with the manifest's hashing done one after the other, as
                // the checkpoint store does it (all hashes before the first upload; each after its download).
                let with_sha = |plain: f64| 1.0 / (1.0 / plain + 1.0 / sha_rate);
                writeln!(
                    out,
                    "| {} | {} | {:.1} MB | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.0} | {:.2} | {:.0} |",
                    r.store,
                    r.payload,
                    r.bytes as f64 / MB,
                    rate(&r.save),
                    rate(&r.put),
                    rate(&r.save) / rate(&r.put),
                    with_sha(rate(&r.put)),
                    rate(&r.load),
                    rate(&r.get),
                    rate(&r.load) / rate(&r.get),
                    with_sha(rate(&r.get)),
                )?;
            }
        }
        writeln!(out, "\nSHA-256 alone, one thread: {}", sha.join("; "))?;
    }
    let load_average = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    writeln!(
        out,
        "load average at end {}",
        load_average.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    )?;
    println!("{out}");
    drop(seaweed);
    Ok(())
}
