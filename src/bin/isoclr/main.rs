//! The `isoclr` command: parses the command line and runs the commands that need no tensors (synth, prep,
//! inspect, config, coordinator) here, in a binary that links no libtorch, so they run on machines without
//! it. Train, worker, embed and probe are handed to `isoclr-torch` beside it.

mod commands;
mod process;

use anyhow::{Context, Result};
use clap::Parser;

use isoclr_core::cli::{Cli, Command};
use isoclr_core::shutdown::Shutdown;

fn main() -> std::process::ExitCode {
    process::exit_code(run())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Train(_) | Command::Worker(_) | Command::Embed(_) | Command::Probe(_) => {
            commands::run_in_torch_binary()
        }
        Command::Synth(args) => with_tracing(|| commands::synth(args)),
        Command::Prep(args) => with_tracing(|| commands::prep(args)),
        Command::Inspect(args) => with_tracing(|| commands::inspect(args)),
        Command::Config(args) => with_tracing(|| commands::config(args)),
        Command::Coordinator(args) => with_tracing(|| {
            // The one place this process's signal handlers are installed; SIGINT cancels a coordinator.
            let shutdown = Shutdown::on_signals(true).context("cannot watch signals")?;
            commands::coordinator(args, &shutdown)
        }),
    }
}

/// Runs `command` with log lines going to stderr.
fn with_tracing(command: impl FnOnce() -> Result<()>) -> Result<()> {
    process::init_tracing();
    command()
}
