//! The run configuration: figment layers (built-in defaults < TOML file < `ISOCLR_*` environment <
//! `--set key=value`) read into structs that reject unknown keys, then validated.
//!
//! Must not depend on tch, tonic or tokio: every process (coordinator, launcher) reads the same config.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Errors reading or validating a configuration; each names the key (and, for figment, its source).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A layer could not be read, a key is unknown or has the wrong type: each problem with its key and
    /// the layer it came from.
    #[error("configuration: {0}")]
    Layer(String),
    /// A `--set` argument is not `key=value`.
    #[error("--set {0:?}: expected key=value, e.g. train.lr=0.001")]
    BadOverride(String),
    /// A value is out of range.
    #[error("configuration key {key}: {why}")]
    Invalid {
        /// Dotted key, e.g. `train.batch_size`.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

impl From<Box<figment::Error>> for ConfigError {
    fn from(error: Box<figment::Error>) -> Self {
        let problems: Vec<String> = (*error)
            .into_iter()
            .map(|e| {
                let origin = match &e.metadata {
                    Some(m) => match &m.source {
                        Some(source) => format!("{} {source}", m.name),
                        None => m.name.to_string(),
                    },
                    None => "an unknown layer".to_owned(),
                };
                format!("{}: {} (from {origin})", e.path.join("."), e.kind)
            })
            .collect();
        ConfigError::Layer(problems.join("; "))
    }
}

/// One `--set key=value`, named as such in errors (a plain serialized provider is named by the line of code
/// that made it).
struct SetArgument {
    assignment: String,
    value: Serialized<toml::Value>,
}

impl figment::Provider for SetArgument {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named(format!("--set {}", self.assignment))
    }

    fn data(&self) -> std::result::Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.value.data()
    }
}

/// Result alias of the configuration layer.
pub type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// The whole run configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the training data comes from.
    pub data: DataConfig,
    /// The encoder and projection head.
    pub model: ModelConfig,
    /// Optimisation and the training loop.
    pub train: TrainConfig,
    /// Coordinator, workers and collectives.
    pub dist: DistConfig,
    /// Checkpoints in object storage.
    pub checkpoint: crate::ckpt::CheckpointConfig,
    /// Probe tasks run on the final model when training ends.
    pub probe: ProbeConfig,
}

/// `[probe]`: linear-probe tasks (`configs/probes/*.toml`) that a training job runs on its final model, writing
/// the report to `OUT/probes/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ProbeConfig {
    /// Task files, relative to the working directory; empty runs none.
    pub tasks: Vec<PathBuf>,
}

/// `[dist]`: the coordinator, its workers and their collectives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// Address the coordinator binds (loopback by default; `0.0.0.0:PORT` to serve other hosts; port 0 picks one).
    pub bind: String,
    /// Shards each end of a worker's batch stream queues ahead of the step it is training (the coordinator's
    /// send queue and the worker's receive queue); HTTP/2 flow control (a window of about 2 MB) may hold more in
    /// flight when shards are small.
    pub prefetch: usize,
    /// Seconds between a worker's heartbeats.
    pub heartbeat_interval_s: f64,
    /// A worker silent for this long (or whose stream breaks) aborts the job; also bounds how long any
    /// process lingers after a failure.
    pub heartbeat_timeout_s: f64,
    /// Seconds the coordinator waits for every worker to register.
    pub rendezvous_timeout_s: f64,
    /// Timeout of one collective operation after the first step (the first gets `rendezvous_timeout_s`).
    pub collective_timeout_s: f64,
    /// Timeout of one RPC.
    pub rpc_timeout_s: f64,
    /// PEM certificate chain for TLS; TLS is on when this and `tls_key` are set.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate workers use to verify the coordinator (defaults to `tls_cert`).
    pub tls_ca: Option<PathBuf>,
    /// Collectives between workers: `tcp` (the ring, host memory), `nccl` (device memory; needs CUDA and a
    /// build with the `nccl` feature), or `auto`: NCCL when every worker has a GPU of its own and NCCL
    /// loads, else TCP.
    pub backend: CollectiveBackend,
}

/// Which collective backend workers use (`dist.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CollectiveBackend {
    /// NCCL where it can run, else TCP.
    Auto,
    /// The TCP ring through host memory.
    Tcp,
    /// NCCL on device memory; an error where it cannot run.
    Nccl,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:0".into(),
            prefetch: 4,
            heartbeat_interval_s: 2.0,
            heartbeat_timeout_s: 60.0,
            rendezvous_timeout_s: 120.0,
            collective_timeout_s: 60.0,
            rpc_timeout_s: 30.0,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            backend: CollectiveBackend::Auto,
        }
    }
}

/// `[data]`: the dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// A dataset directory made by `isoclr prep`, or a directory whose `corpus.toml` lists several (as
    /// `scripts/fetch-human-data.sh` writes); unset (and no `paths`) means "synthesise the default into
    /// `--out`".
    pub path: Option<PathBuf>,
    /// Several dataset directories trained on as one corpus (species, assemblies), instead of `path`.
    pub paths: Vec<PathBuf>,
    /// One weight per entry of `paths`: each dataset's share of every batch. Empty: in proportion to the
    /// datasets' numbers of groups.
    pub weights: Vec<f64>,
    /// Orthology table (TSV `dataset<TAB>gene_id<TAB>group`, dataset = directory name): genes of one group
    /// become one contrastive group across datasets.
    pub orthology: Option<PathBuf>,
    /// Share of groups held out of training (chosen by group id); their contrastive loss and accuracy are
    /// logged every `train.log_every` steps. 0 holds none out.
    pub holdout_fraction: f64,
    /// Genes of the synthetic default (used when `path` is unset).
    pub synth_genes: usize,
    /// Seed of the synthetic default.
    pub synth_seed: u64,
    /// Length scale of the synthetic default (1.0 = realistic mRNA lengths).
    pub synth_length_scale: f64,
    /// Maximum transcript length for `prep` of the synthetic default.
    pub max_len: u32,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            path: None,
            paths: Vec::new(),
            weights: Vec::new(),
            orthology: None,
            holdout_fraction: 0.0,
            synth_genes: 600,
            synth_seed: 1,
            synth_length_scale: 1.0,
            max_len: 12_288,
        }
    }
}

/// Encoder size presets (METHOD.md); `tiny` is for CPU smoke runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// F=(16,32,32,64), B=(1,1,1,1): seconds per step on a CPU.
    Tiny,
    /// F=(64,128,128,256), B=(2,2,2,2).
    Small,
    /// F=(64,128,256,512), B=(3,4,6,3).
    Medium,
    /// Medium with kernel 4.
    Large,
}

/// Normalisation inside the encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    /// Batch statistics over real positions of the pass (the paper's choice).
    Batch,
    /// Per-sample statistics over channel groups and real positions.
    Group,
    /// Per-sample statistics over all channels and real positions.
    Layer,
}

/// How the encoder's per-position features become one embedding of a transcript (for probes and `embed`;
/// training always uses the mean).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// The mean over the transcript's positions: `F` values.
    #[default]
    Mean,
    /// The mean over the transcript, then over its 5'UTR, CDS and 3'UTR (from the codon track; zeros for a
    /// non-coding transcript): `4·F` values. Translation and decay read mostly one region each, and a
    /// 5'UTR of 150 nt is a few percent of a whole-transcript mean.
    Regions,
}

impl Pooling {
    /// Embedding width for an encoder of width `encoder_dim`.
    pub fn dim(self, encoder_dim: usize) -> usize {
        match self {
            Self::Mean => encoder_dim,
            Self::Regions => 4 * encoder_dim,
        }
    }
}

/// `[model]`: the encoder and head. Unset shape keys come from the preset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Size preset.
    pub preset: Preset,
    /// Filters per stage (overrides the preset).
    pub filters: Option<Vec<i64>>,
    /// Residual blocks per stage (overrides the preset).
    pub blocks: Option<Vec<i64>>,
    /// Dilation per stage (overrides the preset).
    pub dilations: Option<Vec<i64>>,
    /// Convolution kernel size (overrides the preset).
    pub kernel: Option<i64>,
    /// Normalisation kind.
    pub norm: Norm,
    /// Channel groups for `norm = "group"`.
    pub norm_groups: i64,
    /// Dropout inside residual blocks.
    pub dropout: f64,
    /// Hidden width of the projection head.
    pub head_hidden: i64,
    /// Output width of the projection head.
    pub projection_dim: i64,
    /// Input tracks: 6 (default) or 4 (sequence only, the ablation).
    pub tracks: i64,
    /// Weight of the auxiliary masked-nucleotide objective beside the contrastive loss: a head on the last
    /// stage predicts the base under every masked position (`train.mask_fraction`), which keeps
    /// position-level information in the encoder. 0 (the default): no head, no objective. Off by default
    /// until measured to help (docs/PROBES.md).
    pub mlm_weight: f64,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            preset: Preset::Small,
            filters: None,
            blocks: None,
            dilations: None,
            kernel: None,
            norm: Norm::Batch,
            norm_groups: 8,
            dropout: 0.1,
            head_hidden: 2048,
            projection_dim: 512,
            tracks: 6,
            mlm_weight: 0.0,
        }
    }
}

/// The encoder's shape after applying preset and overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderShape {
    /// Filters per stage; the stem has `filters[0]`.
    pub filters: Vec<i64>,
    /// Blocks per stage.
    pub blocks: Vec<i64>,
    /// Dilation per stage.
    pub dilations: Vec<i64>,
    /// Kernel size of every convolution but the 1×1 shortcuts.
    pub kernel: i64,
}

impl EncoderShape {
    /// Positions between two sequences packed into one line (core/src/data/packing.rs) so that neither sees the
    /// other. The encoder zeroes every position outside a sequence after each layer, so what matters is the
    /// farthest one convolution reads, at each resolution: 'same' padding of `(k−1)·d` reads
    /// `⌈(k−1)·d/2⌉` positions to the right (the floor half to the left). At resolution `ρ` (the stem at 1,
    /// stage `s` at `2^(s+1)`) a gap of `(reach + 1)·ρ` input positions leaves more than `reach` positions
    /// of that resolution between the last one the earlier sequence touches and the first of the later one,
    /// however the ends fall in their pooling windows.
    pub fn packing_gap(&self) -> usize {
        let reach = |dilation: i64| ((self.kernel - 1) * dilation + 1) / 2;
        let stem = (reach(1) + 1) as usize;
        let stages = self
            .dilations
            .iter()
            .enumerate()
            .map(|(s, &d)| ((reach(d) + 1) as usize) << (s + 1));
        stages.fold(stem, usize::max)
    }
}

impl ModelConfig {
    /// The preset's shape with the explicit keys applied.
    pub fn shape(&self) -> EncoderShape {
        let (filters, blocks, kernel) = match self.preset {
            Preset::Tiny => (vec![16, 32, 32, 64], vec![1, 1, 1, 1], 2),
            Preset::Small => (vec![64, 128, 128, 256], vec![2, 2, 2, 2], 2),
            Preset::Medium => (vec![64, 128, 256, 512], vec![3, 4, 6, 3], 2),
            Preset::Large => (vec![64, 128, 256, 512], vec![3, 4, 6, 3], 4),
        };
        EncoderShape {
            filters: self.filters.clone().unwrap_or(filters),
            blocks: self.blocks.clone().unwrap_or(blocks),
            dilations: self.dilations.clone().unwrap_or_else(|| vec![1, 2, 4, 8]),
            kernel: self.kernel.unwrap_or(kernel),
        }
    }
}

/// Contrastive objective.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LossKind {
    /// Decoupled contrastive learning (the default).
    Dcl,
    /// NT-Xent (SimCLR), the ablation.
    Ntxent,
}

/// Learning-rate schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    /// IsoCLR's per-epoch schedule: linear warm-up, reciprocal square root, linear cool-down to 1e-8.
    Paper,
    /// Linear warm-up from 0.1× then cosine to zero (Orthrus).
    Cosine,
    /// Constant learning rate.
    Constant,
}

/// Gradient clipping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipKind {
    /// Each tensor's gradient clipped to `clip_norm` on its own (IsoCLR).
    PerTensor,
    /// All gradients scaled together so their joint norm is at most `clip_norm`.
    Global,
    /// No clipping.
    None,
}

/// The largest `train.max_shift`: the longest sequence the presets are built for.
const MAX_SHIFT: u32 = 12_288;

/// The most libtorch CPU threads `train.threads` may ask for.
const MAX_THREADS: i32 = 1024;

/// Where batch norm takes its statistics in training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatistics {
    /// Over each encoder pass: the passes of a step are length-sorted, so a pass holds sequences of similar
    /// length (and both views of each), and its statistics say something about them.
    Pass,
    /// Over every pass of the step on this process (its share of the global batch) at once: the encoder runs
    /// layer by layer over all passes, which keeps every pass's activations as training does anyway.
    /// Needs `train.gradient_cache = false` (the second pass of gradient caching runs one pass at a time).
    Step,
}

/// Device choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else CPU.
    Auto,
    /// CPU.
    Cpu,
    /// The first CUDA device; an error when none.
    Cuda,
}

/// `[train]`: optimisation and the loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: u64,
    /// Groups per global batch (N; the loss sees 2N views).
    pub batch_size: usize,
    /// Seed of sampling, augmentation, initialisation and dropout.
    pub seed: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Decoupled weight decay (matrices and convolution kernels only).
    pub weight_decay: f64,
    /// AdamW β1.
    pub beta1: f64,
    /// AdamW β2.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Learning-rate schedule.
    pub schedule: ScheduleKind,
    /// `paper`: warm-up epochs.
    pub warmup_epochs: u64,
    /// `paper`: cool-down epochs at the end.
    pub cooldown_epochs: u64,
    /// `cosine`: fraction of steps spent warming up.
    pub warmup_fraction: f64,
    /// Contrastive objective.
    pub loss: LossKind,
    /// Softmax temperature τ.
    pub temperature: f64,
    /// Weight the positive term by ln(n_i + 0.4) / 0.802 (n_i = transcripts in the group).
    pub weight_by_group_size: bool,
    /// Gradient clipping kind.
    pub clip: ClipKind,
    /// Clipping threshold.
    pub clip_norm: f64,
    /// Fraction of the padded length masked per view.
    pub mask_fraction: f64,
    /// Largest random right shift.
    pub max_shift: u32,
    /// Positions (sequences × padded length) per encoder pass; short sequences share a pass.
    pub positions_per_pass: usize,
    /// Pack several short sequences into one line of a pass, far enough apart that none sees another
    /// (docs/DESIGN.md, "Packing"), instead of padding each to the longest of its pass. Needs batch norm
    /// (group and layer norm take statistics per line); ignored with the others. Unset (the default): packed
    /// exactly when `batch_statistics = "step"`, where a packed step computes what the step computes one
    /// sequence per line, in less time. With per-pass statistics packing changes which sequences share
    /// them, and what that does to the learned encoder is not measured (docs/DESIGN.md), so it is off
    /// unless set.
    pub packing: Option<bool>,
    /// Gradient caching: encode the whole batch without keeping activations, take the loss's gradient
    /// with respect to the embeddings, then run each encoder pass again with gradients. The encoder's
    /// activation memory is then that of one pass, not of the batch, for a second forward pass's compute;
    /// the gradients are the same.
    pub gradient_cache: bool,
    /// Where batch norm takes its training statistics: each encoder pass (`pass`, the default) or the whole
    /// step (`step`; better on the real human corpus, docs/PROBES.md, and used by configs/human-cpu.toml).
    pub batch_statistics: BatchStatistics,
    /// Log every this many steps (the first and last step are always logged).
    pub log_every: u64,
    /// Device.
    pub device: DeviceChoice,
    /// CPU threads for libtorch (0 = libtorch's default; at most 1024).
    pub threads: i32,
    /// Single-node mode (`train --workers N`): how many times a job whose worker died is started again
    /// from its latest checkpoint (from step 0 without one) before the failure is final.
    pub max_restarts: u32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: 1000,
            batch_size: 256,
            seed: 0,
            lr: 0.01,
            weight_decay: 1e-6,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            schedule: ScheduleKind::Paper,
            warmup_epochs: 10,
            cooldown_epochs: 50,
            warmup_fraction: 0.1,
            loss: LossKind::Dcl,
            temperature: 0.1,
            weight_by_group_size: false,
            clip: ClipKind::PerTensor,
            clip_norm: 1.0,
            mask_fraction: 0.15,
            max_shift: 3,
            positions_per_pass: 64 * 12_288,
            packing: None,
            gradient_cache: false,
            batch_statistics: BatchStatistics::Pass,
            log_every: 10,
            device: DeviceChoice::Auto,
            threads: 0,
            max_restarts: 2,
        }
    }
}

/// Environment variables with this prefix set keys: `ISOCLR_TRAIN_LR=0.001` sets `train.lr`.
pub const ENV_PREFIX: &str = "ISOCLR_";
const SECTIONS: [&str; 5] = ["data", "model", "train", "dist", "checkpoint"];

/// Parses one `--set key=value`; the value is read as a TOML value (number, bool, array) or else a string.
fn override_provider(assignment: &str) -> Result<SetArgument> {
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| ConfigError::BadOverride(assignment.into()))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::BadOverride(assignment.into()));
    }
    let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    Ok(SetArgument {
        assignment: assignment.to_owned(),
        value: Serialized::default(key, value),
    })
}

impl Config {
    /// Layers defaults, an optional TOML file, `ISOCLR_<SECTION>_<KEY>` environment variables and
    /// `--set key=value` overrides (in that order of precedence, last wins), then validates.
    ///
    /// Errors name the offending key and where it came from.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid {
                    key: "--config",
                    why: format!("{} does not exist", file.display()),
                });
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let env = Env::prefixed(ENV_PREFIX).filter_map(|key| {
            // Keys arrive as written (upper case); figment lower-cases them only when emitting.
            let key = key.as_str().to_ascii_lowercase();
            SECTIONS
                .iter()
                .find(|s| key.strip_prefix(**s).is_some_and(|rest| rest.starts_with('_')))
                .map(|_| key.replacen('_', ".", 1).into())
        });
        figment = figment.merge(env);
        for assignment in overrides {
            figment = figment.merge(override_provider(assignment)?);
        }
        let config: Config = figment.extract().map_err(Box::new)?;
        config.validate()?;
        Ok(config)
    }

    /// Reads a configuration written by [`Config::to_toml`] (a run's `config.toml`, a checkpoint's
    /// `state.json`), layered over the defaults and validated; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let config: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| Box::new(e.with_path(origin)))?;
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges that serde cannot.
    pub fn validate(&self) -> Result<()> {
        let invalid = |key, why: &str| {
            Err(ConfigError::Invalid {
                key,
                why: why.to_owned(),
            })
        };
        let t = &self.train;
        if t.steps == 0 {
            return invalid("train.steps", "must be at least 1");
        }
        if t.batch_size < 2 {
            return invalid(
                "train.batch_size",
                "must be at least 2 (negatives are the other groups)",
            );
        }
        if !(t.lr > 0.0 && t.lr.is_finite()) {
            return invalid("train.lr", "must be a positive number");
        }
        if t.temperature.is_nan() || t.temperature <= 0.0 {
            return invalid("train.temperature", "must be positive");
        }
        if !(0.0..1.0).contains(&t.mask_fraction) {
            return invalid("train.mask_fraction", "must be in [0, 1)");
        }
        if !(0.0..=1.0).contains(&t.warmup_fraction) {
            return invalid("train.warmup_fraction", "must be in [0, 1]");
        }
        if !(t.weight_decay >= 0.0 && t.weight_decay.is_finite()) {
            return invalid("train.weight_decay", "must be a number ≥ 0");
        }
        if !(t.clip_norm > 0.0 && t.clip_norm.is_finite()) {
            return invalid("train.clip_norm", "must be a positive number");
        }
        if !(0.0..1.0).contains(&t.beta1) {
            return invalid("train.beta1", "must be in [0, 1)");
        }
        if !(0.0..1.0).contains(&t.beta2) {
            return invalid("train.beta2", "must be in [0, 1) (1 divides by a bias correction of 0)");
        }
        if !(t.eps > 0.0 && t.eps.is_finite()) {
            return invalid("train.eps", "must be a positive number");
        }
        if t.log_every == 0 {
            return invalid("train.log_every", "must be at least 1");
        }
        if t.max_shift > MAX_SHIFT {
            return invalid(
                "train.max_shift",
                "must be at most 12288: the shift pads every sequence of a step by up to this many positions",
            );
        }
        if !(0..=MAX_THREADS).contains(&t.threads) {
            return invalid("train.threads", "must be 0 (libtorch's default) or 1 to 1024");
        }
        if t.positions_per_pass < 32 {
            return invalid("train.positions_per_pass", "must be at least 32");
        }
        if t.batch_statistics == BatchStatistics::Step && (t.gradient_cache || self.model.norm != Norm::Batch) {
            return invalid(
                "train.batch_statistics",
                "\"step\" needs model.norm = \"batch\" and train.gradient_cache = false",
            );
        }
        let m = &self.model;
        let s = m.shape();
        if s.filters.is_empty() || s.filters.len() != s.blocks.len() || s.filters.len() != s.dilations.len() {
            return invalid(
                "model.filters",
                "filters, blocks and dilations need one entry per stage, equally many",
            );
        }
        if s.kernel < 1 {
            return invalid("model.kernel", "must be at least 1");
        }
        if s.filters.iter().chain(&s.blocks).chain(&s.dilations).any(|&v| v < 1) {
            return invalid("model.filters", "filters, blocks and dilations must be ≥ 1");
        }
        if s.filters.len() > 4 {
            return invalid(
                "model.filters",
                "at most 4 stages: the stem and every stage halve the length, and padded lengths are multiples of 32",
            );
        }
        if m.norm_groups < 1 {
            return invalid("model.norm_groups", "must be at least 1");
        }
        if m.norm == Norm::Group && s.filters.iter().chain([&m.head_hidden]).any(|f| f % m.norm_groups != 0) {
            return invalid(
                "model.norm_groups",
                "must divide every stage's filter count and model.head_hidden",
            );
        }
        if m.tracks != 6 && m.tracks != 4 {
            return invalid("model.tracks", "must be 6 or 4");
        }
        if !(0.0..1.0).contains(&m.dropout) {
            return invalid("model.dropout", "must be in [0, 1)");
        }
        if m.head_hidden < 1 {
            return invalid("model.head_hidden", "must be at least 1");
        }
        if m.projection_dim < 1 {
            return invalid("model.projection_dim", "must be at least 1");
        }
        if !(m.mlm_weight >= 0.0 && m.mlm_weight.is_finite()) {
            return invalid("model.mlm_weight", "must be a number ≥ 0");
        }
        if m.mlm_weight > 0.0 && (t.gradient_cache || t.mask_fraction == 0.0) {
            return invalid(
                "model.mlm_weight",
                "the masked-nucleotide objective needs train.mask_fraction > 0 and train.gradient_cache = false",
            );
        }
        let d = &self.dist;
        if d.prefetch == 0 {
            return invalid("dist.prefetch", "must be at least 1");
        }
        let timeouts = [
            d.heartbeat_interval_s,
            d.heartbeat_timeout_s,
            d.rendezvous_timeout_s,
            d.collective_timeout_s,
            d.rpc_timeout_s,
        ];
        if timeouts.iter().any(|t| !(t.is_finite() && *t > 0.0)) {
            return invalid(
                "dist.heartbeat_timeout_s",
                "every dist timeout and interval must be a positive number of seconds",
            );
        }
        if d.heartbeat_interval_s >= d.heartbeat_timeout_s {
            return invalid(
                "dist.heartbeat_interval_s",
                "must be shorter than dist.heartbeat_timeout_s",
            );
        }
        if d.tls_cert.is_some() != d.tls_key.is_some() {
            return invalid("dist.tls_cert", "set both dist.tls_cert and dist.tls_key, or neither");
        }
        self.checkpoint.validate().map_err(|e| ConfigError::Invalid {
            key: "checkpoint",
            why: e.to_string(),
        })?;
        if self.data.path.is_some() && !self.data.paths.is_empty() {
            return invalid(
                "data.paths",
                "give data.path (one dataset) or data.paths (several), not both",
            );
        }
        if !self.data.weights.is_empty()
            && !self.data.paths.is_empty()
            && self.data.weights.len() != self.data.paths.len()
        {
            return invalid("data.weights", "needs one weight per entry of data.paths");
        }
        if self.data.weights.iter().any(|w| !(w.is_finite() && *w > 0.0)) {
            return invalid("data.weights", "must be positive and finite");
        }
        if !(0.0..=0.5).contains(&self.data.holdout_fraction) {
            return invalid("data.holdout_fraction", "must be between 0 and 0.5");
        }
        if self.data.max_len < 32 {
            return invalid("data.max_len", "must be at least 32");
        }
        if self.data.synth_genes < 3 {
            return invalid("data.synth_genes", "must be at least 3");
        }
        let scale = self.data.synth_length_scale;
        if !(scale > 0.0 && scale.is_finite()) {
            return invalid("data.synth_length_scale", "must be a positive number");
        }
        Ok(())
    }

    /// The resolved configuration as TOML, for `config.toml` beside a run's outputs.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot serialise configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_loads_and_its_global_batch_splits_over_its_workers() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        let mut checked = 0;
        for dir in [root.clone(), root.join("cluster")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_none_or(|e| e != "toml") {
                    continue;
                }
                let config = Config::load(Some(&path), &[]).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // Cluster configs are named NAME-Nnode.toml and run 8 workers per node.
                let nodes = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_suffix("node"))
                    .and_then(|s| s.rsplit('-').next())
                    .and_then(|n| n.parse::<usize>().ok());
                if let Some(nodes) = nodes {
                    assert_eq!(config.train.batch_size % (8 * nodes), 0, "{}", path.display());
                    assert!(config.checkpoint.url.is_some(), "{} checkpoints", path.display());
                }
                checked += 1;
            }
        }
        assert!(checked >= 8, "only {checked} configs found");
    }

    #[test]
    fn layers_apply_in_order_and_overrides_parse_types() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "[train]\nlr = 0.5\nsteps = 7\n[model]\npreset = \"tiny\"\n").unwrap();
        let c = Config::load(
            Some(&file),
            &[
                "train.steps=9".into(),
                "model.norm=group".into(),
                "model.filters=[8,16]".into(),
                "model.blocks=[1,1]".into(),
                "model.dilations=[1,2]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.train.lr, 0.5);
        assert_eq!(c.train.steps, 9);
        assert_eq!(c.model.preset, Preset::Tiny);
        assert_eq!(c.model.norm, Norm::Group);
        assert_eq!(c.model.shape().filters, vec![8, 16]);
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn unknown_and_mistyped_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[train]\nlrr = 0.5\n").unwrap();
        let err = Config::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("lrr") && err.contains("bad.toml"), "{err}");
        let err = Config::load(None, &["train.steps=many".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.steps"), "{err}");
        let err = Config::load(None, &["modle.preset=tiny".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("modle"), "{err}");
        let err = Config::load(None, &["train.steps".into()]).unwrap_err().to_string();
        assert!(err.contains("key=value"), "{err}");
        let err = Config::load(None, &["train.batch_size=1".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.batch_size"), "{err}");
        for sets in [
            &["train.batch_statistics=\"step\"", "train.gradient_cache=true"][..],
            &["train.batch_statistics=\"step\"", "model.norm=\"layer\""][..],
            &["model.mlm_weight=0.5", "train.gradient_cache=true"][..],
            &["model.mlm_weight=0.5", "train.mask_fraction=0.0"][..],
        ] {
            let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
            let err = Config::load(None, &sets).unwrap_err().to_string();
            let key = sets[0].split('=').next().unwrap();
            assert!(err.contains(key), "{sets:?}: {err}");
        }
        let step = ["train.batch_statistics=\"step\"".to_string()];
        let config = Config::load(None, &step).unwrap();
        assert_eq!(config.train.batch_statistics, BatchStatistics::Step);
    }

    /// Each value outside its key's range is refused with that key named (a panic, two hangs and silent
    /// NaN training were found with some of these).
    #[test]
    fn every_out_of_range_value_names_its_key() {
        let cases = [
            ("train.steps", "0"),
            ("train.batch_size", "1"),
            ("train.lr", "0.0"),
            ("train.lr", "nan"),
            ("train.temperature", "0.0"),
            ("train.mask_fraction", "1.0"),
            ("train.warmup_fraction", "1.5"),
            ("train.weight_decay", "-1.0"),
            ("train.weight_decay", "inf"),
            ("train.clip_norm", "0.0"),
            ("train.clip_norm", "-1.0"),
            ("train.beta1", "1.5"),
            ("train.beta1", "-0.1"),
            ("train.beta2", "1.0"),
            ("train.eps", "0.0"),
            ("train.eps", "-1.0"),
            ("train.log_every", "0"),
            ("train.max_shift", "100000"),
            ("train.threads", "100000"),
            ("train.threads", "-1"),
            ("train.positions_per_pass", "16"),
            ("model.head_hidden", "0"),
            ("model.projection_dim", "0"),
            ("model.dropout", "1.0"),
            ("model.tracks", "5"),
            ("model.mlm_weight", "-1.0"),
            ("model.kernel", "0"),
            ("model.norm_groups", "0"),
            ("data.synth_genes", "0"),
            ("data.synth_length_scale", "-1.0"),
            ("data.synth_length_scale", "nan"),
            ("data.max_len", "0"),
            ("data.holdout_fraction", "1.5"),
            ("model.mlm_weight", "inf"),
            ("dist.prefetch", "0"),
        ];
        for (key, value) in cases {
            let err = Config::load(None, &[format!("{key}={value}")]).unwrap_err().to_string();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
        for ok in [
            "train.max_shift=12288",
            "train.threads=4",
            "train.beta2=0.999",
            "train.log_every=1",
        ] {
            Config::load(None, &[ok.to_string()]).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }
}
