//! The `isoclr` command: synthesise, prepare and inspect data; train.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use isoclr::config::Config;
use isoclr::data::Dataset;
use isoclr::data::dataset::DEFAULT_MAX_LEN;
use isoclr::data::prep::{PrepOptions, prep};
use isoclr::data::synth::{SynthOptions, synth};

/// Contrastive pre-training of mature-RNA encoders (IsoCLR).
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    },
    /// Build a dataset directory from an annotation and a genome or transcript FASTA.
    Prep {
        /// GTF or GFF3 annotation (gzip accepted).
        #[arg(long)]
        gtf: PathBuf,
        /// Genome FASTA: transcripts are spliced from it using the annotation's exons.
        #[arg(long, conflicts_with = "transcripts", required_unless_present = "transcripts")]
        genome: Option<PathBuf>,
        /// Transcript FASTA whose record names are the annotation's transcript ids.
        #[arg(long)]
        transcripts: Option<PathBuf>,
        /// Homology table (TSV gene_id, group_id): paralogs of a group become one contrastive group.
        #[arg(long)]
        homology: Option<PathBuf>,
        /// Output dataset directory.
        #[arg(long)]
        out: PathBuf,
        /// Longer transcripts are dropped (and counted in the manifest).
        #[arg(long, default_value_t = DEFAULT_MAX_LEN)]
        max_len: u32,
    },
    /// Print a dataset's counts, or one transcript's 6-track encoding.
    Inspect {
        /// Dataset directory made by `isoclr prep`.
        dataset: PathBuf,
        /// Transcript id to show.
        #[arg(long)]
        transcript: Option<String>,
        /// Print the transcript's encoding: pos, base, then the six track values, tab-separated.
        #[arg(long, requires = "transcript")]
        tracks: bool,
    },
    /// Train an encoder in this process (CPU or one GPU).
    Train {
        /// TOML configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Override a configuration key, e.g. `--set train.lr=0.001` (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        overrides: Vec<String>,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
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

fn inspect(dataset: PathBuf, transcript: Option<String>, tracks: bool) -> Result<()> {
    let Some(id) = transcript else {
        let manifest = Dataset::read_manifest(&dataset)?;
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

fn main() -> Result<()> {
    let cuda_loaded = isoclr::device::init();
    let cli = Cli::parse();
    init_tracing();
    tracing::debug!(cuda_loaded, "libtorch initialised");
    match cli.command {
        Command::Synth {
            out,
            genes,
            seed,
            length_scale,
        } => {
            let s = synth(&SynthOptions {
                out: out.clone(),
                genes,
                seed,
                length_scale,
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
            homology,
            out,
            max_len,
        } => {
            let m = prep(&PrepOptions {
                gtf,
                genome,
                transcripts,
                homology,
                out: out.clone(),
                max_len,
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
            transcript,
            tracks,
        } => inspect(dataset, transcript, tracks)?,
        Command::Train { config, overrides, out } => {
            let config = Config::load(config.as_deref(), &overrides)?;
            let s = isoclr::train::train(&config, &out)?;
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
            println!("configuration:    {}", out.join("config.toml").display());
            println!("dataset:          {}", s.dataset_dir.display());
        }
    }
    Ok(())
}
