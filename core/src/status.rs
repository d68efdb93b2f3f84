//! A run as `workflow list/status/show` present it, whether read from its journal or
//! asked of the process driving it.

use serde::{Deserialize, Serialize};

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
