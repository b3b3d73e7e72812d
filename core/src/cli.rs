//! The `isoclr` command line: every subcommand's arguments, as clap parses them. Both binaries parse it:
//! `isoclr` runs the tensor-free commands and hands the others to `isoclr-torch`, which parses the same
//! line again. No work is done here.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigError};
use crate::data::dataset::DEFAULT_MAX_LEN;

/// Contrastive pre-training of mature-RNA encoders (IsoCLR).
#[derive(Debug, Parser)]
#[command(name = "isoclr", version, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Embed transcripts with a trained, frozen encoder: a `.npy` matrix (one row per transcript, float32)
    /// with the transcript ids in row order next to it (`FILE.ids.txt`), or a Parquet file (`id`, `e0`, …).
    Embed(EmbedArgs),
    /// Run linear-probe tasks on a trained, frozen encoder, with the random-weight, k-mer and from-scratch
    /// baselines and low-data curves; writes report.json, report.md and PNG plots into --out.
    Probe(ProbeArgs),
    /// Check a run configuration and print it resolved (defaults, file, ISOCLR_* variables, --set), as TOML.
    Config(ConfigCommandArgs),
    /// Write the synthetic default transcriptome (genome FASTA, GTF, transcript FASTA, homology table, labels).
    Synth(SynthArgs),
    /// Build a dataset directory from an annotation and a genome or transcript FASTA.
    Prep(PrepArgs),
    /// Print a dataset's counts, or one transcript's 6-track encoding.
    Inspect(InspectArgs),
    /// Train an encoder: in this process, or with `--workers N` as a coordinator plus N worker processes
    /// on this machine (the default when there are several GPUs: one worker per GPU).
    Train(TrainArgs),
    /// Run the coordinator of a multi-process job: owns the dataset and sampler, streams each worker its
    /// shard of every global batch, decides at step boundaries, writes metrics.jsonl.
    Coordinator(CoordinatorArgs),
    /// Run one worker: register with the coordinator, train on the shards it streams.
    Worker(WorkerArgs),
}

/// The arguments of `isoclr embed`.
#[derive(Debug, clap::Args)]
pub struct EmbedArgs {
    /// A run's output directory (model.safetensors + config.toml) or a checkpoint URL or directory.
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Transcripts: a dataset made by `isoclr prep` (a directory), or a table with `id` and `sequence`
    /// and optionally `cds_start`, `cds_end`, `exon_ends` (TSV, CSV, optionally .gz, or Parquet).
    #[arg(long)]
    pub input: PathBuf,
    /// The file to write: `.parquet` for Parquet, anything else for `.npy` plus `FILE.ids.txt`.
    #[arg(long)]
    pub out: PathBuf,
    /// Pooling: mean (one mean over the transcript, as in training), or regions (that mean, then the
    /// means over the 5'UTR, CDS and 3'UTR: four times as wide).
    #[arg(long, value_enum, default_value = "mean")]
    pub pooling: crate::config::Pooling,
}

/// The arguments of `isoclr probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub encoder: EncoderArgs,
    /// Task files (TOML, see configs/probes/); repeat for several. Default: the `[probe] tasks` of the
    /// encoder's own run configuration.
    #[arg(long = "task")]
    pub tasks: Vec<PathBuf>,
    /// Report directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Probe the encoder alone, without the random-weight, k-mer and from-scratch baselines: for comparing
    /// encoders with each other (the baselines do not depend on how the encoder was trained).
    #[arg(long)]
    pub no_baselines: bool,
}

/// The arguments of `isoclr config`.
#[derive(Debug, clap::Args)]
pub struct ConfigCommandArgs {
    #[command(flatten)]
    pub layers: ConfigArgs,
    /// Write it to this file instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// The arguments of `isoclr synth`.
#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of genes.
    #[arg(long, default_value_t = 600)]
    pub genes: usize,
    /// Random seed; the same seed gives the same files.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Transcript length scale (1.0 = realistic mRNA lengths).
    #[arg(long, default_value_t = 1.0)]
    pub length_scale: f64,
    /// Mean transcripts per gene (1-20; default: a fixed mix of 1-6, mean about 2.6).
    #[arg(long)]
    pub isoforms_per_gene: Option<f64>,
    /// Genome size in bases (suffix k, M or G accepted, e.g. 3.1G): switches to the human-scale
    /// layout, chr1..chr22, chrX, chrY in GRCh38's proportions, written as it is generated. Human
    /// scale: `--genome-size 3.1G --genes 62000 --isoforms-per-gene 4` (about 250 k transcripts).
    #[arg(long, value_parser = parse_bases)]
    pub genome_size: Option<u64>,
}

/// The arguments of `isoclr prep`.
#[derive(Debug, clap::Args)]
pub struct PrepArgs {
    /// GTF or GFF3 annotation (gzip accepted), with --genome or --transcripts.
    #[arg(long, required_unless_present = "table", conflicts_with = "table")]
    pub gtf: Option<PathBuf>,
    /// Genome FASTA: transcripts are spliced from it using the annotation's exons.
    #[arg(long, conflicts_with = "transcripts", required_unless_present_any = ["transcripts", "table"])]
    pub genome: Option<PathBuf>,
    /// Transcript FASTA whose record names are the annotation's transcript ids.
    #[arg(long)]
    pub transcripts: Option<PathBuf>,
    /// A transcript table instead of an annotation: TSV/CSV (gzip accepted) or Parquet with columns `id`,
    /// `sequence`, optional `gene`, `group`, `cds_start`, `cds_end`, `exon_ends` (the probe-table format).
    #[arg(long, conflicts_with_all = ["genome", "transcripts"])]
    pub table: Option<PathBuf>,
    /// Homology table (TSV gene_id, group_id): paralogs of a group become one contrastive group.
    #[arg(long)]
    pub homology: Option<PathBuf>,
    /// Output dataset directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Longer transcripts are dropped (and counted in the manifest).
    #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
    pub max_len: u32,
    /// Coding regions: `annotation` (only what the input annotates), or `longest-orf` (the longest
    /// ATG…stop ORF on the forward strand where the input has no CDS, as TransDecoder predicts them).
    #[arg(long, value_enum, default_value = "annotation")]
    pub cds: CdsArg,
    /// With --cds longest-orf: the shortest ORF kept, in codons (ATG counted, stop not).
    #[arg(long, default_value_t = crate::data::orf::DEFAULT_MIN_CODONS)]
    pub min_orf_codons: u32,
    /// Transcripts of unknown strand (`.`): `keep` them as given (ascending coordinates), or `drop` them
    /// (counted in the manifest).
    #[arg(long, value_enum, default_value = "keep")]
    pub unstranded: UnstrandedArg,
}

/// The arguments of `isoclr inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Dataset directory made by `isoclr prep`; without it, the corpus of `--config` (its `[data]`:
    /// datasets, weights, orthology, held-out share) as a training run would draw from it.
    #[arg(required_unless_present = "config")]
    pub dataset: Option<PathBuf>,
    #[command(flatten)]
    pub layers: ConfigArgs,
    /// Transcript id to show.
    #[arg(long)]
    pub transcript: Option<String>,
    /// Print the transcript's encoding: pos, base, then the six track values, tab-separated.
    #[arg(long, requires = "transcript")]
    pub tracks: bool,
}

/// The arguments of `isoclr train`.
#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub layers: ConfigArgs,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Worker processes; the global batch (train.batch_size) is split evenly among them.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Insist on resuming: fail unless checkpoint.url holds a checkpoint. (Without it a run resumes
    /// from the newest valid checkpoint when there is one, and starts afresh otherwise.)
    #[arg(long)]
    pub resume: bool,
}

/// The arguments of `isoclr coordinator`.
#[derive(Debug, clap::Args)]
pub struct CoordinatorArgs {
    #[command(flatten)]
    pub layers: ConfigArgs,
    /// Output directory (metrics; rank 0 writes the weights here).
    #[arg(long)]
    pub out: PathBuf,
    /// Number of workers that will register.
    #[arg(long)]
    pub workers: usize,
    /// File holding the job's secret token; without it, the ISOCLR_TOKEN environment variable.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Write the bound address (host:port) here once listening.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
}

/// The arguments of `isoclr worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The coordinator's host:port.
    #[arg(long)]
    pub coordinator: String,
    /// This worker's index on its host (its GPU).
    #[arg(long, default_value_t = 0)]
    pub local_rank: u32,
    /// Ask for this rank (e.g. from SLURM_PROCID); otherwise the coordinator assigns one.
    #[arg(long)]
    pub rank: Option<u32>,
    /// File holding the job's secret token; without it, the ISOCLR_TOKEN environment variable.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Configuration file, read only for TLS settings (dist.tls_ca / dist.tls_cert).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address for this worker's collective-ring listener (default: this host's address towards the
    /// coordinator, any port).
    #[arg(long)]
    pub ring_bind: Option<std::net::SocketAddr>,
}

/// The configuration file and `--set` overrides shared by the commands that read a run configuration.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// TOML configuration file.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Override a configuration key, e.g. `--set train.lr=0.001` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
}

/// Positions (sequences × padded length) per encoder pass when embedding: 64 full-length transcripts.
pub const EMBED_POSITIONS_PER_PASS: usize = 64 * 12_288;

/// A trained encoder and where it runs, shared by the commands that embed (`embed`, `probe`).
#[derive(Debug, clap::Args)]
pub struct EncoderArgs {
    /// A run's output directory (model.safetensors + config.toml) or a checkpoint URL or directory.
    #[arg(long)]
    pub checkpoint: String,
    /// Positions (sequences × padded length) per encoder pass.
    #[arg(long, default_value_t = EMBED_POSITIONS_PER_PASS)]
    pub positions_per_pass: usize,
    /// Device: auto (a GPU when there is one), cpu or cuda.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

impl ConfigArgs {
    /// Loads the layered configuration.
    pub fn load(&self) -> Result<Config, ConfigError> {
        Config::load(self.config.as_deref(), &self.overrides)
    }
}

/// `prep --cds`: where coding regions come from.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CdsArg {
    /// Only the annotation's (or the table's) CDS.
    Annotation,
    /// The annotated CDS, else the longest ATG…stop ORF.
    LongestOrf,
}

/// `prep --unstranded`: transcripts of unknown strand.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum UnstrandedArg {
    /// Keep as given.
    Keep,
    /// Leave out, counted.
    Drop,
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
