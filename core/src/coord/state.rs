//! The job's bookkeeping as a synchronous state machine, with time passed in: registration and rendezvous
//! (rank assignment), liveness, the step-boundary decisions, the first failure, and the reports that become
//! `metrics.jsonl` lines. No I/O and no async, so every rule is unit-tested directly.
//!
//! Must not import tch, the model or train modules.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use isoclr_proto::v1::{Action, StepReport};

use tracing::info;

use crate::boundary::{self, Boundary, Cause};
use crate::metrics::StepMetrics;

use super::{CoordError, Result};

/// One worker as it registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: u32,
    /// Index among the workers of its host.
    pub local_rank: u32,
    /// Device it trains on.
    pub device: String,
    /// Its ring collective listener (`host:port`), or empty.
    pub ring_address: String,
    /// The rank it asked for.
    pub requested_rank: Option<usize>,
    /// An NCCL unique id it can offer (empty when none).
    pub nccl_offer: Vec<u8>,
}

/// The step-boundary answer: what every rank does after a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The action.
    pub action: Action,
    /// Why (names the worker for ABORT).
    pub reason: String,
}

impl Decision {
    fn new(action: Action, reason: impl Into<String>) -> Self {
        Self {
            action,
            reason: reason.into(),
        }
    }
}

/// What a registered worker learns at the rendezvous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Its rank.
    pub rank: usize,
    /// Every member in rank order.
    pub members: Vec<Member>,
    /// The NCCL unique id to use (empty when nobody has one).
    pub nccl_id: Vec<u8>,
}

#[derive(Debug)]
struct RankState {
    member: Member,
    last_seen: Instant,
    /// Exit status once it called Shutdown.
    shutdown: Option<i32>,
    /// It has received ABORT (or it is the failed rank).
    told_abort: bool,
    /// Its batch stream is open or finished.
    streaming: bool,
    /// It has been answered STOP.
    stopped: bool,
}

/// The first failure of the job: the error `serve` returns and its reason for the workers.
#[derive(Debug)]
struct Failure {
    error: CoordError,
    reason: String,
}

/// Limits the job runs under.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Number of ranks.
    pub world_size: usize,
    /// First step.
    pub start_step: u64,
    /// One past the last step (`train.steps`).
    pub end_step: u64,
    /// How long registration may take, from `created`.
    pub rendezvous_timeout: Duration,
    /// A rank silent this long is lost.
    pub heartbeat_timeout: Duration,
    /// CHECKPOINT after every this many completed steps (`checkpoint.every_steps`); `None`: only when asked.
    pub checkpoint_every: Option<u64>,
}

/// The job's state.
#[derive(Debug)]
pub struct Job {
    limits: Limits,
    created: Instant,
    pending: Vec<(u64, Member)>,
    next_id: u64,
    assigned: HashMap<u64, usize>,
    ranks: Vec<RankState>,
    nccl_id: Vec<u8>,
    preset_nccl_id: Option<Vec<u8>>,
    decisions: BTreeMap<u64, Decision>,
    checkpoint_requested: bool,
    suspend_requested: bool,
    suspended_after: Option<u64>,
    failure: Option<Failure>,
    reports: BTreeMap<u64, Vec<Option<StepReport>>>,
    next_line: u64,
}

impl Job {
    /// A job waiting for its workers; the rendezvous deadline runs from `now`.
    pub fn new(limits: Limits, preset_nccl_id: Option<Vec<u8>>, now: Instant) -> Self {
        Self {
            limits,
            created: now,
            pending: Vec::new(),
            next_id: 0,
            assigned: HashMap::new(),
            ranks: Vec::new(),
            nccl_id: Vec::new(),
            preset_nccl_id,
            decisions: BTreeMap::new(),
            checkpoint_requested: false,
            suspend_requested: false,
            suspended_after: None,
            failure: None,
            reports: BTreeMap::new(),
            next_line: limits.start_step,
        }
    }

    /// Whether every rank has registered.
    pub fn rendezvous_complete(&self) -> bool {
        !self.ranks.is_empty()
    }

    /// The reason the job failed, if it did.
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure.as_ref().map(|f| f.reason.as_str())
    }

    /// An error for a caller of a failed job: the failure itself where it can be repeated, else ABORTED
    /// with its reason.
    fn failure_error(&self) -> Option<CoordError> {
        let failure = self.failure.as_ref()?;
        Some(match &failure.error {
            CoordError::RendezvousTimeout {
                registered,
                world_size,
                timeout,
                who,
            } => CoordError::RendezvousTimeout {
                registered: *registered,
                world_size: *world_size,
                timeout: *timeout,
                who: who.clone(),
            },
            _ => CoordError::Aborted {
                reason: failure.reason.clone(),
            },
        })
    }

    /// Records the first failure; later ones are ignored (the first cause is the one to report).
    fn fail(&mut self, error: CoordError, rank: Option<usize>) {
        if self.failure.is_none() {
            let reason = error.to_string();
            if let Some(r) = rank.and_then(|r| self.ranks.get_mut(r)) {
                r.told_abort = true;
            }
            self.failure = Some(Failure { error, reason });
        }
    }

    /// Aborts the job from outside (an operator, a planning failure); the first failure wins.
    pub fn abort(&mut self, error: CoordError) {
        self.fail(error, None);
    }

    /// Takes the failure out, for `serve` to return.
    pub fn take_failure(&mut self) -> Option<CoordError> {
        self.failure.take().map(|f| f.error)
    }

    /// Asks for CHECKPOINT at the next step boundary not yet decided.
    pub fn request_checkpoint(&mut self) {
        self.checkpoint_requested = true;
    }

    /// Asks for SUSPEND (checkpoint, then shut down) at the next step boundary not yet decided: a stop signal
    /// reached the coordinator or a rank. The last step's STOP takes precedence: a finished job needs no
    /// resuming.
    pub fn request_suspend(&mut self) {
        self.suspend_requested = true;
    }

    /// Whether a suspension was asked for (and not yet turned into a decision, or already decided).
    pub fn suspend_requested(&self) -> bool {
        self.suspend_requested || self.suspended_after.is_some()
    }

    /// Steps completed when the job was suspended: the step its checkpoint resumes from.
    pub fn suspended_after(&self) -> Option<u64> {
        self.suspended_after
    }

    /// Registers a worker; returns its registration id. The rendezvous completes with the `world_size`-th.
    ///
    /// A worker registering again (same host, pid and local rank) replaces its earlier registration.
    /// Errors: a requested rank outside the world ([`CoordError::InvalidRequest`]) or already requested
    /// ([`CoordError::Duplicate`]); registering after the rendezvous ([`CoordError::OutOfOrder`]); a failed job.
    pub fn register(&mut self, member: Member, now: Instant) -> Result<u64> {
        if let Some(error) = self.failure_error() {
            return Err(error);
        }
        if self.rendezvous_complete() {
            return Err(CoordError::OutOfOrder(format!(
                "registration of {} (pid {}) refused: the rendezvous of {} workers is complete",
                member.host, member.pid, self.limits.world_size
            )));
        }
        let same = |m: &Member| m.host == member.host && m.pid == member.pid && m.local_rank == member.local_rank;
        self.pending.retain(|(_, m)| !same(m));
        if let Some(rank) = member.requested_rank {
            if rank >= self.limits.world_size {
                return Err(CoordError::InvalidRequest(format!(
                    "{} (pid {}) requested rank {rank} outside a world of {}",
                    member.host, member.pid, self.limits.world_size
                )));
            }
            if let Some((_, other)) = self.pending.iter().find(|(_, m)| m.requested_rank == Some(rank)) {
                return Err(CoordError::Duplicate(format!(
                    "{} (pid {}) requested rank {rank}, already requested by {} (pid {})",
                    member.host, member.pid, other.host, other.pid
                )));
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.pending.push((id, member));
        if self.pending.len() == self.limits.world_size {
            self.complete_rendezvous(now);
        }
        Ok(id)
    }

    /// Assigns ranks: requested ranks are honoured; the other workers, sorted by (host, local rank, pid),
    /// take the free ranks in ascending order. So the assignment depends only on who registered, not on
    /// the order of arrival.
    fn complete_rendezvous(&mut self, now: Instant) {
        let world = self.limits.world_size;
        let mut slots: Vec<Option<(u64, Member)>> = vec![None; world];
        let mut rest = Vec::new();
        for (id, member) in std::mem::take(&mut self.pending) {
            match member.requested_rank {
                Some(rank) => slots[rank] = Some((id, member)),
                None => rest.push((id, member)),
            }
        }
        rest.sort_by(|(_, a), (_, b)| (&a.host, a.local_rank, a.pid).cmp(&(&b.host, b.local_rank, b.pid)));
        let mut rest = rest.into_iter();
        for slot in slots.iter_mut().filter(|s| s.is_none()) {
            *slot = rest.next();
        }
        for (rank, (id, member)) in slots.into_iter().flatten().enumerate() {
            info!(
                rank,
                host = %member.host,
                pid = member.pid,
                requested_rank = ?member.requested_rank,
                "rank assigned"
            );
            self.assigned.insert(id, rank);
            self.ranks.push(RankState {
                member,
                last_seen: now,
                shutdown: None,
                told_abort: false,
                streaming: false,
                stopped: false,
            });
        }
        self.nccl_id = match &self.preset_nccl_id {
            Some(id) => id.clone(),
            None => self
                .ranks
                .iter()
                .map(|r| &r.member.nccl_offer)
                .find(|offer| !offer.is_empty())
                .cloned()
                .unwrap_or_default(),
        };
    }

    /// The answer for registration `id`: `None` while the rendezvous is incomplete.
    ///
    /// Errors when the job failed (e.g. the rendezvous timed out) or the registration was replaced.
    pub fn assignment(&self, id: u64) -> Option<Result<Assignment>> {
        if let Some(error) = self.failure_error() {
            return Some(Err(error));
        }
        if !self.rendezvous_complete() {
            return None;
        }
        Some(match self.assigned.get(&id) {
            Some(&rank) => Ok(Assignment {
                rank,
                members: self.ranks.iter().map(|r| r.member.clone()).collect(),
                nccl_id: self.nccl_id.clone(),
            }),
            None => Err(CoordError::OutOfOrder(
                "registration replaced by a newer one from the same worker".into(),
            )),
        })
    }

    /// The registered member of `rank`.
    pub fn member(&self, rank: usize) -> Option<&Member> {
        self.ranks.get(rank).map(|r| &r.member)
    }

    /// Checks a rank named in a request and marks it alive.
    fn seen(&mut self, rank: usize, now: Instant) -> Result<&mut RankState> {
        if !self.rendezvous_complete() {
            return Err(CoordError::OutOfOrder(format!(
                "rank {rank}: the rendezvous is not complete"
            )));
        }
        let world = self.limits.world_size;
        let state = self
            .ranks
            .get_mut(rank)
            .ok_or_else(|| CoordError::InvalidRequest(format!("rank {rank} outside a world of {world}")))?;
        state.last_seen = now;
        Ok(state)
    }

    /// The ABORT answer for `rank`, marking it told; `None` while the job has not failed.
    fn abort_answer(&mut self, rank: usize) -> Option<Decision> {
        let reason = self.failure.as_ref()?.reason.clone();
        if let Some(r) = self.ranks.get_mut(rank) {
            r.told_abort = true;
        }
        Some(Decision::new(Action::Abort, reason))
    }

    /// A heartbeat: CONTINUE, or ABORT with the reason once the job failed.
    pub fn heartbeat(&mut self, rank: usize, now: Instant) -> Result<Decision> {
        self.seen(rank, now)?;
        Ok(self
            .abort_answer(rank)
            .unwrap_or_else(|| Decision::new(Action::Continue, "")))
    }

    /// A rank's report of `report.step`: the step boundary's decision, fixed by the first report of that
    /// step (ABORT overrides it once the job failed), and the metrics lines this report completed, in step
    /// order. A repeated report of the same rank and step gets the same decision and is not counted twice.
    pub fn report(&mut self, report: StepReport, now: Instant) -> Result<(Decision, Vec<StepMetrics>)> {
        let rank = report.rank as usize;
        let step = report.step;
        self.seen(rank, now)?;
        let Limits {
            start_step, end_step, ..
        } = self.limits;
        if !(start_step..end_step).contains(&step) {
            return Err(CoordError::InvalidRequest(format!(
                "rank {rank} reported step {step} outside the job's steps {start_step}..{end_step}"
            )));
        }
        if let Some(abort) = self.abort_answer(rank) {
            return Ok((abort, Vec::new()));
        }
        if report.stop_requested && !self.suspend_requested {
            info!(rank, step, "a rank received a stop signal: suspending the job");
            self.suspend_requested = true;
        }
        if !self.decisions.contains_key(&step) {
            let decision = self.decide(step);
            if decision.action == Action::Suspend {
                self.suspended_after = Some(step + 1);
            }
            self.decisions.insert(step, decision);
        }
        let decision = self.decisions[&step].clone();
        if matches!(decision.action, Action::Stop | Action::Suspend) {
            self.ranks[rank].stopped = true;
        }
        if step >= self.next_line {
            let world = self.limits.world_size;
            let slot = &mut self.reports.entry(step).or_insert_with(|| vec![None; world])[rank];
            slot.get_or_insert(report);
        }
        let mut lines = Vec::new();
        while let Some(reports) = self.reports.get(&self.next_line)
            && reports.iter().all(Option::is_some)
        {
            let reports: Vec<StepReport> = self
                .reports
                .remove(&self.next_line)
                .into_iter()
                .flatten()
                .flatten()
                .collect();
            lines.push(job_metrics(self.next_line, &reports));
            self.next_line += 1;
        }
        // Every rank has reported the steps before `next_line`; their decisions are no longer asked for.
        self.decisions = self.decisions.split_off(&self.next_line.saturating_sub(1));
        Ok((decision, lines))
    }

    /// The decision of a step boundary not decided before, consuming the requests it answers.
    fn decide(&mut self, step: u64) -> Decision {
        let completed = step + 1;
        let boundary = Boundary {
            completed,
            end_step: self.limits.end_step,
            checkpoint_every: self.limits.checkpoint_every,
            suspend_requested: self.suspend_requested,
            checkpoint_requested: self.checkpoint_requested,
        };
        let (action, cause) = boundary.decide();
        match cause {
            Cause::StopSignal => self.suspend_requested = false,
            Cause::Requested => self.checkpoint_requested = false,
            _ => {}
        }
        let reason = match cause {
            Cause::Nothing => String::new(),
            Cause::LastStep => format!("step {step} is the last"),
            Cause::StopSignal => format!("stop signal: suspended after {completed} steps"),
            Cause::Requested => "checkpoint requested".to_owned(),
            Cause::Cadence(every) => format!("checkpoint.every_steps = {every}"),
        };
        Decision::new(wire_action(action), reason)
    }

    /// A rank leaves with `status`. Leaving before it was told STOP, or with a non-zero status, fails the
    /// job naming the worker.
    pub fn shutdown(&mut self, rank: usize, status: i32, reason: &str, now: Instant) -> Result<()> {
        let state = self.seen(rank, now)?;
        state.shutdown = Some(status);
        if status != 0 || !state.stopped {
            let error = CoordError::WorkerFailed {
                rank,
                host: state.member.host.clone(),
                pid: state.member.pid,
                status,
                reason: if reason.is_empty() {
                    "no reason given".into()
                } else {
                    reason.to_owned()
                },
            };
            self.fail(error, Some(rank));
        }
        Ok(())
    }

    /// Opens `rank`'s batch stream from `from_step`. Errors before the rendezvous, for a rank or step
    /// outside the job, for a second stream of the rank, and once the job failed.
    pub fn stream_started(&mut self, rank: usize, from_step: u64, now: Instant) -> Result<()> {
        let Limits {
            start_step, end_step, ..
        } = self.limits;
        if let Some(error) = self.failure_error() {
            return Err(error);
        }
        let state = self.seen(rank, now)?;
        if !(start_step..=end_step).contains(&from_step) {
            return Err(CoordError::InvalidRequest(format!(
                "rank {rank} asked for batches from step {from_step}, outside the job's steps {start_step}..{end_step}"
            )));
        }
        if state.streaming {
            return Err(CoordError::Duplicate(format!("rank {rank} already has a batch stream")));
        }
        state.streaming = true;
        Ok(())
    }

    /// `rank`'s stream broke (the worker went away) before `step` was delivered: the worker is lost, unless
    /// it was answered STOP or SUSPEND (a leaving worker closes its stream before its Shutdown arrives; the
    /// heartbeat deadline still catches one that never shuts down), it already shut down, or the job already
    /// failed.
    pub fn stream_broken(&mut self, rank: usize, step: u64) {
        let Some(state) = self.ranks.get(rank) else { return };
        if state.stopped {
            info!(
                rank,
                step, "a stopped rank closed its batch stream with this step still to deliver"
            );
            return;
        }
        if state.shutdown.is_none() && self.failure.is_none() {
            let error = CoordError::WorkerLost {
                rank,
                host: state.member.host.clone(),
                pid: state.member.pid,
                why: format!("its batch stream broke before step {step} was delivered"),
            };
            self.fail(error, Some(rank));
        }
    }

    /// Applies the deadlines: the rendezvous timeout before the rendezvous, the heartbeat timeout after.
    /// Returns true when this call failed the job.
    pub fn check_deadlines(&mut self, now: Instant) -> bool {
        if self.failure.is_some() {
            return false;
        }
        let Limits {
            world_size,
            rendezvous_timeout,
            heartbeat_timeout,
            ..
        } = self.limits;
        if !self.rendezvous_complete() {
            if now.saturating_duration_since(self.created) < rendezvous_timeout {
                return false;
            }
            let names: Vec<String> = self
                .pending
                .iter()
                .map(|(_, m)| format!("{} pid {}", m.host, m.pid))
                .collect();
            let who = if names.is_empty() {
                String::new()
            } else {
                format!(" (registered: {})", names.join(", "))
            };
            let error = CoordError::RendezvousTimeout {
                registered: self.pending.len(),
                world_size,
                timeout: rendezvous_timeout,
                who,
            };
            self.fail(error, None);
            return true;
        }
        let lost = self
            .ranks
            .iter()
            .enumerate()
            .find(|(_, r)| r.shutdown.is_none() && now.saturating_duration_since(r.last_seen) > heartbeat_timeout);
        let Some((rank, state)) = lost else { return false };
        let error = CoordError::WorkerLost {
            rank,
            host: state.member.host.clone(),
            pid: state.member.pid,
            why: format!(
                "no heartbeat for {:.1} s (dist.heartbeat_timeout_s = {:.1})",
                now.saturating_duration_since(state.last_seen).as_secs_f64(),
                heartbeat_timeout.as_secs_f64()
            ),
        };
        self.fail(error, Some(rank));
        true
    }

    /// Every rank has shut down with status 0 after STOP, and nothing failed.
    pub fn finished(&self) -> bool {
        self.failure.is_none() && self.rendezvous_complete() && self.ranks.iter().all(|r| r.shutdown == Some(0))
    }

    /// Every rank has been answered STOP for the last step, or SUSPEND.
    pub fn all_stopped(&self) -> bool {
        self.rendezvous_complete() && self.ranks.iter().all(|r| r.stopped)
    }

    /// After a failure: every rank has been told ABORT, has shut down, or is the one at fault.
    pub fn abort_delivered(&self) -> bool {
        self.failure.is_some() && self.ranks.iter().all(|r| r.told_abort || r.shutdown.is_some())
    }

    /// Ranks that have not shut down, for messages.
    pub fn ranks_still_running(&self) -> Vec<usize> {
        (0..self.ranks.len())
            .filter(|&r| self.ranks[r].shutdown.is_none())
            .collect()
    }

    /// Steps every rank has reported.
    pub fn completed_steps(&self) -> u64 {
        self.next_line - self.limits.start_step
    }
}

/// The wire form of a step-boundary action.
fn wire_action(action: boundary::Action) -> Action {
    match action {
        boundary::Action::Continue => Action::Continue,
        boundary::Action::Checkpoint => Action::Checkpoint,
        boundary::Action::Stop => Action::Stop,
        boundary::Action::Suspend => Action::Suspend,
        boundary::Action::Abort => Action::Abort,
    }
}

/// The job's metrics of a step from every rank's report (in rank order): rank 0's loss, accuracy, learning
/// rate and gradient norm (the same on every rank), the ranks' summed throughput, mean padding, slowest step
/// and longest wait for a batch.
fn job_metrics(step: u64, reports: &[StepReport]) -> StepMetrics {
    let first = &reports[0];
    let n = reports.len().max(1) as f64;
    StepMetrics {
        step,
        mlm_loss: None,
        loss: first.loss,
        accuracy: first.accuracy,
        lr: first.lr,
        grad_norm: first.grad_norm,
        seq_per_s: reports.iter().map(|r| r.seq_per_s).sum(),
        pad_fraction: reports.iter().map(|r| r.pad_fraction).sum::<f64>() / n,
        step_time_s: reports.iter().map(|r| r.step_time_s).fold(0.0, f64::max),
        data_wait_s: reports.iter().map(|r| r.data_wait_s).fold(0.0, f64::max),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(world_size: usize) -> Limits {
        Limits {
            world_size,
            start_step: 0,
            end_step: 3,
            rendezvous_timeout: Duration::from_secs(10),
            heartbeat_timeout: Duration::from_secs(2),
            checkpoint_every: None,
        }
    }

    fn member(host: &str, pid: u32, local_rank: u32, requested_rank: Option<usize>) -> Member {
        Member {
            host: host.into(),
            pid,
            local_rank,
            device: "cpu".into(),
            ring_address: format!("{host}:{pid}"),
            requested_rank,
            nccl_offer: if local_rank == 0 { vec![pid as u8] } else { Vec::new() },
        }
    }

    fn report(rank: u32, step: u64, loss: f64) -> StepReport {
        StepReport {
            rank,
            step,
            loss,
            seq_per_s: 10.0,
            ..Default::default()
        }
    }

    fn running(world: usize, now: Instant) -> Job {
        let mut job = Job::new(limits(world), None, now);
        for i in 0..world {
            job.register(member("h", 100 + i as u32, i as u32, None), now).unwrap();
        }
        job
    }

    #[test]
    fn ranks_follow_requests_then_host_and_local_rank_whatever_the_arrival_order() {
        let now = Instant::now();
        let mut job = Job::new(limits(4), None, now);
        let b1 = job.register(member("b", 7, 1, None), now).unwrap();
        let a0 = job.register(member("a", 9, 0, Some(3)), now).unwrap();
        assert!(
            job.assignment(b1).is_none(),
            "incomplete rendezvous answers nothing yet"
        );
        assert!(matches!(
            job.register(member("c", 1, 0, Some(3)), now),
            Err(CoordError::Duplicate(_))
        ));
        assert!(matches!(
            job.register(member("c", 1, 0, Some(4)), now),
            Err(CoordError::InvalidRequest(_))
        ));
        let b0 = job.register(member("b", 6, 0, None), now).unwrap();
        let a1 = job.register(member("a", 8, 1, None), now).unwrap();
        let rank = |id| job.assignment(id).unwrap().unwrap().rank;
        assert_eq!([rank(a1), rank(b0), rank(b1), rank(a0)], [0, 1, 2, 3]);
        let answer = job.assignment(a1).unwrap().unwrap();
        assert_eq!(answer.members[3].host, "a");
        assert_eq!(
            answer.nccl_id,
            vec![6],
            "rank 0 offers none; the first offer in rank order is b0's"
        );
        assert!(matches!(
            job.register(member("d", 1, 0, None), now),
            Err(CoordError::OutOfOrder(_))
        ));
    }

    #[test]
    fn a_late_rendezvous_fails_naming_who_came() {
        let now = Instant::now();
        let mut job = Job::new(limits(2), None, now);
        let id = job.register(member("a", 1, 0, None), now).unwrap();
        assert!(!job.check_deadlines(now + Duration::from_secs(9)));
        assert!(job.check_deadlines(now + Duration::from_secs(11)));
        let err = job.assignment(id).unwrap().unwrap_err();
        assert_eq!(err.kind(), isoclr_proto::ErrorKind::Timeout);
        assert!(
            err.to_string().contains("1 of 2 workers") && err.to_string().contains("a pid 1"),
            "{err}"
        );
    }

    #[test]
    fn every_rank_gets_the_decision_fixed_by_the_first_report() {
        let now = Instant::now();
        let mut job = running(2, now);
        let (d, lines) = job.report(report(1, 0, 9.0), now).unwrap();
        assert_eq!(d.action, Action::Continue);
        assert!(lines.is_empty());
        job.request_checkpoint();
        let (d, lines) = job.report(report(0, 0, 5.0), now).unwrap();
        assert_eq!(d.action, Action::Continue, "step 0 was decided before the request");
        assert_eq!(lines.len(), 1);
        assert_eq!(
            (lines[0].loss, lines[0].seq_per_s),
            (5.0, 20.0),
            "rank 0's loss, summed throughput"
        );
        assert_eq!(job.report(report(0, 1, 4.0), now).unwrap().0.action, Action::Checkpoint);
        assert_eq!(job.report(report(1, 1, 4.0), now).unwrap().0.action, Action::Checkpoint);
        assert_eq!(
            job.report(report(1, 1, 4.0), now).unwrap().1,
            vec![],
            "a repeated report counts once"
        );
        assert_eq!(job.report(report(1, 2, 3.0), now).unwrap().0.action, Action::Stop);
        assert!(job.shutdown(1, 0, "done", now).is_ok());
        assert!(!job.finished());
        assert_eq!(job.report(report(0, 2, 3.0), now).unwrap().0.action, Action::Stop);
        job.shutdown(0, 0, "done", now).unwrap();
        assert!(job.finished());
        assert_eq!(job.completed_steps(), 3);
        assert!(job.report(report(0, 3, 1.0), now).is_err(), "step past the end");
    }

    #[test]
    fn periodic_checkpoints_and_a_stop_signal_from_any_rank_suspend_every_rank_at_one_boundary() {
        let now = Instant::now();
        let mut job = Job::new(
            Limits {
                end_step: 10,
                checkpoint_every: Some(2),
                ..limits(2)
            },
            None,
            now,
        );
        for i in 0..2 {
            job.register(member("h", 100 + i, i, None), now).unwrap();
        }
        let decide = |job: &mut Job, rank: u32, step: u64, stop: bool| {
            let r = StepReport {
                stop_requested: stop,
                ..report(rank, step, 1.0)
            };
            job.report(r, now).unwrap().0.action
        };
        assert_eq!(decide(&mut job, 0, 0, false), Action::Continue);
        assert_eq!(decide(&mut job, 1, 0, false), Action::Continue);
        assert_eq!(decide(&mut job, 1, 1, false), Action::Checkpoint, "2 steps completed");
        assert_eq!(decide(&mut job, 0, 1, false), Action::Checkpoint);
        assert_eq!(decide(&mut job, 0, 2, false), Action::Continue);
        // Rank 1's signal arrives with a step rank 0 already decided: it applies to the next boundary.
        assert_eq!(decide(&mut job, 1, 2, true), Action::Continue);
        assert!(job.suspend_requested() && job.suspended_after().is_none());
        assert_eq!(decide(&mut job, 0, 3, false), Action::Suspend);
        assert_eq!(decide(&mut job, 1, 3, false), Action::Suspend);
        assert_eq!(job.suspended_after(), Some(4));
        assert!(job.all_stopped());
        job.shutdown(0, 0, "suspended", now).unwrap();
        job.shutdown(1, 0, "suspended", now).unwrap();
        assert!(job.finished(), "a suspended job ends without failure");

        // The last step stops the job even when a suspension was asked for at the same boundary.
        let mut job = running(1, now);
        job.report(report(0, 0, 1.0), now).unwrap();
        job.report(report(0, 1, 1.0), now).unwrap();
        job.request_suspend();
        assert_eq!(job.report(report(0, 2, 1.0), now).unwrap().0.action, Action::Stop);
        assert_eq!(job.suspended_after(), None);
    }

    #[test]
    fn a_silent_rank_aborts_the_job_and_every_other_rank_hears_it() {
        let now = Instant::now();
        let mut job = running(3, now);
        let later = now + Duration::from_millis(1500);
        job.heartbeat(0, later).unwrap();
        job.heartbeat(2, later).unwrap();
        assert!(!job.check_deadlines(later));
        let late = now + Duration::from_millis(2500);
        assert!(job.check_deadlines(late));
        let reason = job.failure_reason().unwrap().to_owned();
        assert!(
            reason.contains("rank 1") && reason.contains("host h") && reason.contains("pid 101"),
            "{reason}"
        );
        assert!(!job.abort_delivered());
        let d = job.heartbeat(0, late).unwrap();
        assert_eq!((d.action, d.reason.as_str()), (Action::Abort, reason.as_str()));
        assert_eq!(job.report(report(2, 0, 1.0), late).unwrap().0.action, Action::Abort);
        assert!(job.abort_delivered());
        assert!(matches!(
            job.take_failure(),
            Some(CoordError::WorkerLost { rank: 1, .. })
        ));
    }

    #[test]
    fn broken_streams_and_early_shutdowns_fail_the_job_but_ones_after_stop_or_suspend_do_not() {
        let now = Instant::now();
        let mut job = running(2, now);
        job.stream_started(0, 0, now).unwrap();
        assert!(matches!(job.stream_started(0, 0, now), Err(CoordError::Duplicate(_))));
        assert!(matches!(
            job.stream_started(1, 9, now),
            Err(CoordError::InvalidRequest(_))
        ));
        job.stream_broken(1, 4);
        assert!(job.failure_reason().unwrap().contains("stream broke before step 4"));

        // A rank answered SUSPEND closes its stream with steps still to send, then shuts down: no failure.
        let mut job = running(2, now);
        job.request_suspend();
        for rank in 0..2 {
            assert_eq!(job.report(report(rank, 0, 1.0), now).unwrap().0.action, Action::Suspend);
            job.stream_broken(rank as usize, 5);
        }
        assert_eq!(job.failure_reason(), None);
        job.shutdown(0, 0, "suspended", now).unwrap();
        job.shutdown(1, 0, "suspended", now).unwrap();
        assert!(job.finished());
        // One that never shuts down is still caught by its heartbeat deadline.
        let mut job = running(1, now);
        job.request_suspend();
        job.report(report(0, 0, 1.0), now).unwrap();
        job.stream_broken(0, 5);
        assert!(job.check_deadlines(now + Duration::from_secs(3)));
        assert!(job.failure_reason().unwrap().contains("no heartbeat"));

        let mut job = running(2, now);
        job.shutdown(0, 3, "out of memory", now).unwrap();
        let reason = job.failure_reason().unwrap();
        assert!(reason.contains("rank 0") && reason.contains("status 3") && reason.contains("out of memory"));

        let mut job = running(1, now);
        job.shutdown(0, 0, "", now).unwrap();
        assert!(
            job.failure_reason().unwrap().contains("status 0"),
            "leaving before STOP is a failure"
        );
    }
}
