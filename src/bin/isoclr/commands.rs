//! The commands that run here, without libtorch: one function per subcommand turns its arguments into the
//! library's options, runs it, and prints what came of it. The work itself is the library's. The others
//! run in `isoclr-torch`, which this process becomes (`run_in_torch_binary`).

use std::os::unix::process::CommandExt;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::process::{exit_if_interrupted, exit_if_suspended, finished_before};
use isoclr_core::cli::{CdsArg, ConfigCommandArgs, CoordinatorArgs, InspectArgs, PrepArgs, SynthArgs, UnstrandedArg};
use isoclr_core::coord::{CoordinatorOptions, run_coordinator};
use isoclr_core::data::prep::{CdsSource, PrepInput, PrepOptions, Unstranded};
use isoclr_core::data::synth::SynthOptions;
use isoclr_core::launch::LaunchError;
use isoclr_core::probe::task::ProbeTask;
use isoclr_core::run_dir::RunDir;
use isoclr_core::shutdown::Shutdown;
use isoclr_core::worker::Token;

/// The binary that runs the commands needing libtorch, installed beside this one.
pub const TORCH_BINARY: &str = "isoclr-torch";

/// Becomes `isoclr-torch` with this process's command line (`execv`): the same process id, so signals
/// from Slurm or the launcher, and the exit status, are the training process's own. Returns only when
/// `isoclr-torch` cannot be started.
pub fn run_in_torch_binary() -> Result<()> {
    let me = std::env::current_exe().context("cannot locate the isoclr binary")?;
    let torch = me.with_file_name(TORCH_BINARY);
    let mut args = std::env::args_os();
    let name = args.next().unwrap_or_else(|| "isoclr".into());
    let error = std::process::Command::new(&torch).arg0(name).args(args).exec();
    Err(error).with_context(|| {
        format!(
            "cannot run {}: train, worker, embed and probe run libtorch in {TORCH_BINARY}, installed beside isoclr",
            torch.display()
        )
    })
}

/// `isoclr synth`.
pub fn synth(args: SynthArgs) -> Result<()> {
    let s = isoclr_core::data::synth::synth(&SynthOptions {
        out: args.out.clone(),
        genes: args.genes,
        seed: args.seed,
        length_scale: args.length_scale,
        isoforms_per_gene: args.isoforms_per_gene,
        genome_size: args.genome_size,
    })?;
    println!(
        "wrote {} genes, {} transcripts ({} over the length limit, {} paralog families) to {}",
        s.genes,
        s.transcripts,
        s.over_length,
        s.families,
        args.out.display()
    );
    Ok(())
}

/// `isoclr prep`.
pub fn prep(args: PrepArgs) -> Result<()> {
    let input = match (args.table, args.gtf, args.genome, args.transcripts) {
        (Some(table), ..) => PrepInput::Table(table),
        (None, Some(annotation), Some(genome), _) => PrepInput::Genome { annotation, genome },
        (None, Some(annotation), None, Some(transcripts)) => PrepInput::Transcripts {
            annotation,
            transcripts,
        },
        _ => anyhow::bail!("give --table, or --gtf with --genome or --transcripts"),
    };
    let m = isoclr_core::data::prep::prep(&PrepOptions {
        homology: args.homology,
        max_len: args.max_len,
        cds: match args.cds {
            CdsArg::Annotation => CdsSource::Annotation,
            CdsArg::LongestOrf => CdsSource::LongestOrf {
                min_codons: args.min_orf_codons,
            },
        },
        unstranded: match args.unstranded {
            UnstrandedArg::Keep => Unstranded::Keep,
            UnstrandedArg::Drop => Unstranded::Drop,
        },
        ..PrepOptions::new(input, args.out.clone())
    })?;
    println!(
        "wrote {} groups ({} with ≥2 transcripts), {} transcripts, {} dropped, to {} (fingerprint {})",
        m.groups,
        m.groups_with_multiple,
        m.transcripts,
        m.dropped.len(),
        args.out.display(),
        &m.fingerprint[..16]
    );
    Ok(())
}

/// `isoclr inspect`.
pub fn inspect(args: InspectArgs) -> Result<()> {
    use isoclr_core::data::inspect::{write_corpus, write_summary, write_transcript};
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match (&args.dataset, &args.transcript) {
        (Some(dir), Some(id)) => write_transcript(dir, id, args.tracks, &mut out)?,
        (Some(dir), None) => write_summary(dir, &mut out)?,
        (None, _) => write_corpus(&args.layers.load()?, &mut out)?,
    }
    std::io::Write::flush(&mut out)?;
    Ok(())
}

/// `isoclr config`.
pub fn config(args: ConfigCommandArgs) -> Result<()> {
    let config = args.layers.load()?;
    ProbeTask::read_all(&config.probe.tasks)?;
    let toml = config.to_toml();
    match args.out {
        Some(path) => std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{toml}"),
    }
    Ok(())
}

/// `isoclr coordinator`.
pub fn coordinator(args: CoordinatorArgs, shutdown: &Shutdown) -> Result<()> {
    let config = args.layers.load()?;
    let probe_tasks = ProbeTask::read_all(&config.probe.tasks)?;
    let token = Token::load(args.token_file.as_deref())?;
    let out = args.out;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(RunDir::new(&out).config(), config.to_toml())?;
    let dataset = Arc::new(isoclr_core::data::resolve_dataset(&config.data, &out)?);
    let start_step = match isoclr_core::launch::resume_step(&config, &dataset) {
        Err(e @ LaunchError::AlreadyComplete { .. }) => return finished_before(&e),
        other => other?,
    };
    let mut options = CoordinatorOptions::new(config, dataset, args.workers, token, out);
    options.addr_file = args.addr_file;
    options.start_step = start_step;
    let outcome = exit_if_interrupted(run_coordinator(options, shutdown.clone()))?;
    exit_if_suspended(&outcome);
    println!(
        "job finished: {} steps, {:.0} sequences/s",
        outcome.steps, outcome.seq_per_s
    );
    if !probe_tasks.is_empty() {
        // Rank 0 writes the model after the last step, possibly after this returns: the batch script runs
        // the probes once every worker has exited (slurm/isoclr.sbatch).
        println!("probe tasks run from the job script once every worker has exited");
    }
    Ok(())
}
