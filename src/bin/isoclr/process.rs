//! How an isoclr process starts and ends: logging, the error text, the exit statuses. Shared by `isoclr`
//! and `isoclr-torch` (which includes this file), so both end the same way.

use std::process::ExitCode;

use anyhow::Result;

use isoclr_core::coord::{CoordError, CoordinatorOutcome};
use isoclr_core::launch::EXIT_RESUMABLE;

/// The exit status of a command's result, printing its error.
pub fn exit_code(result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Output piped into a reader that stopped early (`| head`) is not this program failing.
        Err(e)
            if e.chain().any(|cause| {
                cause
                    .downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", error_text(&e));
            ExitCode::FAILURE
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

/// Log lines to stderr, filtered by RUST_LOG (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .init();
}

/// A re-run of a job that had finished: nothing to do, and nothing failed.
pub fn finished_before(complete: &dyn std::fmt::Display) -> Result<()> {
    println!("{complete}");
    Ok(())
}

/// Ends the process with the resumable status after a stop signal, saying so.
pub fn exit_resumable(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(EXIT_RESUMABLE);
}

/// Ends a job that a signal suspended with the resumable status; returns for one that finished.
pub fn exit_if_suspended(outcome: &CoordinatorOutcome) {
    if let Some(step) = outcome.suspended_after {
        exit_resumable(&format!(
            "job suspended by a signal after step {step}; it resumes from that checkpoint when started again"
        ));
    }
}

/// Ends the process with the resumable status when a coordinator error is a signal before any step.
pub fn exit_if_interrupted<T>(result: Result<T, CoordError>) -> Result<T> {
    match result {
        Err(e @ CoordError::Interrupted) => exit_resumable(&e.to_string()),
        other => Ok(other?),
    }
}
