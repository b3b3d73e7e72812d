//! The `isoclr` command: synthesise, prepare and inspect data; train.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use std::sync::Arc;
use std::time::Duration;

use isoclr::config::Config;
use isoclr::coord::{CoordinatorOptions, run_coordinator};
use isoclr::data::Dataset;
use isoclr::data::dataset::DEFAULT_MAX_LEN;
use isoclr::data::prep::{CdsSource, PrepInput, PrepOptions, Unstranded, prep};
use isoclr::data::synth::{SynthOptions, synth};
use isoclr::shutdown::Shutdown;
use isoclr::train::worker_loop::{WorkerOptions, run_worker};
use isoclr::worker::{ClientTls, Token};

/// Contrastive pre-training of mature-RNA encoders (IsoCLR).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The configuration file and `--set` overrides shared by the commands that read a run configuration.
#[derive(Debug, clap::Args)]
struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override a configuration key, e.g. `--set train.lr=0.001` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

/// Positions (sequences × padded length) per encoder pass when embedding: 64 full-length transcripts.
const EMBED_POSITIONS_PER_PASS: usize = 64 * 12_288;

/// A trained encoder and where it runs, shared by the commands that embed (`embed`, `probe`).
#[derive(Debug, clap::Args)]
struct EncoderArgs {
    /// A run's output directory (model.safetensors + config.toml) or a checkpoint URL or directory.
    #[arg(long)]
    checkpoint: String,
    /// Positions (sequences × padded length) per encoder pass.
    #[arg(long, default_value_t = EMBED_POSITIONS_PER_PASS)]
    positions_per_pass: usize,
    /// Device: auto (a GPU when there is one), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: String,
}

impl EncoderArgs {
    /// The `--device` choice, resolved.
    fn device(&self) -> Result<tch::Device> {
        let name = &self.device;
        let choice: isoclr::config::DeviceChoice = serde_json::from_value(serde_json::Value::String(name.clone()))
            .with_context(|| format!("--device {name:?}: expected auto, cpu or cuda"))?;
        Ok(isoclr::train::run::select_device(choice)?)
    }
}

impl ConfigArgs {
    /// Loads the layered configuration.
    fn load(&self) -> Result<Config> {
        Ok(Config::load(self.config.as_deref(), &self.overrides)?)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Embed transcripts with a trained, frozen encoder: a `.npy` matrix (one row per transcript, float32)
    /// with the transcript ids in row order next to it (`FILE.ids.txt`), or a Parquet file (`id`, `e0`, …).
    Embed {
        /// A run's output directory (model.safetensors + config.toml) or a checkpoint URL or directory.
        #[command(flatten)]
        encoder: EncoderArgs,
        /// Transcripts: a dataset made by `isoclr prep` (a directory), or a table with `id` and `sequence`
        /// and optionally `cds_start`, `cds_end`, `exon_ends` (TSV, CSV, optionally .gz, or Parquet).
        #[arg(long)]
        input: PathBuf,
        /// The file to write: `.parquet` for Parquet, anything else for `.npy` plus `FILE.ids.txt`.
        #[arg(long)]
        out: PathBuf,
        /// Pooling: mean (one mean over the transcript, as in training), or regions (that mean, then the
        /// means over the 5'UTR, CDS and 3'UTR: four times as wide).
        #[arg(long, value_enum, default_value = "mean")]
        pooling: isoclr::config::Pooling,
    },
    /// Run linear-probe tasks on a trained, frozen encoder, with the random-weight, k-mer and from-scratch
    /// baselines and low-data curves; writes report.json, report.md and PNG plots into --out.
    Probe {
        #[command(flatten)]
        encoder: EncoderArgs,
        /// Task files (TOML, see configs/probes/); repeat for several. Default: the `[probe] tasks` of the
        /// encoder's own run configuration.
        #[arg(long = "task")]
        tasks: Vec<PathBuf>,
        /// Report directory.
        #[arg(long)]
        out: PathBuf,
        /// Probe the encoder alone, without the random-weight, k-mer and from-scratch baselines: for comparing
        /// encoders with each other (the baselines do not depend on how the encoder was trained).
        #[arg(long)]
        no_baselines: bool,
    },
    /// Check a run configuration and print it resolved (defaults, file, ISOCLR_* variables, --set), as TOML.
    Config {
        #[command(flatten)]
        layers: ConfigArgs,
        /// Write it to this file instead of printing it.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Write the synthetic default transcriptome (genome FASTA, GTF, transcript FASTA, homology table, labels).
    Synth {
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Number of genes.
        #[arg(long, default_value_t = 600)]
        genes: usize,
        /// Random seed; the same seed gives the same files.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Transcript length scale (1.0 = realistic mRNA lengths).
        #[arg(long, default_value_t = 1.0)]
        length_scale: f64,
        /// Mean transcripts per gene (1-20; default: a fixed mix of 1-6, mean about 2.6).
        #[arg(long)]
        isoforms_per_gene: Option<f64>,
        /// Genome size in bases (suffix k, M or G accepted, e.g. 3.1G): switches to the human-scale
        /// layout, chr1..chr22, chrX, chrY in GRCh38's proportions, written as it is generated. Human
        /// scale: `--genome-size 3.1G --genes 62000 --isoforms-per-gene 4` (about 250 k transcripts).
        #[arg(long, value_parser = parse_bases)]
        genome_size: Option<u64>,
    },
    /// Build a dataset directory from an annotation and a genome or transcript FASTA.
    Prep {
        /// GTF or GFF3 annotation (gzip accepted), with --genome or --transcripts.
        #[arg(long, required_unless_present = "table", conflicts_with = "table")]
        gtf: Option<PathBuf>,
        /// Genome FASTA: transcripts are spliced from it using the annotation's exons.
        #[arg(long, conflicts_with = "transcripts", required_unless_present_any = ["transcripts", "table"])]
        genome: Option<PathBuf>,
        /// Transcript FASTA whose record names are the annotation's transcript ids.
        #[arg(long)]
        transcripts: Option<PathBuf>,
        /// A transcript table instead of an annotation: TSV/CSV (gzip accepted) or Parquet with columns `id`,
        /// `sequence`, optional `gene`, `group`, `cds_start`, `cds_end`, `exon_ends` (the probe-table format).
        #[arg(long, conflicts_with_all = ["genome", "transcripts"])]
        table: Option<PathBuf>,
        /// Homology table (TSV gene_id, group_id): paralogs of a group become one contrastive group.
        #[arg(long)]
        homology: Option<PathBuf>,
        /// Output dataset directory.
        #[arg(long)]
        out: PathBuf,
        /// Longer transcripts are dropped (and counted in the manifest).
        #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
        max_len: u32,
        /// Coding regions: `annotation` (only what the input annotates), or `longest-orf` (the longest
        /// ATG…stop ORF on the forward strand where the input has no CDS, as TransDecoder predicts them).
        #[arg(long, value_enum, default_value = "annotation")]
        cds: CdsArg,
        /// With --cds longest-orf: the shortest ORF kept, in codons (ATG counted, stop not).
        #[arg(long, default_value_t = isoclr::data::orf::DEFAULT_MIN_CODONS)]
        min_orf_codons: u32,
        /// Transcripts of unknown strand (`.`): `keep` them as given (ascending coordinates), or `drop` them
        /// (counted in the manifest).
        #[arg(long, value_enum, default_value = "keep")]
        unstranded: UnstrandedArg,
    },
    /// Print a dataset's counts, or one transcript's 6-track encoding.
    Inspect {
        /// Dataset directory made by `isoclr prep`; without it, the corpus of `--config` (its `[data]`:
        /// datasets, weights, orthology, held-out share) as a training run would draw from it.
        #[arg(required_unless_present = "config")]
        dataset: Option<PathBuf>,
        #[command(flatten)]
        layers: ConfigArgs,
        /// Transcript id to show.
        #[arg(long)]
        transcript: Option<String>,
        /// Print the transcript's encoding: pos, base, then the six track values, tab-separated.
        #[arg(long, requires = "transcript")]
        tracks: bool,
    },
    /// Train an encoder: in this process, or with `--workers N` as a coordinator plus N worker processes
    /// on this machine (the default when there are several GPUs: one worker per GPU).
    Train {
        #[command(flatten)]
        layers: ConfigArgs,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
        /// Worker processes; the global batch (train.batch_size) is split evenly among them.
        #[arg(long)]
        workers: Option<usize>,
        /// Insist on resuming: fail unless checkpoint.url holds a checkpoint. (Without it a run resumes
        /// from the newest valid checkpoint when there is one, and starts afresh otherwise.)
        #[arg(long)]
        resume: bool,
    },
    /// Run the coordinator of a multi-process job: owns the dataset and sampler, streams each worker its
    /// shard of every global batch, decides at step boundaries, writes metrics.jsonl.
    Coordinator {
        #[command(flatten)]
        layers: ConfigArgs,
        /// Output directory (metrics; rank 0 writes the weights here).
        #[arg(long)]
        out: PathBuf,
        /// Number of workers that will register.
        #[arg(long)]
        workers: usize,
        /// File holding the job's secret token; without it, the ISOCLR_TOKEN environment variable.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Write the bound address (host:port) here once listening.
        #[arg(long)]
        addr_file: Option<PathBuf>,
    },
    /// Run one worker: register with the coordinator, train on the shards it streams.
    Worker {
        /// The coordinator's host:port.
        #[arg(long)]
        coordinator: String,
        /// This worker's index on its host (its GPU).
        #[arg(long, default_value_t = 0)]
        local_rank: u32,
        /// Ask for this rank (e.g. from SLURM_PROCID); otherwise the coordinator assigns one.
        #[arg(long)]
        rank: Option<u32>,
        /// File holding the job's secret token; without it, the ISOCLR_TOKEN environment variable.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Configuration file, read only for TLS settings (dist.tls_ca / dist.tls_cert).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address for this worker's collective-ring listener (default: this host's address towards the
        /// coordinator, any port).
        #[arg(long)]
        ring_bind: Option<std::net::SocketAddr>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// Reads and checks probe task files, before any work is done.
fn read_tasks(paths: &[PathBuf]) -> Result<Vec<isoclr::probe::task::ProbeTask>> {
    Ok(paths
        .iter()
        .map(|p| isoclr::probe::task::ProbeTask::read(p))
        .collect::<Result<Vec<_>, _>>()?)
}

impl Command {
    /// Whether the command heeds stop signals, suspending at a step boundary (`Some`), and whether SIGINT
    /// cancels it (`Some(true)`, a coordinator) instead of ending the process at once. `None`: signals keep
    /// their default actions.
    fn heeds_signals(&self) -> Option<bool> {
        match self {
            Self::Train { .. } | Self::Worker { .. } => Some(false),
            Self::Coordinator { .. } => Some(true),
            _ => None,
        }
    }

    /// Whether the command runs libtorch (and so needs its CUDA backend loaded first).
    fn uses_torch(&self) -> bool {
        !matches!(
            self,
            Self::Synth { .. } | Self::Prep { .. } | Self::Inspect { .. } | Self::Config { .. }
        )
    }
}

/// A number of bases: an integer or a decimal with a suffix k, M or G (powers of 1000), e.g. `3.1G`.
fn parse_bases(text: &str) -> std::result::Result<u64, String> {
    let (number, unit) = match text.trim().char_indices().last() {
        Some((i, c @ ('k' | 'K' | 'm' | 'M' | 'g' | 'G'))) => (
            &text.trim()[..i],
            match c.to_ascii_lowercase() {
                'k' => 1e3,
                'm' => 1e6,
                _ => 1e9,
            },
        ),
        _ => (text.trim(), 1.0),
    };
    if let Ok(n) = number.parse::<u64>()
        && unit == 1.0
    {
        return Ok(n);
    }
    match number.parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 && x * unit < 1e15 => Ok((x * unit).round() as u64),
        _ => Err(format!("{text:?} is not a number of bases (e.g. 3100000000 or 3.1G)")),
    }
}

/// `isoclr probe`, and the probes a training job runs when it ends. No `tasks` means those of the encoder's
/// run configuration. The synthetic default is found in (or made in) a run directory being probed, else
/// next to the report.
fn probe(
    checkpoint: &str,
    tasks: &[isoclr::probe::task::ProbeTask],
    out: &Path,
    positions_per_pass: usize,
    device: tch::Device,
    stop: Option<Shutdown>,
    no_baselines: bool,
) -> Result<()> {
    let data_dir = if Path::new(checkpoint).join("model.safetensors").is_file() {
        PathBuf::from(checkpoint)
    } else {
        out.to_owned()
    };
    let encoder = isoclr::probe::embed::Encoder::load(checkpoint, device)?;
    let mut tasks = if tasks.is_empty() {
        let configured = read_tasks(&encoder.config.probe.tasks)?;
        if configured.is_empty() {
            anyhow::bail!("no --task given and the run configuration of {checkpoint} lists no [probe] tasks");
        }
        configured
    } else {
        tasks.to_vec()
    };
    if no_baselines {
        for task in &mut tasks {
            task.baselines = isoclr::probe::task::Baselines::none();
        }
    }
    let tasks = &tasks;
    let options = isoclr::probe::runner::RunnerOptions {
        device,
        positions_per_pass,
        bootstrap: Default::default(),
        data_dir,
        random_seed: encoder.config.train.seed.wrapping_add(1),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop,
    };
    let report = isoclr::probe::runner::run_probes(&encoder, tasks, out, &options)?;
    for task in &report.tasks {
        for target in &task.targets {
            println!("{}", target.summary_line(&task.task.name));
        }
    }
    println!("probe report:     {}", out.join("report.md").display());
    Ok(())
}

/// The probes of `[probe] tasks` on a finished run's model (`out`), into `out/probes`.
fn probe_after_training(
    config: &Config,
    tasks: &[isoclr::probe::task::ProbeTask],
    out: &Path,
    shutdown: &Shutdown,
) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    if !out.join("model.safetensors").is_file() {
        anyhow::bail!("no model.safetensors in {} to probe", out.display());
    }
    let device = isoclr::train::run::select_device(config.train.device)?;
    let checkpoint = out.to_str().context("the output directory's name is not UTF-8")?;
    // The probes heed the training job's stop signals too.
    probe(
        checkpoint,
        tasks,
        &out.join("probes"),
        EMBED_POSITIONS_PER_PASS,
        device,
        Some(shutdown.clone()),
        false,
    )
    .context("the probes after training failed (the trained model is saved; re-run them with `isoclr probe`)")
}

/// `isoclr embed`: the embeddings of every transcript of a dataset, with their ids.
fn embed(args: &EncoderArgs, input: &Path, out: &Path, pooling: isoclr::config::Pooling) -> Result<()> {
    let encoder = isoclr::probe::embed::Encoder::load(&args.checkpoint, args.device()?)?;
    let positions_per_pass = args.positions_per_pass;
    let owned: Vec<isoclr::data::Transcript> = if input.is_dir() {
        Dataset::open(input)?.transcripts
    } else {
        let table = isoclr::data::table::TranscriptTable::read(input, &[])?;
        for note in &table.notes {
            eprintln!("note: {}: {note}", input.display());
        }
        table.rows.into_iter().map(|r| r.transcript).collect()
    };
    let transcripts: Vec<&isoclr::data::Transcript> = owned.iter().collect();
    let bar = indicatif::ProgressBar::new(transcripts.len() as u64);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let values = encoder.embed(&transcripts, positions_per_pass, pooling, Some(&bar))?;
    bar.finish_and_clear();
    let dim = encoder.dim(pooling);
    let written = if out.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) {
        let ids: Vec<&str> = transcripts.iter().map(|t| t.id.as_str()).collect();
        isoclr::probe::parquet::write_embeddings(out, &ids, &values, dim)
            .with_context(|| format!("cannot write {}", out.display()))?;
        out.display().to_string()
    } else {
        isoclr::probe::embed::write_npy(out, &values, transcripts.len(), dim)
            .with_context(|| format!("cannot write {}", out.display()))?;
        let ids_path = PathBuf::from(format!("{}.ids.txt", out.display()));
        let ids: String = transcripts.iter().map(|t| format!("{}\n", t.id)).collect();
        std::fs::write(&ids_path, ids).with_context(|| format!("cannot write {}", ids_path.display()))?;
        format!("{} and {}", out.display(), ids_path.display())
    };
    println!(
        "embedded {} transcripts ({dim}-d) with {}: {written}",
        transcripts.len(),
        encoder.source,
    );
    Ok(())
}

fn inspect(dataset: PathBuf, transcript: Option<String>, tracks: bool) -> Result<()> {
    let Some(id) = transcript else {
        // Opening checks every file against the manifest: a damaged dataset is not summarised as sound.
        let manifest = Dataset::open(&dataset)?.manifest;
        let mut summary = serde_json::to_value(&manifest)?;
        if let Some(obj) = summary.as_object_mut() {
            // The full list can hold thousands of entries; counts per reason are above it.
            obj.insert("dropped".into(), serde_json::json!(manifest.dropped.len()));
            obj.remove("files");
        }
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    };
    let data = Dataset::open(&dataset)?;
    let t = data
        .transcript(&id)
        .with_context(|| format!("{}: no transcript {id:?} in this dataset", dataset.display()))?;
    let group = &data.groups[t.group as usize].id;
    println!(
        "# {} gene {} group {group} length {} exons {} cds {}",
        t.id,
        t.gene_id,
        t.len,
        t.exon_ends.len(),
        t.cds.map_or("none".to_owned(), |(s, e)| format!("[{s}, {e})"))
    );
    if tracks {
        let bases = t.sequence();
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        use std::io::Write;
        writeln!(out, "pos\tbase\tA\tC\tG\tT\tcodon\tsplice")?;
        for (pos, row) in t.tracks().iter().enumerate() {
            let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            writeln!(out, "{pos}\t{}\t{}", char::from(bases[pos]), values.join("\t"))?;
        }
    }
    Ok(())
}

/// Prints the corpus a configuration trains on: per dataset, its groups, groups with several transcripts,
/// coding share, lengths, weight and share of every batch; then the corpus as a whole.
fn inspect_corpus(config: &Config) -> Result<()> {
    if config.data.path.is_none() && config.data.paths.is_empty() {
        anyhow::bail!("the configuration names no dataset: set data.path or data.paths");
    }
    let corpus = isoclr::data::resolve_dataset(&config.data, Path::new("."))?;
    let quotas = corpus
        .training_sampler(config.train.seed, config.train.batch_size)
        .map(|s| s.quotas())
        .unwrap_or_default();
    let held_out: std::collections::HashSet<u32> = corpus.held_out_groups().into_iter().collect();
    println!(
        "dataset\tgroups\tmulti_isoform_groups\ttranscripts\tcoding\tmedian_len\tmean_len\tmax_len\tweight\tper_batch\theld_out_groups"
    );
    let row = |name: &str, m: &isoclr::data::Manifest, weight: String, per_batch: String, held_out: usize| {
        println!(
            "{name}\t{}\t{}\t{}\t{:.3}\t{}\t{:.0}\t{}\t{weight}\t{per_batch}\t{held_out}",
            m.groups,
            m.groups_with_multiple,
            m.transcripts,
            m.coding_transcripts as f64 / m.transcripts.max(1) as f64,
            m.lengths.median,
            m.lengths.mean,
            m.lengths.max,
        );
    };
    for (i, part) in corpus.parts.iter().enumerate() {
        row(
            &part.name,
            &part.manifest,
            part.weight.to_string(),
            quotas.get(i).map_or("-".to_owned(), |q| q.to_string()),
            part.groups.iter().filter(|g| held_out.contains(g)).count(),
        );
    }
    let m = &corpus.manifest;
    row(
        "corpus",
        m,
        "-".to_owned(),
        config.train.batch_size.to_string(),
        held_out.len(),
    );
    for note in &m.notes {
        println!("# {note}");
    }
    println!("# fingerprint {}", m.fingerprint);
    Ok(())
}

use isoclr::launch::EXIT_RESUMABLE;

/// Fails unless `checkpoint.url` holds a complete checkpoint (for `train --resume`).
fn require_checkpoint(config: &Config) -> Result<()> {
    let c = &config.checkpoint;
    let url = c
        .url
        .as_deref()
        .context("--resume needs checkpoint.url: there is nothing to resume from")?;
    let store = isoclr::ckpt::CheckpointStore::open(url, c.store_options())?;
    if store.list_complete()?.is_empty() {
        anyhow::bail!("--resume: {url} holds no complete checkpoint");
    }
    Ok(())
}

/// Ends the process with the resumable status after a stop signal, saying so.
fn exit_resumable(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(EXIT_RESUMABLE);
}

/// Ends a job that a signal suspended with the resumable status; returns for one that finished.
fn exit_if_suspended(outcome: &isoclr::coord::CoordinatorOutcome) {
    if let Some(step) = outcome.suspended_after {
        exit_resumable(&format!(
            "job suspended by a signal after step {step}; it resumes from that checkpoint when started again"
        ));
    }
}

/// Ends the process with the resumable status when a coordinator error is a signal before any step.
fn exit_if_interrupted<T>(result: Result<T, isoclr::coord::CoordError>) -> Result<T> {
    match result {
        Err(e @ isoclr::coord::CoordError::Interrupted) => exit_resumable(&e.to_string()),
        other => Ok(other?),
    }
}

/// The local address this host uses to reach `coordinator` (host:port), so ring peers can reach us too.
fn local_ip_towards(coordinator: &str) -> Result<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let target = coordinator
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve coordinator address {coordinator}"))?
        .next()
        .with_context(|| format!("coordinator address {coordinator} resolves to nothing"))?;
    // A UDP "connection" sends nothing; it only asks the kernel which source address it would route from.
    let probe = std::net::UdpSocket::bind((if target.is_ipv4() { "0.0.0.0" } else { "::" }, 0))?;
    probe.connect(target)?;
    Ok(probe.local_addr()?.ip())
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // Output piped into a reader that stopped early (`| head`) is not this program failing.
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            // The message and its causes, as anyhow prints them, but never a backtrace: these are errors
            // in what the user gave, not in the program, even when RUST_BACKTRACE is set.
            let mut text = format!("Error: {e}");
            // A cause whose text its wrapper already repeats ("task t: <cause>") is not said twice.
            let causes: Vec<String> = (e.chain().skip(1).map(|c| c.to_string()))
                .filter(|cause| !e.to_string().contains(cause.as_str()))
                .collect();
            if !causes.is_empty() {
                text.push_str("\n\nCaused by:");
                for cause in causes {
                    text.push_str(&format!("\n    {cause}"));
                }
            }
            eprintln!("{text}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `prep --cds`: where coding regions come from.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CdsArg {
    /// Only the annotation's (or the table's) CDS.
    Annotation,
    /// The annotated CDS, else the longest ATG…stop ORF.
    LongestOrf,
}

/// `prep --unstranded`: transcripts of unknown strand.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum UnstrandedArg {
    /// Keep as given.
    Keep,
    /// Leave out, counted.
    Drop,
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    // Loading libtorch's CUDA backend touches some 100 MB of library pages; the data commands never call
    // tch, so they skip it (docs/PERFORMANCE.md, "Prep at human scale"). Parsing the command line
    // calls no tch either, so the backend is still loaded before any tch call.
    let cuda_loaded = cli.command.uses_torch() && isoclr::device::init();
    init_tracing();
    tracing::debug!(cuda_loaded, "libtorch initialised");
    // The one place signal handlers are installed; everything that stops at a boundary is handed this.
    let shutdown = match cli.command.heeds_signals() {
        Some(interrupt_cancels) => Shutdown::on_signals(interrupt_cancels).context("cannot watch signals")?,
        None => Shutdown::new(),
    };
    match cli.command {
        Command::Synth {
            out,
            genes,
            seed,
            length_scale,
            isoforms_per_gene,
            genome_size,
        } => {
            let s = synth(&SynthOptions {
                out: out.clone(),
                genes,
                seed,
                length_scale,
                isoforms_per_gene,
                genome_size,
            })?;
            println!(
                "wrote {} genes, {} transcripts ({} over the length limit, {} paralog families) to {}",
                s.genes,
                s.transcripts,
                s.over_length,
                s.families,
                out.display()
            );
        }
        Command::Prep {
            gtf,
            genome,
            transcripts,
            table,
            homology,
            out,
            max_len,
            cds,
            min_orf_codons,
            unstranded,
        } => {
            let input = match (table, gtf, genome, transcripts) {
                (Some(table), ..) => PrepInput::Table(table),
                (None, Some(annotation), Some(genome), _) => PrepInput::Genome { annotation, genome },
                (None, Some(annotation), None, Some(transcripts)) => PrepInput::Transcripts {
                    annotation,
                    transcripts,
                },
                _ => anyhow::bail!("give --table, or --gtf with --genome or --transcripts"),
            };
            let m = prep(&PrepOptions {
                homology,
                max_len,
                cds: match cds {
                    CdsArg::Annotation => CdsSource::Annotation,
                    CdsArg::LongestOrf => CdsSource::LongestOrf {
                        min_codons: min_orf_codons,
                    },
                },
                unstranded: match unstranded {
                    UnstrandedArg::Keep => Unstranded::Keep,
                    UnstrandedArg::Drop => Unstranded::Drop,
                },
                ..PrepOptions::new(input, out.clone())
            })?;
            println!(
                "wrote {} groups ({} with ≥2 transcripts), {} transcripts, {} dropped, to {} (fingerprint {})",
                m.groups,
                m.groups_with_multiple,
                m.transcripts,
                m.dropped.len(),
                out.display(),
                &m.fingerprint[..16]
            );
        }
        Command::Inspect {
            dataset,
            layers,
            transcript,
            tracks,
        } => match dataset {
            Some(dataset) => inspect(dataset, transcript, tracks)?,
            None => inspect_corpus(&layers.load()?)?,
        },
        Command::Embed {
            encoder,
            input,
            out,
            pooling,
        } => embed(&encoder, &input, &out, pooling)?,
        Command::Probe {
            encoder,
            tasks,
            out,
            no_baselines,
        } => {
            let checkpoint = &encoder.checkpoint;
            let tasks = read_tasks(&tasks)?;
            probe(
                checkpoint,
                &tasks,
                &out,
                encoder.positions_per_pass,
                encoder.device()?,
                None,
                no_baselines,
            )?
        }
        Command::Config { layers, out } => {
            let config = layers.load()?;
            read_tasks(&config.probe.tasks)?;
            let toml = config.to_toml();
            match out {
                Some(path) => {
                    std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?
                }
                None => print!("{toml}"),
            }
        }
        Command::Train {
            layers,
            out,
            workers,
            resume,
        } => {
            let config = layers.load()?;
            if resume {
                require_checkpoint(&config)?;
            }
            let probe_tasks = read_tasks(&config.probe.tasks)?;
            let gpus = tch::Cuda::device_count().max(0) as usize;
            match workers.or((gpus > 1).then_some(gpus)) {
                Some(n) => {
                    let me = std::env::current_exe().context("cannot locate the isoclr binary")?;
                    let outcome = match isoclr::launch::run_local_job(&config, &out, n, me, &shutdown) {
                        Err(isoclr::launch::LaunchError::Coordinator(e)) => exit_if_interrupted(Err(e))?,
                        // A re-run of a finished job: nothing to do, and nothing failed.
                        Err(e @ isoclr::launch::LaunchError::AlreadyComplete { .. }) => {
                            println!("{e}");
                            return Ok(());
                        }
                        other => other?,
                    };
                    exit_if_suspended(&outcome);
                    println!(
                        "trained {} steps on {n} workers in {:.1} s, {:.0} sequences/s",
                        outcome.steps,
                        outcome.elapsed.as_secs_f64(),
                        outcome.seq_per_s
                    );
                    println!("encoder and head: {}", out.join("model.safetensors").display());
                    println!("metrics:          {}", outcome.metrics_path.display());
                }
                None => {
                    let s = match isoclr::train::train(&config, &out, &shutdown) {
                        Err(e @ isoclr::train::TrainError::Interrupted { .. }) => exit_resumable(&e.to_string()),
                        // A re-run of a finished job: nothing to do, and nothing failed.
                        Err(e @ isoclr::train::TrainError::AlreadyComplete { .. }) => {
                            println!("{e}");
                            return Ok(());
                        }
                        other => other?,
                    };
                    println!(
                        "trained {} steps: loss {:.4} → {:.4}, contrastive accuracy {:.3} (chance {:.3}), {:.0} sequences/s",
                        s.steps,
                        s.first_loss,
                        s.last_loss,
                        s.last_accuracy,
                        1.0 / config.train.batch_size as f64,
                        s.seq_per_s
                    );
                    println!("encoder and head: {}", s.model_path.display());
                    println!("metrics:          {}", s.metrics_path.display());
                    println!("dataset:          {}", s.dataset_dir.display());
                }
            }
            println!("configuration:    {}", out.join("config.toml").display());
            probe_after_training(&config, &probe_tasks, &out, &shutdown)?;
        }
        Command::Coordinator {
            layers,
            out,
            workers,
            token_file,
            addr_file,
        } => {
            let config = layers.load()?;
            let probe_tasks = read_tasks(&config.probe.tasks)?;
            let token = Token::load(token_file.as_deref())?;
            std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
            std::fs::write(out.join("config.toml"), config.to_toml())?;
            let dataset = Arc::new(isoclr::data::resolve_dataset(&config.data, &out)?);
            let start_step = match isoclr::launch::resume_step(&config, &dataset) {
                // A requeued job that had already finished: nothing to do, and nothing failed.
                Err(e @ isoclr::launch::LaunchError::AlreadyComplete { .. }) => {
                    println!("{e}");
                    return Ok(());
                }
                other => other?,
            };
            let mut options = CoordinatorOptions::new(config, dataset, workers, token, out);
            options.addr_file = addr_file;
            options.start_step = start_step;
            let outcome = exit_if_interrupted(run_coordinator(options, shutdown))?;
            exit_if_suspended(&outcome);
            println!(
                "job finished: {} steps, {:.0} sequences/s",
                outcome.steps, outcome.seq_per_s
            );
            if !probe_tasks.is_empty() {
                // Rank 0 writes the model after the last step, possibly after this returns: the batch script
                // runs the probes once every worker has exited (slurm/isoclr.sbatch).
                println!("probe tasks run from the job script once every worker has exited");
            }
        }
        Command::Worker {
            coordinator,
            local_rank,
            rank,
            token_file,
            config,
            ring_bind,
        } => {
            let token = Token::load(token_file.as_deref())?;
            let dist = Config::load(config.as_deref(), &[])?.dist;
            let tls = ClientTls::from_config(&dist, &coordinator)?;
            let ring_bind = match ring_bind {
                Some(addr) => addr,
                None => std::net::SocketAddr::new(local_ip_towards(&coordinator)?, 0),
            };
            let options = WorkerOptions {
                coordinator,
                token,
                tls,
                local_rank,
                requested_rank: rank,
                ring_bind,
                rpc_timeout: Duration::from_secs_f64(dist.rpc_timeout_s),
                rendezvous_timeout: Duration::from_secs_f64(dist.rendezvous_timeout_s),
            };
            match run_worker(options, &shutdown) {
                Err(e @ isoclr::train::TrainError::Interrupted { .. }) => exit_resumable(&e.to_string()),
                other => other?,
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_bases;

    #[test]
    fn bases_take_plain_integers_and_k_m_g_suffixes() {
        assert_eq!(parse_bases("3100000000"), Ok(3_100_000_000));
        assert_eq!(parse_bases("3.1G"), Ok(3_100_000_000));
        assert_eq!(parse_bases("250M"), Ok(250_000_000));
        assert_eq!(parse_bases("1.5k"), Ok(1_500));
        for bad in ["", "G", "-1M", "3.1T", "1e20"] {
            assert!(parse_bases(bad).is_err(), "{bad:?}");
        }
    }
}
