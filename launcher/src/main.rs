//! `launcher`: turns one command into an isoclr job, on a Slurm cluster (`--nodes N`, submitted with
//! `sbatch`) or on this machine (`--local`, also chosen with a notice when Slurm is not installed).
//!
//! It checks the configuration before anything is submitted (the project's `Config`, and the probe task files
//! it names), writes the resolved `config.toml` and a per-job secret (`token`, readable only by the user)
//! into the output directory, and renders `slurm/isoclr.sbatch`. It is built on `isoclr-core` and links no
//! libtorch: it only checks, writes files and starts processes.

mod slurm;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Parser;
use isoclr_core::config::Config;
use isoclr_core::probe::task::ProbeTask;
use isoclr_core::worker::Token;

/// Run an isoclr pre-training job on a Slurm cluster or on this machine.
///
/// On Slurm the job runs one coordinator on its first node and one worker per GPU (or `--workers-per-node`
/// CPU workers) on every node; before the time limit (or at pre-emption) Slurm sends SIGUSR2, the job
/// checkpoints to `checkpoint.url`, requeues itself and resumes where it stopped.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Args {
    /// Run on this machine through `isoclr train --workers N` instead of submitting to Slurm (chosen
    /// automatically, with a notice, when `sbatch` is not installed).
    #[arg(long)]
    local: bool,
    /// Nodes to allocate on Slurm.
    #[arg(long, default_value_t = 1, value_name = "N")]
    nodes: u32,
    /// GPUs per node; one worker runs per GPU. 0: CPU workers (see --workers-per-node).
    #[arg(long, default_value_t = 0, value_name = "G")]
    gpus_per_node: u32,
    /// Worker processes per node when there are no GPUs (with --local: the number of workers).
    #[arg(long, default_value_t = 1, value_name = "W")]
    workers_per_node: u32,
    /// CPUs for each worker (default: 8 with GPUs, 2 without).
    #[arg(long, value_name = "C")]
    cpus_per_task: Option<u32>,
    /// Time limit of each run of the job (Slurm's `--time`: minutes, HH:MM:SS or D-HH:MM:SS).
    #[arg(long, default_value = "24:00:00", value_name = "HH:MM:SS")]
    time: String,
    /// Slurm partition (default: the cluster's default).
    #[arg(long, value_name = "P")]
    partition: Option<String>,
    /// Slurm account to charge (default: yours).
    #[arg(long, value_name = "A")]
    account: Option<String>,
    /// Seconds before the time limit at which Slurm sends SIGUSR2 so the job checkpoints and requeues: long
    /// enough for one step and one checkpoint upload.
    #[arg(long, default_value_t = 180, value_name = "SECONDS")]
    signal_lead: u32,
    /// An extra sbatch option, written as an `#SBATCH` line (repeatable), e.g. `--sbatch=--qos=high`.
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    sbatch: Vec<String>,
    /// Job name in the queue.
    #[arg(long, default_value = "isoclr")]
    job_name: String,
    /// Print the Slurm batch script instead of submitting it (nothing is written; no Slurm needed).
    #[arg(long)]
    dry_run: bool,
    /// Training configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Override a configuration key (repeatable), e.g. `--set train.steps=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory (on a file system every node sees): model, metrics, logs, config and token.
    #[arg(long, default_value = "out/job")]
    out: PathBuf,
    /// The isoclr binary; defaults to the one next to this launcher.
    #[arg(long, env = "ISOCLR_BIN")]
    isoclr: Option<PathBuf>,
}

fn isoclr_binary(explicit: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path);
    }
    let me = std::env::current_exe().context("cannot locate the launcher binary")?;
    let sibling = me.with_file_name("isoclr");
    if !sibling.exists() {
        bail!(
            "no isoclr binary next to {} (build it with scripts/setup.sh or pass --isoclr)",
            me.display()
        );
    }
    Ok(sibling)
}

/// `path` made absolute against the current directory (the job runs elsewhere).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot resolve {}", path.display()))
}

/// The configuration `args` give, resolved (defaults < file < `ISOCLR_*` < `--set`) and checked as the job
/// will check it, with the probe task files it names: errors name the key or the file.
fn resolve_config(args: &Args) -> Result<Config> {
    let config = Config::load(Some(&args.config), &args.overrides).context("the configuration is not valid")?;
    ProbeTask::read_all(&config.probe.tasks).context("the configuration is not valid")?;
    Ok(config)
}

/// Writes the job's secret to `path`, readable and writable by the user only.
fn write_token(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    let token = Token::generate();
    writeln!(file, "{}", token.expose()).with_context(|| format!("cannot write {}", path.display()))
}

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    let isoclr = absolute(&isoclr_binary(args.isoclr.clone())?)?;
    // Check the configuration here, before anything is queued: errors name the key.
    let config = resolve_config(&args)?;
    let slurm = args.dry_run || (!args.local && slurm::available());
    if !args.local && !slurm {
        eprintln!("launcher: no Slurm here (sbatch not found): running the job on this machine instead");
    }
    if slurm {
        submit(&args, &config, isoclr)
    } else {
        run_here(&args, &isoclr)
    }
}

/// Renders the batch script and submits it (or prints it with --dry-run).
fn submit(args: &Args, config: &Config, isoclr: PathBuf) -> Result<ExitCode> {
    let out = absolute(&args.out)?;
    let gpus = args.gpus_per_node;
    let shape = slurm::JobShape {
        job_name: args.job_name.clone(),
        nodes: args.nodes,
        gpus_per_node: gpus,
        workers_per_node: if gpus > 0 { gpus } else { args.workers_per_node },
        cpus_per_task: args.cpus_per_task.unwrap_or(if gpus > 0 { 8 } else { 2 }),
        time: args.time.clone(),
        partition: args.partition.clone(),
        account: args.account.clone(),
        signal_lead_s: args.signal_lead,
        extra: args.sbatch.clone(),
        isoclr,
        out: out.clone(),
    };
    let script = slurm::render(&shape)?;
    if args.dry_run {
        print!("{script}");
        return Ok(ExitCode::SUCCESS);
    }
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let config_path = out.join("config.toml");
    std::fs::write(&config_path, config.to_toml())
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    write_token(&out.join("token"))?;
    let script_path = out.join("job.sbatch");
    std::fs::write(&script_path, &script).with_context(|| format!("cannot write {}", script_path.display()))?;
    let id = slurm::submit(&script_path)?;
    let workers = shape.nodes * shape.workers_per_node;
    println!("submitted job {id}: {} node(s), {workers} workers", shape.nodes);
    println!("log:          {}/slurm-{id}.out", out.display());
    println!("outputs:      {}/ (model.safetensors, metrics.jsonl)", out.display());
    match &config.checkpoint.url {
        Some(url) => println!("checkpoints:  {url} (the job requeues itself and resumes from them)"),
        None => println!("checkpoints:  none (checkpoint.url is unset: a requeued job starts again from step 0)"),
    }
    println!("watch:        squeue -j {id}; tail -f {}/slurm-{id}.out", out.display());
    Ok(ExitCode::SUCCESS)
}

/// Runs the job on this machine: `isoclr train --workers N`, which restarts it from its latest checkpoint
/// when a worker dies; the exit status is isoclr's (75: stopped by a signal, start again to resume).
fn run_here(args: &Args, isoclr: &Path) -> Result<ExitCode> {
    let workers = if args.gpus_per_node > 0 {
        args.gpus_per_node
    } else {
        args.workers_per_node
    };
    let mut command = Command::new(isoclr);
    command
        .arg("train")
        .arg("--config")
        .arg(&args.config)
        .arg("--out")
        .arg(&args.out)
        .arg("--workers")
        .arg(workers.to_string());
    for assignment in &args.overrides {
        command.arg("--set").arg(assignment);
    }
    let status = command
        .status()
        .with_context(|| format!("cannot start {}", isoclr.display()))?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::from(1), // killed by a signal
    })
}
