//! One function per subcommand: turns its arguments into the library's options, runs it, prints what
//! came of it. The work itself is the library's.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::args::{
    CdsArg, ConfigCommandArgs, CoordinatorArgs, EMBED_POSITIONS_PER_PASS, EmbedArgs, InspectArgs, PrepArgs, ProbeArgs,
    SynthArgs, TrainArgs, UnstrandedArg, WorkerArgs,
};
use isoclr::config::Config;
use isoclr::coord::{CoordError, CoordinatorOptions, CoordinatorOutcome, run_coordinator};
use isoclr::data::prep::{CdsSource, PrepInput, PrepOptions, Unstranded};
use isoclr::data::synth::SynthOptions;
use isoclr::launch::{EXIT_RESUMABLE, LaunchError};
use isoclr::probe::task::ProbeTask;
use isoclr::run_dir::RunDir;
use isoclr::shutdown::Shutdown;
use isoclr::train::TrainError;
use isoclr::train::worker_loop::{WorkerOptions, run_worker};
use isoclr::worker::{ClientTls, Token};

/// `isoclr synth`.
pub fn synth(args: SynthArgs) -> Result<()> {
    let s = isoclr::data::synth::synth(&SynthOptions {
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
    let m = isoclr::data::prep::prep(&PrepOptions {
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
    use isoclr::data::inspect::{write_corpus, write_summary, write_transcript};
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
    read_tasks(&config.probe.tasks)?;
    let toml = config.to_toml();
    match args.out {
        Some(path) => std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?,
        None => print!("{toml}"),
    }
    Ok(())
}

/// `isoclr embed`.
pub fn embed(args: EmbedArgs) -> Result<()> {
    let encoder = isoclr::probe::embed::Encoder::load(&args.encoder.checkpoint, args.encoder.device()?)?;
    let (transcripts, notes) = isoclr::probe::embed::read_transcripts(&args.input)?;
    for note in &notes {
        eprintln!("note: {}: {note}", args.input.display());
    }
    let transcripts: Vec<&isoclr::data::Transcript> = transcripts.iter().collect();
    let bar = indicatif::ProgressBar::new(transcripts.len() as u64);
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let positions = args.encoder.positions_per_pass;
    let values = encoder.embed(&transcripts, positions, args.pooling, Some(&bar))?;
    bar.finish_and_clear();
    let dim = encoder.dim(args.pooling);
    let ids: Vec<&str> = transcripts.iter().map(|t| t.id.as_str()).collect();
    let written = isoclr::probe::embed::write_embeddings(&args.out, &ids, &values, dim)?;
    let written: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    println!(
        "embedded {} transcripts ({dim}-d) with {}: {}",
        transcripts.len(),
        encoder.source,
        written.join(" and ")
    );
    Ok(())
}

/// `isoclr probe`.
pub fn probe(args: ProbeArgs) -> Result<()> {
    let tasks = read_tasks(&args.tasks)?;
    let encoder = &args.encoder;
    let device = encoder.device()?;
    run_probes(
        &encoder.checkpoint,
        &tasks,
        &args.out,
        encoder.positions_per_pass,
        device,
        None,
        args.no_baselines,
    )
}

/// `isoclr train`.
pub fn train(args: TrainArgs, shutdown: &Shutdown) -> Result<()> {
    let TrainArgs {
        layers,
        out,
        workers,
        resume,
    } = args;
    let config = layers.load()?;
    if resume {
        require_checkpoint(&config)?;
    }
    let probe_tasks = read_tasks(&config.probe.tasks)?;
    let gpus = isoclr::device::gpu_count();
    match workers.or((gpus > 1).then_some(gpus)) {
        Some(n) => {
            let me = std::env::current_exe().context("cannot locate the isoclr binary")?;
            let outcome = match isoclr::launch::run_local_job(&config, &out, n, me, shutdown) {
                Err(LaunchError::Coordinator(e)) => exit_if_interrupted(Err(e))?,
                Err(e @ LaunchError::AlreadyComplete { .. }) => return finished_before(&e),
                other => other?,
            };
            exit_if_suspended(&outcome);
            let seconds = outcome.elapsed.as_secs_f64();
            let (steps, seq_per_s) = (outcome.steps, outcome.seq_per_s);
            println!("trained {steps} steps on {n} workers in {seconds:.1} s, {seq_per_s:.0} sequences/s");
            println!("encoder and head: {}", RunDir::new(&out).model().display());
            println!("metrics:          {}", outcome.metrics_path.display());
        }
        None => {
            let s = match isoclr::train::train(&config, &out, shutdown) {
                Err(e @ TrainError::Interrupted { .. }) => exit_resumable(&e.to_string()),
                Err(e @ TrainError::AlreadyComplete { .. }) => return finished_before(&e),
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
    println!("configuration:    {}", RunDir::new(&out).config().display());
    probe_after_training(&config, &probe_tasks, &out, shutdown)
}

/// `isoclr coordinator`.
pub fn coordinator(args: CoordinatorArgs, shutdown: &Shutdown) -> Result<()> {
    let config = args.layers.load()?;
    let probe_tasks = read_tasks(&config.probe.tasks)?;
    let token = Token::load(args.token_file.as_deref())?;
    let out = args.out;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    std::fs::write(RunDir::new(&out).config(), config.to_toml())?;
    let dataset = Arc::new(isoclr::data::resolve_dataset(&config.data, &out)?);
    let start_step = match isoclr::launch::resume_step(&config, &dataset) {
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

/// `isoclr worker`.
pub fn worker(args: WorkerArgs, shutdown: &Shutdown) -> Result<()> {
    let token = Token::load(args.token_file.as_deref())?;
    let dist = Config::load(args.config.as_deref(), &[])?.dist;
    let tls = ClientTls::from_config(&dist, &args.coordinator)?;
    let ring_bind = match args.ring_bind {
        Some(addr) => addr,
        None => std::net::SocketAddr::new(isoclr::worker::local_ip_towards(&args.coordinator)?, 0),
    };
    let options = WorkerOptions {
        coordinator: args.coordinator,
        token,
        tls,
        local_rank: args.local_rank,
        requested_rank: args.rank,
        ring_bind,
        rpc_timeout: Duration::from_secs_f64(dist.rpc_timeout_s),
        rendezvous_timeout: Duration::from_secs_f64(dist.rendezvous_timeout_s),
    };
    match run_worker(options, shutdown) {
        Err(e @ TrainError::Interrupted { .. }) => exit_resumable(&e.to_string()),
        other => other.map(|_| ()).map_err(Into::into),
    }
}

/// Reads and checks probe task files, before any work is done.
fn read_tasks(paths: &[std::path::PathBuf]) -> Result<Vec<ProbeTask>> {
    Ok(paths
        .iter()
        .map(|p| ProbeTask::read(p))
        .collect::<Result<Vec<_>, _>>()?)
}

/// The probes of `tasks` (none: those of the encoder's run configuration) on the encoder at `checkpoint`,
/// into `out`. The synthetic default is found in (or made in) a run directory being probed, else next to
/// the report.
fn run_probes(
    checkpoint: &str,
    tasks: &[ProbeTask],
    out: &Path,
    positions_per_pass: usize,
    device: tch::Device,
    stop: Option<Shutdown>,
    no_baselines: bool,
) -> Result<()> {
    let data_dir = if RunDir::new(checkpoint).model().is_file() {
        checkpoint.into()
    } else {
        out.to_owned()
    };
    let encoder = isoclr::probe::embed::Encoder::load(checkpoint, device)?;
    let mut tasks = match tasks {
        [] => read_tasks(&encoder.config.probe.tasks)?,
        given => given.to_vec(),
    };
    if tasks.is_empty() {
        anyhow::bail!("no --task given and the run configuration of {checkpoint} lists no [probe] tasks");
    }
    if no_baselines {
        for task in &mut tasks {
            task.baselines = isoclr::probe::task::Baselines::none();
        }
    }
    let options = isoclr::probe::runner::RunnerOptions {
        device,
        positions_per_pass,
        bootstrap: Default::default(),
        data_dir,
        random_seed: encoder.config.train.seed.wrapping_add(1),
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop,
    };
    let report = isoclr::probe::runner::run_probes(&encoder, &tasks, out, &options)?;
    for task in &report.tasks {
        for target in &task.targets {
            println!("{}", target.summary_line(&task.task.name));
        }
    }
    println!("probe report:     {}", out.join("report.md").display());
    Ok(())
}

/// The probes of `[probe] tasks` on a finished run's model (`out`), into `out/probes`; they heed the
/// training job's stop signals too.
fn probe_after_training(config: &Config, tasks: &[ProbeTask], out: &Path, shutdown: &Shutdown) -> Result<()> {
    if tasks.is_empty() {
        return Ok(());
    }
    let run = RunDir::new(out);
    if !run.model().is_file() {
        anyhow::bail!("no {} to probe", run.model().display());
    }
    let device = isoclr::train::run::select_device(config.train.device)?;
    let checkpoint = out.to_str().context("the output directory's name is not UTF-8")?;
    let probes = run.probes();
    run_probes(
        checkpoint,
        tasks,
        &probes,
        EMBED_POSITIONS_PER_PASS,
        device,
        Some(shutdown.clone()),
        false,
    )
    .context("the probes after training failed (the trained model is saved; re-run them with `isoclr probe`)")
}

/// Fails unless `checkpoint.url` holds a complete checkpoint (for `train --resume`).
fn require_checkpoint(config: &Config) -> Result<()> {
    let c = &config.checkpoint;
    let url = (c.url.as_deref()).context("--resume needs checkpoint.url: there is nothing to resume from")?;
    let store = isoclr::ckpt::CheckpointStore::open(url, c.store_options())?;
    if store.list_complete()?.is_empty() {
        anyhow::bail!("--resume: {url} holds no complete checkpoint");
    }
    Ok(())
}

/// A re-run of a job that had finished: nothing to do, and nothing failed.
fn finished_before(complete: &dyn std::fmt::Display) -> Result<()> {
    println!("{complete}");
    Ok(())
}

/// Ends the process with the resumable status after a stop signal, saying so.
fn exit_resumable(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(EXIT_RESUMABLE);
}

/// Ends a job that a signal suspended with the resumable status; returns for one that finished.
fn exit_if_suspended(outcome: &CoordinatorOutcome) {
    if let Some(step) = outcome.suspended_after {
        exit_resumable(&format!(
            "job suspended by a signal after step {step}; it resumes from that checkpoint when started again"
        ));
    }
}

/// Ends the process with the resumable status when a coordinator error is a signal before any step.
fn exit_if_interrupted<T>(result: Result<T, CoordError>) -> Result<T> {
    match result {
        Err(e @ CoordError::Interrupted) => exit_resumable(&e.to_string()),
        other => Ok(other?),
    }
}
