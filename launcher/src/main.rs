//! `launcher`: turns one command into an isoclr job.
//!
//! Today it runs the job on this machine (`--local`) through `isoclr train`, found next to this binary;
//! Slurm submission (`--nodes N`) builds on the coordinator and checkpoint layers that come next. It never
//! links libtorch: it only starts processes.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
use clap::Parser;

/// Run an isoclr training job.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Run on this machine (the only mode available until Slurm submission lands).
    #[arg(long)]
    local: bool,
    /// Training configuration (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Override a configuration key (repeatable), e.g. `--set train.steps=100`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    /// Output directory.
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

fn main() -> Result<ExitCode> {
    let args = Args::parse();
    if !args.local {
        bail!("only --local runs are supported so far: Slurm submission (--nodes) is not built yet");
    }
    let isoclr = isoclr_binary(args.isoclr)?;
    let mut command = Command::new(&isoclr);
    command
        .arg("train")
        .arg("--config")
        .arg(&args.config)
        .arg("--out")
        .arg(&args.out);
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
