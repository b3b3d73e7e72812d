//! [`AsyncSaver`]: saves checkpoints on a background thread so the training loop only pays for taking the
//! snapshot. At most one save is in flight; a second [`submit`](AsyncSaver::submit) meanwhile is refused with
//! [`CheckpointError::Busy`] rather than queued or waited for, so training never stalls on storage (the
//! trainer may check [`AsyncSaver::in_flight`] before taking a snapshot, and skips that checkpoint).

use std::panic::AssertUnwindSafe;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{error, warn};

use super::{CheckpointError, CheckpointStore, Result, SavedCheckpoint};

/// A save that failed for good: which step, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct SaveFailure {
    /// The step whose save failed.
    pub step: u64,
    /// The error after retries.
    pub error: CheckpointError,
}

struct Job {
    step: u64,
    files: Vec<(String, Bytes)>,
    /// A final save retries transient failures until this instant; a periodic one does not retry.
    retry_until: Option<Instant>,
}

/// The longest pause between two tries of a final save.
const MAX_FINAL_BACKOFF: Duration = Duration::from_secs(10);

#[derive(Default)]
struct State {
    /// The step being saved.
    in_flight: Option<u64>,
    /// The newest save that succeeded.
    last_saved: Option<SavedCheckpoint>,
    /// The newest failure, cleared by a later success.
    last_error: Option<SaveFailure>,
    /// With `required`: the first failure, returned by every later submit and wait.
    fatal: Option<SaveFailure>,
    /// The background thread has exited.
    stopped: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Uploads checkpoints in the background, one at a time. Only one process (rank 0) should save into a URL.
///
/// A save that fails for good (after the store's retries) is logged at error level and kept for
/// [`AsyncSaver::last_error`]; `LATEST` still names the previous checkpoint. With `required`, the failure
/// also becomes [`CheckpointError::SaveFailed`], returned by every later [`submit`](AsyncSaver::submit) and
/// [`wait`](AsyncSaver::wait), so the trainer stops. Dropping the saver lets a save in flight finish for up
/// to `drop_timeout` (see [`AsyncSaver::with_drop_timeout`]); call [`AsyncSaver::wait`] first at shutdown.
pub struct AsyncSaver {
    shared: Arc<Shared>,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    required: bool,
    url: String,
    drop_timeout: Duration,
}

impl std::fmt::Debug for AsyncSaver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncSaver")
            .field("url", &self.url)
            .field("required", &self.required)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl AsyncSaver {
    /// Starts the background thread saving into `store`.
    ///
    /// Errors: [`CheckpointError::Runtime`] when the thread cannot be spawned.
    pub fn new(store: Arc<CheckpointStore>, required: bool) -> Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let (jobs, queue) = mpsc::channel::<Job>();
        let url = store.url().to_owned();
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("isoclr-ckpt-saver".to_owned())
            .spawn(move || run(&store, &worker, &queue, required))
            .map_err(|e| CheckpointError::Runtime(format!("cannot start the checkpoint saver thread: {e}")))?;
        Ok(Self {
            shared,
            jobs: Some(jobs),
            thread: Some(thread),
            required,
            url,
            drop_timeout: Duration::from_secs(60),
        })
    }

    /// How long dropping the saver waits for a save in flight (default 60 s) before leaving it behind.
    pub fn with_drop_timeout(mut self, timeout: Duration) -> Self {
        self.drop_timeout = timeout;
        self
    }

    /// Hands over the snapshot of `step` and returns at once; the upload happens in the background.
    ///
    /// Errors: [`CheckpointError::Busy`] while another save is in flight (the snapshot is dropped, not
    /// queued); [`CheckpointError::SaveFailed`] once a save has failed for good with `required`;
    /// [`CheckpointError::Runtime`] when the background thread is gone.
    pub fn submit(&self, step: u64, files: Vec<(String, Bytes)>) -> Result<()> {
        self.submit_job(Job {
            step,
            files,
            retry_until: None,
        })
    }

    /// Like [`submit`](AsyncSaver::submit), for the last save of a run (its end, or a stop signal): nothing
    /// later will replace it, so a save that fails transiently (storage down, timeouts) is tried again,
    /// with back-off up to 10 s, for up to `patience` before it counts as failed.
    ///
    /// Errors: those of [`submit`](AsyncSaver::submit).
    pub fn submit_final(&self, step: u64, files: Vec<(String, Bytes)>, patience: Duration) -> Result<()> {
        self.submit_job(Job {
            step,
            files,
            retry_until: Some(Instant::now() + patience),
        })
    }

    fn submit_job(&self, job: Job) -> Result<()> {
        let step = job.step;
        let mut state = self.shared.lock();
        if let Some(fatal) = &state.fatal {
            return Err(required_failure(fatal));
        }
        if let Some(in_flight) = state.in_flight {
            warn!(
                step,
                in_flight, "checkpoint skipped: the previous save is still in flight"
            );
            return Err(CheckpointError::Busy { in_flight });
        }
        let Some(jobs) = self.jobs.as_ref().filter(|_| !state.stopped) else {
            return Err(CheckpointError::Runtime(
                "the checkpoint saver thread has stopped".to_owned(),
            ));
        };
        jobs.send(job)
            .map_err(|_| CheckpointError::Runtime("the checkpoint saver thread has stopped".to_owned()))?;
        state.in_flight = Some(step);
        Ok(())
    }

    /// The step being saved, if any.
    pub fn in_flight(&self) -> Option<u64> {
        self.shared.lock().in_flight
    }

    /// Waits up to `timeout` until no save is in flight; returns the newest successful save.
    ///
    /// Errors: [`CheckpointError::Timeout`] when the save is still running at the deadline;
    /// [`CheckpointError::SaveFailed`] once a save has failed for good with `required`.
    pub fn wait(&self, timeout: Duration) -> Result<Option<SavedCheckpoint>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.in_flight.is_some() && !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CheckpointError::Timeout {
                    op: "wait",
                    object: self.url.clone(),
                    after: timeout,
                    attempts: 1,
                });
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        if let Some(fatal) = &state.fatal {
            return Err(required_failure(fatal));
        }
        Ok(state.last_saved.clone())
    }

    /// The newest save that failed for good, unless a later one succeeded. Poll it to report failures.
    pub fn last_error(&self) -> Option<SaveFailure> {
        self.shared.lock().last_error.clone()
    }

    /// The newest successful save.
    pub fn last_saved(&self) -> Option<SavedCheckpoint> {
        self.shared.lock().last_saved.clone()
    }
}

impl Drop for AsyncSaver {
    fn drop(&mut self) {
        self.jobs = None; // the thread ends after the job in hand
        let deadline = Instant::now() + self.drop_timeout;
        let mut state = self.shared.lock();
        while !state.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                warn!(url = %self.url, step = ?state.in_flight, "checkpoint saver dropped with a save still in flight");
                return;
            }
            state = match self.shared.changed.wait_timeout(state, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        drop(state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn required_failure(fatal: &SaveFailure) -> CheckpointError {
    CheckpointError::SaveFailed {
        step: fatal.step,
        why: fatal.error.to_string(),
    }
}

/// The background thread: one job at a time until the saver is dropped.
fn run(store: &CheckpointStore, shared: &Shared, queue: &mpsc::Receiver<Job>, required: bool) {
    while let Ok(Job {
        step,
        files,
        retry_until,
    }) = queue.recv()
    {
        let mut backoff = Duration::from_secs(1);
        let outcome = loop {
            // `Bytes` clones share their buffers: a retry copies no data.
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| store.save(step, files.clone())))
                .unwrap_or_else(|_| Err(CheckpointError::Runtime(format!("the save of step {step} panicked"))));
            match (&outcome, retry_until) {
                (Err(e), Some(until)) if e.is_transient() && Instant::now() + backoff < until => {
                    warn!(
                        step,
                        url = %store.url(),
                        error = %e,
                        retry_in = ?backoff,
                        "the final checkpoint save failed; trying again"
                    );
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_FINAL_BACKOFF);
                }
                _ => break outcome,
            }
        };
        let mut state = shared.lock();
        match outcome {
            Ok(saved) => {
                state.last_saved = Some(saved);
                state.last_error = None;
            }
            Err(e) => {
                error!(
                    step,
                    url = %store.url(),
                    error = %e,
                    required,
                    "CHECKPOINT SAVE FAILED; LATEST still names the previous checkpoint"
                );
                let failure = SaveFailure { step, error: e };
                if required && state.fatal.is_none() {
                    state.fatal = Some(failure.clone());
                }
                state.last_error = Some(failure);
            }
        }
        state.in_flight = None;
        shared.changed.notify_all();
    }
    shared.lock().stopped = true;
    shared.changed.notify_all();
}
