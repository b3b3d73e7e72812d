//! Training throughput of isoclr against PyTorch (`benches/reference.py`) on the same batch.
//!
//! One invocation builds a fixed contrastive batch of random transcripts, trains isoclr's
//! `Trainer::train_step` on it and one or more PyTorch peers (each kept running as `reference.py bench
//! --serve`) on exactly the same tensors (the batch's encoder passes are exported as they are) from the same
//! starting weights, with the same number of threads, and prints a table with a row per peer. The peers
//! (`ISOCLR_BENCH_PEERS`, comma-separated):
//! - `masked`: the op-for-op reference of isoclr's model (its masked norms and pools as elementwise
//!   PyTorch ops), the numerical reference;
//! - `plain`: the architecture as users run it in PyTorch: `nn.BatchNorm1d` over every position, plain
//!   pools, no masks (see reference.py);
//! - `compiled`, `compiled:MODE`: `plain` through `torch.compile` (mode `default`, or MODE), compiled during
//!   the warm-up steps (give enough: `ISOCLR_BENCH_WARMUP`).
//!
//! By default the two sides take turns, one step each, so load from other work on a shared machine falls
//! on both alike, and the figures are medians (robust to the odd disturbed step); the ratio of each
//! isoclr step to the PyTorch step next to it is reported too. Each side then also starts its step right
//! after the other's, whose libgomp worker threads still spin for a few milliseconds: a small cost both
//! sides pay equally. `ISOCLR_BENCH_ALTERNATE=0` runs all isoclr steps first, then starts PyTorch (best on
//! a quiet machine). Settings (environment):
//!
//! | variable | meaning | default |
//! |---|---|---|
//! | `ISOCLR_BENCH_DEVICE` | `cpu`, or `cuda`: both sides on GPU 0 in bf16 autocast (below) | `cpu` |
//! | `ISOCLR_BENCH_PRESET` | `tiny`, `small`, `medium` or `large` | `small` |
//! | `ISOCLR_BENCH_NORM` | `batch`, `group` or `layer` | `batch` |
//! | `ISOCLR_BENCH_BATCH` | groups per step N (the step encodes 2N sequences) | 16 |
//! | `ISOCLR_BENCH_LEN` | every transcript this long, or `mix` / `mix:MAX` for a realistic spread (below) | 2048 |
//! | `ISOCLR_BENCH_STEPS` | timed steps per side | 10 |
//! | `ISOCLR_BENCH_WARMUP` | untimed steps first | 1 (CPU), 3 (CUDA) |
//! | `ISOCLR_BENCH_THREADS` | CPU threads of both libtorch and torch | available cores |
//! | `ISOCLR_BENCH_PROFILE` | `1`: also time both sides' forward, backward and optimiser phases | off |
//! | `ISOCLR_BENCH_ALTERNATE` | `0`: all isoclr steps first, then PyTorch, instead of taking turns | `1` (CPU), `0` (CUDA) |
//! | `ISOCLR_BENCH_JSON` | append the results as one JSON line to this file | none |
//! | `ISOCLR_BENCH_POSITIONS` | length-aware passes: the 2N sequences sorted by length and cut into passes of at most this many positions, as `train.positions_per_pass` (both sides run the same passes) | one pass per view |
//! | `ISOCLR_BENCH_PACKING` | `1` (with `ISOCLR_BENCH_POSITIONS`): passes packed several sequences to a line, as `train.packing` cuts them (both sides run the same passes) | off |
//! | `ISOCLR_BENCH_GRADIENT_CACHE` | `1`: isoclr trains with `train.gradient_cache` (the reference does not) | off |
//! | `ISOCLR_CUDA_BATCH_NORM` | `kernels`: isoclr's batch norm on CUDA by ATen's batch-norm kernels, as in training (`device::BatchNormKernels`) | the composite |
//! | `ISOCLR_BENCH_PEERS` | the PyTorch peers, e.g. `plain,compiled,masked` (above) | `masked` |
//! | `ISOCLR_BENCH_PEER_PADDING` | `passes`: the peers run isoclr's passes; `fixed`: they run the same sequences as users do, one pass per view with every sequence padded to the length cap (`ISOCLR_BENCH_LEN`, or MAX of `mix:MAX`), while isoclr runs its own passes | `passes` |
//! | `ISOCLR_BENCH_REFERENCE` | path of `reference.py` (for a bench binary run outside its checkout) | `benches/reference.py` |
//! | `ISOCLR_PYTHON` | the interpreter with torch | `.venv/bin/python` |
//!
//! `mix:MAX` draws lengths log-normally like human mRNAs (median 2,926 nt, σ = 0.6 in log space, for
//! MAX = 12,288; scaled with MAX), clipped to [64, MAX]. Each view is one encoder pass padded to its longest
//! member, as isoclr pads a micro-batch; the reference gets those same padded tensors.
//!
//! On CUDA (`ISOCLR_BENCH_DEVICE=cuda`) isoclr runs `train_step` as `isoclr train` does on a GPU (bf16
//! autocast over encoder and head) and the reference runs `--device cuda` with the same autocast. Each timed
//! step starts and ends with the device idle (`tch::Cuda::synchronize` / `torch.cuda.synchronize`), and each
//! side reports the peak bytes allocated by libtorch's caching allocator during its steps (the statistic of
//! `torch.cuda.max_memory_allocated`, reset before every step). The first CUDA steps take seconds (lazy
//! initialisation, cuDNN heuristics), hence 3 warm-up steps. The sides run one after the other by default:
//! a dedicated GPU has no background load to share out, and isoclr's cached memory is given back before the
//! reference starts, so neither side's peak is limited by the other's cache.
//!
//! Run: `cargo bench --bench train_throughput` (see docs/PERFORMANCE.md).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use isoclr::config::{Config, ModelConfig, Norm, Preset, ScheduleKind, TrainConfig};
use isoclr::data::batch::{PassLayout, ViewSpec, encode_for_embedding, encode_views};
use isoclr::data::packing::Placement;
use isoclr::data::{Pair, StepBatch, TRACK_UNIT, TRACKS, Transcript};
use isoclr::dist::SingleProcess;
use isoclr::model::{Views, contrastive_loss};
use isoclr::train::step::Trainer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

mod common;
use common::setting;

/// Benchmark settings read from the environment.
struct Settings {
    device: Device,
    preset: Preset,
    norm: Norm,
    batch: usize,
    lengths: LengthSpec,
    steps: usize,
    warmup: usize,
    threads: i32,
    profile: bool,
    alternate: bool,
    json: Option<PathBuf>,
    /// Length-aware passes of at most this many positions; `None`: one pass per view.
    positions: Option<usize>,
    /// Packed passes (with `positions`), as `train.packing`.
    packing: bool,
    /// isoclr side with `train.gradient_cache`.
    gradient_cache: bool,
    /// The PyTorch sides.
    peers: Vec<Peer>,
}

impl Settings {
    /// Every sequence's padded length for peers that pad to a fixed length.
    fn cap(&self) -> usize {
        match self.lengths {
            LengthSpec::Fixed(l) => l.max(64),
            LengthSpec::Mix(max) => max,
        }
    }
}

/// One PyTorch side of the comparison.
#[derive(Clone, Debug)]
struct Peer {
    /// The architecture as users write it (`--peer plain`), not the masked reference.
    plain: bool,
    /// `torch.compile` mode, if compiled.
    compile: Option<String>,
    /// Every sequence padded to this length, one pass per view, instead of isoclr's passes.
    padded_to: Option<usize>,
}

impl Peer {
    fn parse(text: &str) -> Self {
        let (plain, compile) = match text.trim() {
            "masked" => (false, None),
            "plain" => (true, None),
            "compiled" => (true, Some("default".to_owned())),
            other => match other.strip_prefix("compiled:") {
                Some(mode) => (true, Some(mode.to_owned())),
                None => panic!("ISOCLR_BENCH_PEERS: {other:?} is not masked, plain, compiled or compiled:MODE"),
            },
        };
        Self {
            plain,
            compile,
            padded_to: None,
        }
    }

    fn name(&self) -> String {
        let model = match (&self.compile, self.plain) {
            (Some(mode), _) => format!("PyTorch compiled ({mode})"),
            (None, true) => "PyTorch eager, nn.BatchNorm1d".to_owned(),
            (None, false) => "PyTorch eager, masked reference".to_owned(),
        };
        match self.padded_to {
            Some(length) => format!("{model}, all padded to {length}"),
            None => model,
        }
    }
}

#[derive(Clone, Copy)]
enum LengthSpec {
    Fixed(usize),
    Mix(usize),
}

impl std::fmt::Display for LengthSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LengthSpec::Fixed(l) => write!(f, "{l}"),
            LengthSpec::Mix(max) => write!(f, "mix≤{max}"),
        }
    }
}

/// Parses a lower-case enum value with serde, as the config files spell it.
fn env_enum<T: serde::de::DeserializeOwned>(key: &str, default: &str) -> T {
    let raw = std::env::var(key).unwrap_or_else(|_| default.to_owned());
    serde_json::from_value(serde_json::Value::String(raw.clone()))
        .unwrap_or_else(|_| panic!("{key}={raw:?} is not valid"))
}

impl Settings {
    fn from_env() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i32;
        let lengths = match std::env::var("ISOCLR_BENCH_LEN").as_deref() {
            Ok("mix") => LengthSpec::Mix(12_288),
            Ok(v) if v.starts_with("mix:") => LengthSpec::Mix(v[4..].parse().expect("ISOCLR_BENCH_LEN=mix:MAX")),
            _ => LengthSpec::Fixed(setting("ISOCLR_BENCH_LEN", 2048)),
        };
        let device = common::device();
        let cuda = device.is_cuda();
        let fixed_padding = match std::env::var("ISOCLR_BENCH_PEER_PADDING").as_deref() {
            Err(_) | Ok("passes") => false,
            Ok("fixed") => true,
            Ok(other) => panic!("ISOCLR_BENCH_PEER_PADDING={other:?} is not valid (passes or fixed)"),
        };
        let mut settings = Self {
            device,
            preset: env_enum("ISOCLR_BENCH_PRESET", "small"),
            norm: env_enum("ISOCLR_BENCH_NORM", "batch"),
            batch: setting("ISOCLR_BENCH_BATCH", 16),
            lengths,
            steps: setting("ISOCLR_BENCH_STEPS", 10).max(1),
            warmup: setting("ISOCLR_BENCH_WARMUP", if cuda { 3 } else { 1 }),
            threads: setting("ISOCLR_BENCH_THREADS", cores),
            profile: setting("ISOCLR_BENCH_PROFILE", 0) != 0,
            alternate: setting("ISOCLR_BENCH_ALTERNATE", if cuda { 0 } else { 1 }) != 0,
            json: std::env::var_os("ISOCLR_BENCH_JSON").map(PathBuf::from),
            positions: std::env::var("ISOCLR_BENCH_POSITIONS")
                .ok()
                .map(|_| setting("ISOCLR_BENCH_POSITIONS", 0)),
            packing: setting("ISOCLR_BENCH_PACKING", 0) != 0,
            gradient_cache: setting("ISOCLR_BENCH_GRADIENT_CACHE", 0) != 0,
            peers: std::env::var("ISOCLR_BENCH_PEERS")
                .unwrap_or_else(|_| "masked".to_owned())
                .split(',')
                .map(Peer::parse)
                .collect(),
        };
        if fixed_padding {
            let cap = settings.cap();
            settings.peers.iter_mut().for_each(|peer| peer.padded_to = Some(cap));
        }
        settings
    }
}

/// A random transcript: uniform bases, 1-8 exons, a CDS over most of it.
fn transcript(rng: &mut ChaCha8Rng, len: usize) -> Transcript {
    let seq: Vec<u8> = (0..len).map(|_| b"ACGT"[rng.random_range(0..4)]).collect();
    let mut ends: Vec<u32> = (0..rng.random_range(0..8))
        .map(|_| rng.random_range(0..len as u32 - 1))
        .collect();
    ends.push(len as u32 - 1);
    ends.sort_unstable();
    ends.dedup();
    let start = rng.random_range(0..len as u32 / 4);
    Transcript::new(
        "t",
        "g",
        0,
        &seq,
        ends,
        Some((start, start + (len as u32 - start) / 3 * 3)),
    )
    .unwrap()
}

fn draw_length(rng: &mut ChaCha8Rng, spec: LengthSpec) -> usize {
    match spec {
        LengthSpec::Fixed(l) => l.max(64),
        LengthSpec::Mix(max) => {
            // Box-Muller: one standard normal from two uniforms.
            let (u, v): (f64, f64) = (rng.random_range(f64::EPSILON..1.0), rng.random());
            let normal = (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos();
            let median = 2926.0 * max as f64 / 12_288.0;
            ((median * (0.6 * normal).exp()) as usize).clamp(64, max)
        }
    }
}

/// The step's 2N transcripts: rows 0..N are view 1 of the N pairs, N..2N view 2.
fn make_transcripts(settings: &Settings) -> Vec<Transcript> {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    (0..2 * settings.batch)
        .map(|_| {
            let len = draw_length(&mut rng, settings.lengths);
            transcript(&mut rng, len)
        })
        .collect()
}

/// The step's batch: pair i's views are rows i and N + i, cut into passes of at most `positions` positions
/// (packed if `packing`) as isoclr cuts them, or without `positions` one pass per view, sorted and padded to
/// its longest member.
fn make_batch(transcripts: &[Transcript], positions: Option<usize>, packing: bool, model: &ModelConfig) -> StepBatch {
    let n = transcripts.len() / 2;
    let refs: Vec<&Transcript> = transcripts.iter().collect();
    let micro = match positions {
        // As `isoclr train` cuts a step with `train.packing`: several sequences to a line.
        Some(budget) if packing => {
            let views: Vec<ViewSpec> = transcripts.iter().map(ViewSpec::plain).collect();
            let layout = PassLayout {
                position_budget: budget,
                packing_gap: Some(model.shape().packing_gap()),
            };
            encode_views(&views, layout)
        }
        // As `isoclr train` cuts a step: the 2n sequences sorted by length into passes within the budget.
        Some(budget) => encode_for_embedding(&refs, budget),
        // As the plain PyTorch loop: one pass per view, padded to its longest member.
        None => [0, n]
            .into_iter()
            .map(|first| {
                let mut pass = encode_for_embedding(&refs[first..first + n], usize::MAX).remove(0);
                pass.rows.iter_mut().for_each(|r| *r += first);
                pass
            })
            .collect(),
    };
    let pairs = (0..n as u32)
        .map(|i| Pair {
            group: i,
            views: [2 * i, 2 * i + 1],
            group_size: 2,
        })
        .collect();
    StepBatch {
        step: 0,
        offset: 0,
        global_pairs: n,
        pairs,
        micro,
    }
}

/// The reference's JSON config (see the header of benches/reference.py).
fn reference_config(model: &ModelConfig, train: &TrainConfig) -> String {
    let shape = model.shape();
    serde_json::json!({
        "filters": shape.filters, "blocks": shape.blocks, "dilations": shape.dilations, "kernel": shape.kernel,
        "norm": model.norm, "norm_groups": model.norm_groups, "dropout": model.dropout,
        "head_hidden": model.head_hidden, "projection_dim": model.projection_dim, "tracks": model.tracks,
        "lr": train.lr, "weight_decay": train.weight_decay, "beta1": train.beta1, "beta2": train.beta2,
        "eps": train.eps, "clip_norm": train.clip_norm, "temperature": train.temperature,
    })
    .to_string()
}

/// Writes the passes for the peers; `padded_to`: each pass's inputs padded on the right with zeros to
/// this length.
fn export_batch(batch: &StepBatch, padded_to: Option<usize>, path: &std::path::Path) {
    let mut tensors = Vec::new();
    for (k, m) in batch.micro.iter().enumerate() {
        let shape = [m.lines as i64, TRACKS as i64, m.padded_len as i64];
        let mut x = Tensor::from_slice(&m.tracks).view(shape).to_kind(tch::Kind::Float) * f64::from(TRACK_UNIT);
        if let Some(length) = padded_to {
            let wide = Tensor::zeros([shape[0], shape[1], length as i64], (tch::Kind::Float, Device::Cpu));
            wide.narrow(2, 0, shape[2]).copy_(&x);
            x = wide;
        }
        let lengths = Tensor::from_slice(&m.lengths.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
        let rows = Tensor::from_slice(&m.rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
        tensors.extend([
            (format!("x{}", k + 1), x),
            (format!("len{}", k + 1), lengths),
            (format!("rows{}", k + 1), rows),
        ]);
        if m.is_packed() {
            let column = |f: fn(&Placement) -> u32| {
                Tensor::from_slice(&m.placements.iter().map(|p| i64::from(f(p))).collect::<Vec<_>>())
            };
            tensors.extend([
                (format!("line{}", k + 1), column(|p| p.line)),
                (format!("offset{}", k + 1), column(|p| p.offset)),
            ]);
        }
    }
    Tensor::write_safetensors(&tensors, path).expect("writing the batch");
}

/// Step times of one side, in milliseconds, its losses and (on CUDA) peak memory.
#[derive(Default)]
struct Side {
    step_ms: Vec<f64>,
    losses: Vec<f64>,
    /// Peak bytes allocated during each timed step (CUDA only).
    peak_bytes: Vec<u64>,
    /// Summed per phase: encoder forward, head + loss, backward, clip + AdamW.
    phases_ms: [f64; 4],
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

impl Side {
    fn median_ms(&self) -> f64 {
        median(&self.step_ms)
    }

    fn min_ms(&self) -> f64 {
        self.step_ms.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn mean_ms(&self) -> f64 {
        self.step_ms.iter().sum::<f64>() / self.step_ms.len().max(1) as f64
    }

    /// The largest per-step peak, `None` when none was measured (CPU).
    fn peak_bytes(&self) -> Option<u64> {
        self.peak_bytes.iter().copied().max()
    }
}

fn gib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "n/a".to_owned(),
        |b| format!("{:.2}", b as f64 / (1u64 << 30) as f64),
    )
}

/// Waits until every kernel queued on `device` has run (a no-op on CPU), so a clock read after it counts them.
fn synchronize(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

const PHASES: [&str; 4] = ["encoder forward", "head + loss", "backward", "clip + AdamW"];

/// isoclr's step cut into phases with the crate's public pieces: encoder, head and loss, one backward, clip
/// and AdamW. `train_step` does the same computation but back-propagates in two stages (loss → gathered
/// projections, then projections → parameters, so ranks can sum dL/dZ in between) and copies the
/// projections for the gather (the identity in one process); that overhead is the difference between its
/// step time and the sum of these phases.
fn isoclr_step_in_phases(trainer: &mut Trainer, batch: &StepBatch, config: &Config, phases: &mut [f64; 4]) -> f64 {
    let n = batch.pairs.len() as i64;
    let device = trainer.model.vars.device();
    synchronize(device);
    let mut clock = Instant::now();
    let mut lap = |i: usize| {
        synchronize(device);
        phases[i] += clock.elapsed().as_secs_f64() * 1e3;
        clock = Instant::now();
    };
    trainer.optimizer.zero_grad();
    // As in `train_step`: encoder, head and normalisation in bf16 autocast on CUDA, the loss in f32.
    let views = isoclr::device::autocast_bf16(device.is_cuda(), || {
        let embeddings = trainer.model.embed_micro_batches(&batch.micro, true);
        lap(0);
        let projections = trainer.model.head.forward(&embeddings, true);
        Views::normalised(&projections.narrow(0, 0, n), &projections.narrow(0, n, n))
    });
    let views = Views {
        z1: views.z1.to_kind(tch::Kind::Float),
        z2: views.z2.to_kind(tch::Kind::Float),
    };
    let loss = contrastive_loss(config.train.loss, &views, 0, n, config.train.temperature, None);
    lap(1);
    loss.backward();
    lap(2);
    let _ = trainer
        .optimizer
        .clip_gradients(config.train.clip, config.train.clip_norm);
    trainer.optimizer.step(config.train.lr);
    lap(3);
    loss.double_value(&[])
}

/// One timed isoclr step (`Trainer::train_step` in one process, as `isoclr train` runs it; it reads the loss
/// back, so all work is done when it returns; on CUDA the device is also synchronised before and after, and
/// the step's peak memory recorded); warm-up steps count for the loss only.
fn time_isoclr(trainer: &mut Trainer, batch: &StepBatch, step: usize, settings: &Settings, side: &mut Side) {
    let step_batch = StepBatch {
        step: step as u64,
        ..batch.clone()
    };
    let cuda = settings.device.is_cuda();
    synchronize(settings.device);
    if cuda {
        isoclr::device::reset_cuda_peak_memory(0);
    }
    let started = Instant::now();
    let report = trainer
        .train_step(&step_batch, &mut SingleProcess)
        .expect("one-process step");
    synchronize(settings.device);
    let ms = started.elapsed().as_secs_f64() * 1e3;
    side.losses.push(report.loss);
    if step >= settings.warmup {
        side.step_ms.push(ms);
        if let Some(peak) = isoclr::device::cuda_peak_allocated_bytes(0).filter(|_| cuda) {
            side.peak_bytes.push(peak);
        }
    }
}

/// One timed PyTorch step (timed inside the reference, so the pipe is not counted).
fn time_pytorch(reference: &mut Reference, step: usize, settings: &Settings, side: &mut Side) {
    let answer = reference.step(false);
    side.losses.push(answer.loss);
    if step >= settings.warmup {
        side.step_ms.push(answer.step_ms);
        side.peak_bytes.extend(answer.peak_bytes);
    }
}

fn pytorch_phases(reference: &mut Reference, side: &mut Side) {
    let answer = reference.step(true);
    side.phases_ms
        .iter_mut()
        .zip(answer.phases_ms)
        .for_each(|(sum, p)| *sum += p);
}

fn python() -> PathBuf {
    std::env::var_os("ISOCLR_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

fn reference_script() -> PathBuf {
    std::env::var_os("ISOCLR_BENCH_REFERENCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/reference.py"))
}

/// One step's answer from the reference.
struct Answer {
    step_ms: f64,
    loss: f64,
    phases_ms: [f64; 4],
    peak_bytes: Option<u64>,
}

/// `reference.py bench --serve`: the PyTorch side, kept alive so its steps can alternate with isoclr's.
struct Reference {
    child: Child,
    requests: ChildStdin,
    answers: BufReader<ChildStdout>,
    torch_version: String,
}

impl Reference {
    fn start(dir: &std::path::Path, config_json: &str, threads: i32, device: Device, peer: &Peer) -> Self {
        let script = reference_script();
        let python = python();
        let mut command = Command::new(&python);
        command.arg(&script).arg("bench").arg("--serve");
        command.args(["--peer", if peer.plain { "plain" } else { "masked" }]);
        if let Some(mode) = &peer.compile {
            command.args(["--compile", mode]);
        }
        let mut child = command
            .args(["--inputs", dir.join("batch.safetensors").to_str().unwrap()])
            .args(["--weights", dir.join("weights.safetensors").to_str().unwrap()])
            .args(["--config-json", config_json])
            .args(["--threads", &threads.to_string()])
            .args(["--device", if device.is_cuda() { "cuda" } else { "cpu" }])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): run scripts/setup.sh or set ISOCLR_PYTHON",
                    python.display()
                )
            });
        let requests = child.stdin.take().expect("piped stdin");
        let answers = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            requests,
            answers,
            torch_version: String::new(),
        }
    }

    /// One PyTorch training step; `profile` also has the reference synchronise the GPU between phases.
    fn step(&mut self, profile: bool) -> Answer {
        writeln!(self.requests, "{}", if profile { "profile" } else { "step" })
            .and_then(|_| self.requests.flush())
            .expect("reference.py stopped (see its error above)");
        let mut line = String::new();
        self.answers.read_line(&mut line).expect("reading reference.py");
        let answer: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("reference.py did not answer with JSON (see its error above): {line:?}"));
        let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        self.torch_version = answer["torch"].as_str().unwrap_or("?").to_owned();
        let p = &answer["phases_ms"];
        let phases = [
            number(&p["forward"]),
            number(&p["head_loss"]),
            number(&p["backward"]),
            number(&p["optimizer"]),
        ];
        Answer {
            step_ms: number(&answer["step_ms"]),
            loss: number(&answer["loss"]),
            phases_ms: phases,
            peak_bytes: answer["peak_bytes"].as_u64(),
        }
    }

    fn finish(self) -> String {
        let Reference {
            mut child,
            requests,
            torch_version,
            ..
        } = self;
        drop(requests); // end of input: the server returns
        let status = child.wait().expect("waiting for reference.py");
        assert!(status.success(), "reference.py exited with {status}");
        torch_version
    }
}

fn main() {
    let settings = Settings::from_env();
    tch::set_num_threads(settings.threads);
    let model = ModelConfig {
        preset: settings.preset,
        norm: settings.norm,
        ..Default::default()
    };
    // Constant learning rate so both sides take identical steps (the schedule is not what is measured).
    let train = TrainConfig {
        schedule: ScheduleKind::Constant,
        gradient_cache: settings.gradient_cache,
        ..Default::default()
    };
    let config = Config {
        model,
        train,
        ..Default::default()
    };
    assert!(
        !settings.packing || settings.positions.is_some(),
        "ISOCLR_BENCH_PACKING=1 needs ISOCLR_BENCH_POSITIONS"
    );
    assert!(
        !settings.packing
            || settings
                .peers
                .iter()
                .all(|peer| !peer.plain || peer.padded_to.is_some()),
        "ISOCLR_BENCH_PACKING=1: the plain and compiled peers do not run packed passes (their users pad); \
         set ISOCLR_BENCH_PEER_PADDING=fixed or ISOCLR_BENCH_PEERS=masked"
    );
    let transcripts = make_transcripts(&settings);
    let batch = make_batch(&transcripts, settings.positions, settings.packing, &config.model);
    let padded: Vec<String> = batch.micro.iter().map(|m| m.padded_len.to_string()).collect();
    eprintln!(
        "batch: {} pairs, {} passes{} padded to {} ({:.0} % padding), {} threads, {:?}{}",
        settings.batch,
        batch.micro.len(),
        if settings.packing {
            let lines: Vec<String> = batch.micro.iter().map(|m| m.lines.to_string()).collect();
            format!(" of {} packed lines", lines.join(" and "))
        } else {
            String::new()
        },
        padded.join(" and "),
        100.0 * batch.pad_fraction(),
        settings.threads,
        settings.device,
        if settings.gradient_cache {
            ", isoclr with gradient caching"
        } else {
            ""
        }
    );

    let dir = tempfile::tempdir().expect("temporary directory");
    let mut trainer = Trainer::new(&config, settings.device, 1);
    trainer
        .model
        .save(&dir.path().join("weights.safetensors"))
        .expect("saving the starting weights");
    // Peers padding to a fixed length run one pass per view, as users' training loops do.
    let padded_to = settings.peers.first().and_then(|peer| peer.padded_to);
    if let Some(length) = padded_to {
        let real: usize = transcripts.iter().map(|t| t.len()).sum();
        eprintln!(
            "peers: one pass per view, every sequence padded to {length} ({:.0} % padding)",
            100.0 * (1.0 - real as f64 / (transcripts.len() * length) as f64)
        );
    }
    let peer_batch = padded_to.map(|_| make_batch(&transcripts, None, false, &config.model));
    export_batch(
        peer_batch.as_ref().unwrap_or(&batch),
        padded_to,
        &dir.path().join("batch.safetensors"),
    );
    let config_json = reference_config(&config.model, &config.train);

    let mut rust = Side::default();
    let mut peers: Vec<(Peer, Side)> = settings.peers.iter().map(|p| (p.clone(), Side::default())).collect();
    let start = |peer: &Peer| Reference::start(dir.path(), &config_json, settings.threads, settings.device, peer);
    let total = settings.warmup + settings.steps;
    let mut torch_version = String::new();
    if settings.alternate {
        // The sides take turns, so a changing background load hits all alike.
        let mut references: Vec<Reference> = peers.iter().map(|(peer, _)| start(peer)).collect();
        for step in 0..total {
            time_isoclr(&mut trainer, &batch, step, &settings, &mut rust);
            for (reference, (_, side)) in references.iter_mut().zip(&mut peers) {
                time_pytorch(reference, step, &settings, side);
            }
        }
        for _ in 0..if settings.profile { settings.steps } else { 0 } {
            isoclr_step_in_phases(&mut trainer, &batch, &config, &mut rust.phases_ms);
            for (reference, (_, side)) in references.iter_mut().zip(&mut peers) {
                pytorch_phases(reference, side);
            }
        }
        for reference in references {
            torch_version = reference.finish();
        }
    } else {
        for step in 0..total {
            time_isoclr(&mut trainer, &batch, step, &settings, &mut rust);
        }
        for _ in 0..if settings.profile { settings.steps } else { 0 } {
            isoclr_step_in_phases(&mut trainer, &batch, &config, &mut rust.phases_ms);
        }
        // isoclr is done: on a GPU its cached memory goes back to the driver for the peers to use.
        drop(trainer);
        if settings.device.is_cuda() {
            isoclr::device::cuda_empty_cache();
        }
        // Each peer starts only when the one before has ended: libgomp worker threads of an idle process
        // spin for a while and would take CPU from the side being timed.
        for (peer, side) in &mut peers {
            let mut reference = start(peer);
            for step in 0..total {
                time_pytorch(&mut reference, step, &settings, side);
            }
            for _ in 0..if settings.profile { settings.steps } else { 0 } {
                pytorch_phases(&mut reference, side);
            }
            torch_version = reference.finish();
        }
    }
    report(&settings, &batch, &rust, &peers, &torch_version);
}

/// Prints the table (a row per peer) and the details, and appends the JSON record.
fn report(settings: &Settings, batch: &StepBatch, rust: &Side, peers: &[(Peer, Side)], torch_version: &str) {
    let sequences = 2 * settings.batch;
    let seq_per_s = |side: &Side| sequences as f64 / (side.median_ms() / 1e3);
    let name = |v: serde_json::Value| v.as_str().unwrap_or("?").to_owned();
    let cuda = settings.device.is_cuda();
    // CUDA runs add the peak memory of each side.
    let (memory_head, memory_rule) = if cuda {
        (" isoclr peak GiB | peer peak GiB |", "---|---|")
    } else {
        Default::default()
    };
    println!();
    println!(
        "| preset | norm | batch (pairs) | length | threads | peer | isoclr step ms | peer step ms | isoclr seq/s | peer seq/s | ratio |{memory_head}"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|{memory_rule}");
    for (peer, side) in peers {
        let memory_cells = if cuda {
            format!(" {} | {} |", gib(rust.peak_bytes()), gib(side.peak_bytes()))
        } else {
            String::new()
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.3} |{memory_cells}",
            name(serde_json::to_value(settings.preset).unwrap()),
            name(serde_json::to_value(settings.norm).unwrap()),
            settings.batch,
            settings.lengths,
            settings.threads,
            peer.name(),
            rust.median_ms(),
            side.median_ms(),
            seq_per_s(rust),
            seq_per_s(side),
            seq_per_s(rust) / seq_per_s(side)
        );
    }
    println!();
    let alternating = if settings.alternate { " (sides alternating)" } else { "" };
    let figures = |side: &Side| format!("{:.1} / {:.1} / {:.1}", side.median_ms(), side.min_ms(), side.mean_ms());
    println!(
        "step ms median / min / mean over {} steps{alternating}: isoclr {}",
        settings.steps,
        figures(rust)
    );
    let last = |side: &Side| side.losses.last().copied().unwrap_or(f64::NAN);
    for (peer, side) in peers {
        println!("  {}: {}", peer.name(), figures(side));
        if settings.alternate {
            // Neighbouring steps saw nearly the same machine: their ratios are the least disturbed estimate.
            let paired: Vec<f64> = rust.step_ms.iter().zip(&side.step_ms).map(|(r, t)| t / r).collect();
            println!(
                "    ratio of neighbouring steps (peer ms ÷ isoclr ms): median {:.3}",
                median(&paired)
            );
        }
        println!(
            "    loss first / last step: isoclr {:.4} / {:.4}, peer {:.4} / {:.4} (same start weights and batch; dropout draws differ)",
            rust.losses[0],
            last(rust),
            side.losses[0],
            last(side)
        );
    }
    println!("torch {torch_version}; seq/s = 2 × pairs / median step time");
    if cuda {
        println!(
            "device {:?}, bf16 autocast; peak = bytes allocated by libtorch's caching allocator, largest over the timed steps",
            settings.device
        );
    }
    if let Some(path) = &settings.json {
        // The top-level torch_* fields are the first peer's (older readers know only those).
        let (_, first) = &peers[0];
        let peer_records: Vec<serde_json::Value> = (peers.iter())
            .map(|(peer, side)| {
                serde_json::json!({
                    "peer": peer.name(),
                    "plain": peer.plain,
                    "padded_to": peer.padded_to,
                    "compile": peer.compile,
                    "ms": side.median_ms(),
                    "seq_s": seq_per_s(side),
                    "ratio": seq_per_s(rust) / seq_per_s(side),
                    "peak_bytes": side.peak_bytes(),
                    "loss": [side.losses[0], last(side)],
                })
            })
            .collect();
        let record = serde_json::json!({
            "device": if cuda { "cuda" } else { "cpu" },
            "preset": settings.preset,
            "norm": settings.norm,
            "pairs": settings.batch,
            "sequences": sequences,
            "length": settings.lengths.to_string(),
            "padded": batch.micro.iter().map(|m| m.padded_len).collect::<Vec<_>>(),
            "positions_per_pass": settings.positions,
            "packing": settings.packing,
            "lines": batch.micro.iter().map(|m| m.lines).collect::<Vec<_>>(),
            "gradient_cache": settings.gradient_cache,
            // isoclr's batch norm on CUDA: ATen's batch-norm kernels or the composite (device::BatchNormKernels).
            "cuda_batch_norm_kernels": cuda
                && isoclr::device::BatchNormKernels::for_device(tch::Device::Cuda(0))
                    == Some(isoclr::device::BatchNormKernels::Aten),
            "pad_fraction": batch.pad_fraction(),
            "threads": settings.threads,
            "steps": settings.steps,
            "warmup": settings.warmup,
            "isoclr_ms": rust.median_ms(),
            "torch_ms": first.median_ms(),
            "isoclr_seq_s": seq_per_s(rust),
            "torch_seq_s": seq_per_s(first),
            "ratio": seq_per_s(rust) / seq_per_s(first),
            "isoclr_peak_bytes": rust.peak_bytes(),
            "torch_peak_bytes": first.peak_bytes(),
            "isoclr_loss": [rust.losses[0], last(rust)],
            "torch_loss": [first.losses[0], last(first)],
            "peers": peer_records,
            "torch": torch_version,
        });
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap_or_else(|e| panic!("ISOCLR_BENCH_JSON={}: {e}", path.display()));
        writeln!(file, "{record}").unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }
    if settings.profile {
        let names: Vec<String> = peers.iter().map(|(peer, _)| peer.name()).collect();
        println!();
        println!("| phase (ms per step) | isoclr | {} |", names.join(" | "));
        println!("|---|---|{}", "---|".repeat(names.len()));
        for (i, phase) in PHASES.iter().enumerate() {
            let per_step = |side: &Side| side.phases_ms[i] / settings.steps as f64;
            let cells: Vec<String> = peers.iter().map(|(_, side)| format!("{:.1}", per_step(side))).collect();
            println!("| {phase} | {:.1} | {} |", per_step(rust), cells.join(" | "));
        }
    }
}
