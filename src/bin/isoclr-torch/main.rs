//! `isoclr-torch`: the isoclr commands that run libtorch (train, worker, embed, probe). `isoclr` becomes
//! this process for them, with the same command line; it can also be run directly.

mod commands;
#[path = "../isoclr/process.rs"]
mod process;

use anyhow::{Context, Result};
use clap::Parser;

use isoclr::shutdown::Shutdown;
use isoclr_core::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    process::exit_code(run())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    // Parsing the command line calls no tch, so libtorch's CUDA backend is loaded before any tch call.
    let cuda_loaded = isoclr::device::init();
    // A libtorch failure in a training step (an out-of-memory) is an error, reported once, not a panic.
    isoclr::device::failure::report_only_unguarded_panics();
    process::init_tracing();
    tracing::debug!(cuda_loaded, "libtorch initialised");
    match cli.command {
        Command::Train(args) => commands::train(args, &stop_signals()?),
        Command::Worker(args) => commands::worker(args, &stop_signals()?),
        Command::Embed(args) => commands::embed(args),
        Command::Probe(args) => commands::probe(args),
        Command::Synth(_) | Command::Prep(_) | Command::Inspect(_) | Command::Config(_) | Command::Coordinator(_) => {
            anyhow::bail!("isoclr-torch runs train, worker, embed and probe; run the other commands with `isoclr`")
        }
    }
}

/// The one place this process's signal handlers are installed: a training process suspends at the next
/// step boundary on SIGTERM or SIGUSR2, and SIGINT ends it at once.
fn stop_signals() -> Result<Shutdown> {
    Shutdown::on_signals(false).context("cannot watch signals")
}
