//! What happens at a step boundary — continue, checkpoint, suspend or stop — decided by one pure rule that
//! the single-process controller and the coordinator both ask. No tch, no I/O.

/// What every rank does after a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Train the next step.
    Continue,
    /// Write a checkpoint of this step, then continue.
    Checkpoint,
    /// The job is done: save the outputs and end with status 0.
    Stop,
    /// The job is suspended (a stop signal): write a checkpoint of this step, wait for it, end with status 0;
    /// the job resumes from it.
    Suspend,
    /// The job failed: stop now and exit non-zero.
    Abort,
}

/// Why [`Boundary::decide`] chose its action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing is due.
    Nothing,
    /// The step was the last of the run.
    LastStep,
    /// A stop signal (pre-emption, a time limit's warning) asked to suspend.
    StopSignal,
    /// Someone asked for a checkpoint now.
    Requested,
    /// `checkpoint.every_steps` divides the completed steps.
    Cadence(u64),
}

/// The facts of one step boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boundary {
    /// Steps completed, this one included.
    pub completed: u64,
    /// The step count at which the run ends (`train.steps`).
    pub end_step: u64,
    /// `checkpoint.every_steps`, when checkpoints are on.
    pub checkpoint_every: Option<u64>,
    /// A stop signal is pending.
    pub suspend_requested: bool,
    /// A checkpoint was asked for outside the cadence.
    pub checkpoint_requested: bool,
}

impl Boundary {
    /// The action and its cause. Finishing wins over a stop signal (a complete run needs no resume), a stop
    /// signal over a checkpoint (suspending writes one anyway).
    pub fn decide(&self) -> (Action, Cause) {
        if self.completed >= self.end_step {
            (Action::Stop, Cause::LastStep)
        } else if self.suspend_requested {
            (Action::Suspend, Cause::StopSignal)
        } else if self.checkpoint_requested {
            (Action::Checkpoint, Cause::Requested)
        } else if let Some(every) = self.checkpoint_every
            && every > 0
            && self.completed.is_multiple_of(every)
        {
            (Action::Checkpoint, Cause::Cadence(every))
        } else {
            (Action::Continue, Cause::Nothing)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(completed: u64) -> Boundary {
        Boundary {
            completed,
            end_step: 10,
            checkpoint_every: Some(4),
            suspend_requested: false,
            checkpoint_requested: false,
        }
    }

    #[test]
    fn checkpoints_follow_the_cadence_and_the_last_step_stops() {
        let actions: Vec<Action> = (1..=10).map(|c| at(c).decide().0).collect();
        use Action::*;
        assert_eq!(
            actions,
            [
                Continue, Continue, Continue, Checkpoint, Continue, Continue, Continue, Checkpoint, Continue, Stop
            ]
        );
        assert_eq!(at(8).decide().1, Cause::Cadence(4));
    }

    #[test]
    fn without_checkpoints_only_the_end_and_signals_matter() {
        let b = Boundary {
            checkpoint_every: None,
            ..at(4)
        };
        assert_eq!(b.decide(), (Action::Continue, Cause::Nothing));
        let zero = Boundary {
            checkpoint_every: Some(0),
            ..at(4)
        };
        assert_eq!(zero.decide().0, Action::Continue);
    }

    #[test]
    fn finishing_beats_a_signal_and_a_signal_beats_a_checkpoint() {
        let signalled = |completed| Boundary {
            suspend_requested: true,
            checkpoint_requested: true,
            ..at(completed)
        };
        assert_eq!(signalled(10).decide(), (Action::Stop, Cause::LastStep));
        assert_eq!(signalled(4).decide(), (Action::Suspend, Cause::StopSignal));
        let requested = Boundary {
            checkpoint_requested: true,
            ..at(3)
        };
        assert_eq!(requested.decide(), (Action::Checkpoint, Cause::Requested));
    }
}
