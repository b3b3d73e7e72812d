//! The process's stop requests: made once in `main`, passed to whatever runs, and read at the places where
//! stopping is safe (a step boundary, between probe cells). Library code installs no signal handler.
//!
//! SIGTERM and SIGUSR2 (what Slurm sends at pre-emption or before a time limit; not SIGUSR1, which NCCL may
//! take) ask to suspend: the run ends at the next step boundary with a checkpoint. SIGINT, where it is
//! connected (a coordinator), asks to cancel the job.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Stop requests shared by every part of one process. Clones share the same requests.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    suspend: Arc<AtomicBool>,
    cancel: Arc<AtomicBool>,
}

impl Shutdown {
    /// Requests that only code makes ([`Shutdown::request_suspend`], [`Shutdown::request_cancel`]): for
    /// tests and for embedding isoclr in another program.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests that SIGTERM and SIGUSR2 make, and SIGINT too when `interrupt_cancels` (otherwise SIGINT
    /// keeps its default: the process ends at once). Call once, in `main`.
    ///
    /// Errors when a handler cannot be installed.
    pub fn on_signals(interrupt_cancels: bool) -> std::io::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
        let shutdown = Self::new();
        for signal in [SIGTERM, SIGUSR2] {
            signal_hook::flag::register(signal, shutdown.suspend.clone())?;
        }
        if interrupt_cancels {
            signal_hook::flag::register(SIGINT, shutdown.cancel.clone())?;
        }
        Ok(shutdown)
    }

    /// Asks to suspend at the next step boundary, as SIGTERM does.
    pub fn request_suspend(&self) {
        self.suspend.store(true, Ordering::Relaxed);
    }

    /// Asks to cancel the job, as SIGINT does for a coordinator.
    pub fn request_cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// Whether a suspension was asked for.
    pub fn suspend_requested(&self) -> bool {
        self.suspend.load(Ordering::Relaxed)
    }

    /// Whether a suspension was asked for since the last call that returned true (each signal counts once).
    pub fn take_suspend(&self) -> bool {
        self.suspend.swap(false, Ordering::Relaxed)
    }

    /// Whether a cancellation was asked for since the last call that returned true.
    pub fn take_cancel(&self) -> bool {
        self.cancel.swap(false, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_requests_and_taking_consumes_them() {
        let shutdown = Shutdown::new();
        let seen_by_a_worker = shutdown.clone();
        assert!(!seen_by_a_worker.suspend_requested());
        shutdown.request_suspend();
        assert!(seen_by_a_worker.suspend_requested());
        assert!(seen_by_a_worker.take_suspend());
        assert!(!shutdown.suspend_requested() && !shutdown.take_suspend());
        shutdown.request_cancel();
        assert!(seen_by_a_worker.take_cancel() && !shutdown.take_cancel());
    }
}
