//! The commands that run libtorch: one function per subcommand turns its arguments into the library's
//! options, runs it, and prints what came of it. The work itself is the library's.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{exit_if_interrupted, exit_if_suspended, exit_resumable, finished_before};
use isoclr::config::{Config, DeviceChoice};
use isoclr::launch::LaunchError;
use isoclr::probe::task::ProbeTask;
use isoclr::run_dir::RunDir;
use isoclr::shutdown::Shutdown;
use isoclr::train::TrainError;
use isoclr::train::worker_loop::{WorkerOptions, run_worker};
use isoclr::worker::{ClientTls, Token};
use isoclr_core::cli::{EMBED_POSITIONS_PER_PASS, EmbedArgs, ProbeArgs, TrainArgs, WorkerArgs};

/// `isoclr embed`.
pub fn embed(args: EmbedArgs) -> Result<()> {
    let encoder = isoclr::probe::embed::Encoder::load(&args.encoder.checkpoint, device(&args.encoder.device)?)?;
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
    let tasks = ProbeTask::read_all(&args.tasks)?;
    let encoder = &args.encoder;
    let device = device(&encoder.device)?;
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
    let probe_tasks = ProbeTask::read_all(&config.probe.tasks)?;
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
        [] => ProbeTask::read_all(&encoder.config.probe.tasks)?,
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

/// A `--device` choice (auto, cpu or cuda), resolved.
fn device(name: &str) -> Result<tch::Device> {
    let choice: DeviceChoice = serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .with_context(|| format!("--device {name:?}: expected auto, cpu or cuda"))?;
    Ok(isoclr::train::run::select_device(choice)?)
}
