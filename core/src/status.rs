//! A run as `workflow list/status/show` present it, whether read from its journal or
//! asked of the process driving it.

use serde::{Deserialize, Serialize};

use crate::events::{Event, EventKind};
use crate::journal::JournalSnapshot;
use crate::model::{Lease, RunId, RunState, StepStatus};
use crate::retry::RetryPolicy;
use crate::time::Millis;

/// A run's journal plus who drives it now, if anyone.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunView {
    pub snapshot: JournalSnapshot,
    /// The live driver's lease; `None` when no process drives the run.
    pub driver: Option<Lease>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepCounts {
    pub total: u64,
    pub done: u64,
    pub running: u64,
    pub in_doubt: u64,
    pub pending: u64,
    pub failed: u64,
}

/// One step as shown by `workflow show`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepView {
    pub key: String,
    pub kind: String,
    pub state: StepStatus,
    pub attempts: u32,
    pub next_attempt_at: Option<Millis>,
    pub last_error: Option<String>,
    pub duration_ms: u64,
    pub from_probe: bool,
    pub policy: RetryPolicy,
}

impl RunView {
    pub fn id(&self) -> RunId {
        self.snapshot.info.id
    }

    pub fn state(&self) -> RunState {
        self.snapshot.meta.state
    }

    /// A run marked running with no live driver was interrupted: resume picks it up.
    pub fn interrupted(&self) -> bool {
        self.driver.is_none() && matches!(self.state(), RunState::Running | RunState::Cancelling)
    }

    pub fn counts(&self) -> StepCounts {
        let driven = self.driver.is_some();
        let mut c = StepCounts::default();
        if let Some(summary) = &self.snapshot.summary {
            c.total = summary.steps;
            c.done = summary.steps;
            return c;
        }
        for step in &self.snapshot.steps {
            c.total += 1;
            match step.status(driven) {
                StepStatus::Done => c.done += 1,
                StepStatus::Running => c.running += 1,
                StepStatus::InDoubt => c.in_doubt += 1,
                StepStatus::Pending => c.pending += 1,
                StepStatus::Failed => c.failed += 1,
            }
        }
        c
    }

    /// The step the run is at: the latest one without a completion.
    pub fn current_step(&self) -> Option<&str> {
        let driven = self.driver.is_some();
        self.snapshot
            .steps
            .iter()
            .rev()
            .find(|s| s.status(driven) != StepStatus::Done)
            .map(|s| s.key.as_str())
    }

    pub fn steps(&self, now: Millis) -> Vec<StepView> {
        let driven = self.driver.is_some();
        self.snapshot
            .steps
            .iter()
            .map(|s| StepView {
                key: s.key.clone(),
                kind: s.kind.clone(),
                state: s.status(driven),
                attempts: s.attempt,
                next_attempt_at: s.next_attempt_at,
                last_error: s.error.clone(),
                duration_ms: s.duration_ms(now),
                from_probe: s.from_probe,
                policy: s.policy.clone().unwrap_or_default(),
            })
            .collect()
    }
}

impl RunView {
    /// The events that tell how the run went from `before` to this view, for a follower
    /// that reads the journal rather than the driver (a driver on another machine): each
    /// step started, completed or failed since, in journal order (after a cancel, when the
    /// run became cancelling), then the run's end. A
    /// step that started and ended between the two reads shows its end only; output lines
    /// are the driver's alone.
    pub fn events_since(&self, before: &RunView) -> Vec<Event> {
        let at = self.snapshot.meta.updated_at;
        let event = |kind| Event {
            run: self.id(),
            at,
            kind,
        };
        let now = Millis::now();
        let was: std::collections::HashMap<String, StepView> = before
            .steps(now)
            .into_iter()
            .map(|v| (v.key.clone(), v))
            .collect();
        let mut events = Vec::new();
        let cancelled = |state| matches!(state, RunState::Cancelling | RunState::Cancelled);
        if cancelled(self.state()) && !cancelled(before.state()) {
            events.push(event(EventKind::CancelRequested));
        }
        for step in self.steps(now) {
            let old = was.get(&step.key);
            let changed = old.is_none_or(|o| o.state != step.state || o.attempts != step.attempts);
            if !changed {
                continue;
            }
            let kind = match step.state {
                StepStatus::Running => EventKind::StepStarted {
                    step: step.key.clone(),
                    kind: step.kind.clone(),
                    attempt: step.attempts,
                },
                StepStatus::Done => EventKind::StepCompleted {
                    step: step.key.clone(),
                    duration_ms: step.duration_ms,
                    from_probe: step.from_probe,
                },
                StepStatus::InDoubt => EventKind::StepInDoubt {
                    step: step.key.clone(),
                },
                StepStatus::Pending | StepStatus::Failed => EventKind::StepFailed {
                    step: step.key.clone(),
                    attempt: step.attempts,
                    error: step.last_error.clone().unwrap_or_default(),
                    transient: step.state == StepStatus::Pending,
                    next_attempt_at: step.next_attempt_at,
                    exhausted: step.state == StepStatus::Failed,
                },
            };
            events.push(event(kind));
        }
        if self.state().is_finished() && !before.state().is_finished() {
            events.push(event(EventKind::RunFinished {
                state: self.state(),
                error: self.snapshot.meta.error.clone(),
            }));
        }
        events
    }
}
