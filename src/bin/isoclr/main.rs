//! The `isoclr` command: parses the command line, starts logging and libtorch where the command needs it,
//! makes the process's one shutdown token, and hands over to the command (`commands`).

mod args;
mod commands;

use anyhow::{Context, Result};
use clap::Parser;

use args::{Cli, Command};
use isoclr::shutdown::Shutdown;

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
            eprintln!("{}", error_text(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The message and its causes, as anyhow prints them, but never a backtrace: these are errors in what the
/// user gave, not in the program, even when RUST_BACKTRACE is set. A cause whose text its wrapper already
/// repeats ("task t: <cause>") is not said twice.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = format!("Error: {e}");
    let causes: Vec<String> = (e.chain().skip(1).map(|c| c.to_string()))
        .filter(|cause| !e.to_string().contains(cause.as_str()))
        .collect();
    if !causes.is_empty() {
        text.push_str("\n\nCaused by:");
        for cause in causes {
            text.push_str(&format!("\n    {cause}"));
        }
    }
    text
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

fn run() -> Result<()> {
    let cli = Cli::parse();
    // Loading libtorch's CUDA backend touches some 100 MB of library pages; the data commands never call
    // tch, so they skip it (docs/PERFORMANCE.md, "Prep at human scale"). Parsing the command line calls no
    // tch either, so the backend is still loaded before any tch call.
    let cuda_loaded = cli.command.uses_torch() && isoclr::device::init();
    init_tracing();
    tracing::debug!(cuda_loaded, "libtorch initialised");
    // The one place signal handlers are installed; whatever stops at a boundary is handed this.
    let shutdown = match cli.command.heeds_signals() {
        Some(interrupt_cancels) => Shutdown::on_signals(interrupt_cancels).context("cannot watch signals")?,
        None => Shutdown::new(),
    };
    match cli.command {
        Command::Synth(args) => commands::synth(args),
        Command::Prep(args) => commands::prep(args),
        Command::Inspect(args) => commands::inspect(args),
        Command::Embed(args) => commands::embed(args),
        Command::Probe(args) => commands::probe(args),
        Command::Config(args) => commands::config(args),
        Command::Train(args) => commands::train(args, &shutdown),
        Command::Coordinator(args) => commands::coordinator(args, &shutdown),
        Command::Worker(args) => commands::worker(args, &shutdown),
    }
}
