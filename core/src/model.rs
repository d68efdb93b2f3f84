//! The run and step model: states, the legal transitions between them, and the records
//! the journal keeps. Pure data: no I/O here.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::retry::RetryPolicy;
use crate::time::Millis;

/// A run's id: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub Uuid);

impl RunId {
    pub fn new() -> Self {
        RunId(Uuid::now_v7())
    }

    /// The id as 32 hex digits, the form prefixes are taken of.
    pub fn hex(&self) -> String {
        self.0.simple().to_string()
    }
}

/// The shortest prefix naming a run among others, as git abbreviates commits.
pub const SHORT_ID_MIN: usize = 8;

/// Each id's shortest prefix, of at least [`SHORT_ID_MIN`] hex digits, that no other id
/// of `ids` shares, in the order of `ids`. Ids made in the same millisecond share their
/// first 12 digits (a UUID v7 starts with its time), so eight digits are not always enough.
pub fn unique_prefixes(ids: &[RunId]) -> Vec<String> {
    let mut sorted: Vec<String> = ids.iter().map(RunId::hex).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let common = |a: &str, b: &str| a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    ids.iter()
        .map(|id| {
            let hex = id.hex();
            let at = sorted.partition_point(|s| s.as_str() < hex.as_str());
            let before = at.checked_sub(1).map_or(0, |i| common(&sorted[i], &hex));
            let after = sorted.get(at + 1).map_or(0, |s| common(s, &hex));
            let len = (before.max(after) + 1).clamp(SHORT_ID_MIN, hex.len());
            hex[..len].to_string()
        })
        .collect()
}

impl Default for RunId {
    fn default() -> Self {
        RunId::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(RunId)
    }
}

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    WaitingForInput,
    /// Retries of a step are exhausted; `workflow resume` continues.
    Paused,
    Cancelling,
    Completed,
    Failed,
    Cancelled,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::WaitingForInput => "waiting for input",
            RunState::Paused => "paused",
            RunState::Cancelling => "cancelling",
            RunState::Completed => "completed",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// A finished run is never driven again.
    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Completed | RunState::Cancelled)
    }

    /// The transition table. Anything not listed is illegal and reported as
    /// [`IllegalTransition`], never a panic.
    pub fn can_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (
                Running,
                WaitingForInput | Paused | Cancelling | Completed | Failed | Running
            ) | (WaitingForInput | Paused | Failed, Running | Cancelling)
                | (Cancelling, Cancelling | Cancelled)
        )
    }

    pub fn transition(self, next: RunState) -> Result<RunState, IllegalTransition> {
        if self.can_become(next) {
            Ok(next)
        } else {
            Err(IllegalTransition {
                from: self,
                to: next,
            })
        }
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("E_ILLEGAL_TRANSITION: a {from} run cannot become {to}")]
pub struct IllegalTransition {
    pub from: RunState,
    pub to: RunState,
}

/// What a run is: written once when it is created.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub id: RunId,
    pub workflow: String,
    pub workflow_version: u32,
    pub input: Value,
    /// The Foundry version that started the run; status shows it after an upgrade.
    pub foundry_version: String,
    pub created_at: Millis,
}

/// The mutable part of a run's header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunMeta {
    pub state: RunState,
    pub updated_at: Millis,
    /// The last error that stopped the run, if any.
    pub error: Option<String>,
}

/// Who drives a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub pid: u32,
    pub host: String,
    pub started_at: Millis,
    pub heartbeat_at: Millis,
}

impl fmt::Display for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} on host {} (since {})",
            self.pid,
            self.host,
            self.started_at.rfc3339()
        )
    }
}

/// The one-line outcome kept after a run completes, when its steps are gone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub steps: u64,
    pub finished_at: Millis,
    pub duration_ms: u64,
    pub output: Value,
}

/// A step's journaled state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepRecordState {
    /// Started durably; no outcome recorded yet.
    Started,
    Completed,
    Failed,
}

/// One step in the journal. The key is the workflow's stable key, scoped and numbered by
/// occurrence: `host-a/openbao/container#0`. Empty and default fields are left out of the
/// encoding: a 10,000-step journal is read whole by `workflow status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub seq: u64,
    pub key: String,
    pub kind: String,
    pub state: StepRecordState,
    /// Attempts started so far (1 on the first).
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "is_null")]
    pub output: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the last error is worth another attempt.
    #[serde(default, skip_serializing_if = "is_false")]
    pub transient: bool,
    /// When the next attempt may start; `None` when none is scheduled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
    /// Retries were exhausted: the run paused on this step.
    #[serde(default, skip_serializing_if = "is_false")]
    pub exhausted: bool,
    /// The step's outcome was taken from the activity's probe after a crash, or from a
    /// person's word that its effect is there (`workflow resume --done`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub from_probe: bool,
    /// Found in doubt, and of an activity that must not run twice unchecked: the run
    /// paused on it until a person says whether it took effect (`workflow resume --done`
    /// or `--redo`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub awaits_decision: bool,
    pub first_started_at: Millis,
    pub started_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// The retry policy, when it is not [`RetryPolicy::default`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<RetryPolicy>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `None` and JSON `null` are both "no output".
fn is_null(v: &Option<Value>) -> bool {
    v.as_ref().is_none_or(Value::is_null)
}

/// A step as a person sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Done,
    /// Being run by the driving process now.
    Running,
    /// Started, no outcome, and no process is running it: the probe decides on resume,
    /// or a person does for a step that must not run twice unchecked.
    InDoubt,
    /// Failed and waiting for its next attempt.
    Pending,
    /// Failed for good, or retries exhausted.
    Failed,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Done => "done",
            StepStatus::Running => "running",
            StepStatus::InDoubt => "in doubt",
            StepStatus::Pending => "pending",
            StepStatus::Failed => "failed",
        }
    }
}

impl StepRecord {
    /// A step `key` of `kind` first started at `now`, before its first attempt.
    pub fn new_started(seq: u64, key: String, kind: String, now: Millis) -> StepRecord {
        StepRecord {
            seq,
            key,
            kind,
            state: StepRecordState::Started,
            attempt: 0,
            output: None,
            error: None,
            transient: false,
            next_attempt_at: None,
            exhausted: false,
            from_probe: false,
            awaits_decision: false,
            first_started_at: now,
            started_at: now,
            finished_at: None,
            policy: None,
        }
    }

    /// The step's status; `driven` says whether a live process owns the run.
    pub fn status(&self, driven: bool) -> StepStatus {
        match self.state {
            StepRecordState::Completed => StepStatus::Done,
            StepRecordState::Started if driven => StepStatus::Running,
            StepRecordState::Started => StepStatus::InDoubt,
            StepRecordState::Failed if self.awaits_decision => StepStatus::InDoubt,
            StepRecordState::Failed if self.transient && !self.exhausted => StepStatus::Pending,
            StepRecordState::Failed => StepStatus::Failed,
        }
    }

    /// Time a process spent on the step by its last record: from the first attempt to
    /// the last failure, or to the start of the attempt in doubt.
    pub fn time_driven(&self) -> std::time::Duration {
        let last = match self.state {
            StepRecordState::Started => self.started_at,
            _ => self.finished_at.unwrap_or(self.started_at),
        };
        self.first_started_at.until(last)
    }

    /// Time spent on the step so far, from its first attempt.
    pub fn duration_ms(&self, now: Millis) -> u64 {
        let end = self.finished_at.unwrap_or(now);
        end.0.saturating_sub(self.first_started_at.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_table_refuses_illegal_moves() {
        assert!(RunState::Paused.transition(RunState::Running).is_ok());
        assert!(RunState::Completed.transition(RunState::Running).is_err());
        assert!(RunState::Cancelled.transition(RunState::Running).is_err());
        let err = RunState::Cancelling
            .transition(RunState::Completed)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("E_ILLEGAL_TRANSITION: a cancelling run cannot become completed")
        );
    }

    fn id(hex: &str) -> RunId {
        hex.parse().expect("a uuid")
    }

    #[test]
    fn short_ids_are_unique_prefixes() {
        let a = id("019ac2a1b2c3700080000000000000a1");
        let b = id("019ac2a1b2c3700080000000000000b2");
        let c = id("019ac2a2000070008000000000000001");
        let other = id("7f000000000070008000000000000001");
        let shorts = unique_prefixes(&[a, b, c, other]);
        assert_eq!(
            shorts,
            vec![
                "019ac2a1b2c3700080000000000000a",
                "019ac2a1b2c3700080000000000000b",
                "019ac2a2",
                "7f000000",
            ]
        );
        assert_eq!(unique_prefixes(&[a]), vec!["019ac2a1"]);
        // Two runs made at once still get two names.
        let (x, y) = (RunId::new(), RunId::new());
        let both = unique_prefixes(&[x, y]);
        assert_ne!(both[0], both[1]);
        assert!(x.hex().starts_with(&both[0]) && y.hex().starts_with(&both[1]));
    }

    #[test]
    fn step_status_depends_on_driver() {
        let mut r = StepRecord {
            attempt: 1,
            ..StepRecord::new_started(0, "k#0".into(), "noop".into(), Millis(1))
        };
        assert_eq!(r.status(true), StepStatus::Running);
        assert_eq!(r.status(false), StepStatus::InDoubt);
        r.state = StepRecordState::Failed;
        r.transient = true;
        assert_eq!(r.status(false), StepStatus::Pending);
        r.exhausted = true;
        assert_eq!(r.status(false), StepStatus::Failed);
        r.awaits_decision = true;
        assert_eq!(
            r.status(true),
            StepStatus::InDoubt,
            "until a person decides"
        );
    }
}
