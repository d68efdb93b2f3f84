//! Verifying an unfinished run (`workflow status --verify`): its workflow replayed from the
//! journal with every completed step's effect probed, read-only, up to the first step of
//! each branch that has not completed. Nothing runs, nothing is written, no one is asked:
//! a drift (an effect gone since its step completed, say a container removed by hand) is
//! reported, not repaired. Resuming does not redo a completed step either; a drifted run is
//! started over, and the new run's probes find what is still there.

use crate::sync::lock;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::activity::{ActivityCx, DynActivity};
use crate::error::RunError;
use crate::model::{RunId, StepRecord, StepRecordState};

/// How long one probe may take before it is reported as unanswered.
const PROBE_DEADLINE: Duration = Duration::from_secs(60);

/// What the probe of one completed step found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "result")]
pub enum Finding {
    /// Its effect is there.
    Present,
    /// Its effect is gone: the run's record of it no longer holds.
    Drifted,
    /// Its activity has no probe that can tell (it runs again rather than being probed,
    /// or a person decides about it).
    Unchecked,
    /// The probe could not answer (a host unreachable, say).
    Failed { error: String },
}

/// One completed step and what its probe found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedStep {
    pub key: String,
    pub kind: String,
    #[serde(flatten)]
    pub finding: Finding,
}

/// A run verified: its completed steps in the order they were journaled, and where each
/// branch of the replay stopped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verification {
    pub run: RunId,
    pub steps: Vec<VerifiedStep>,
    /// The first step of each branch that has not completed.
    pub stopped_at: Vec<String>,
    /// Why the replay ended otherwise (the workflow refused to go on).
    pub error: Option<String>,
}

impl Verification {
    /// The steps whose effect is gone.
    pub fn drifted(&self) -> impl Iterator<Item = &VerifiedStep> {
        self.steps.iter().filter(|s| s.finding == Finding::Drifted)
    }

    /// The steps whose probe could not answer.
    pub fn failed(&self) -> impl Iterator<Item = &VerifiedStep> {
        self.steps
            .iter()
            .filter(|s| matches!(s.finding, Finding::Failed { .. }))
    }
}

/// What a replay being verified has found so far.
#[derive(Default)]
pub(crate) struct Verifier {
    found: Mutex<Vec<(u64, VerifiedStep)>>,
    stopped: Mutex<Vec<String>>,
}

impl Verifier {
    /// What the replay found, in the journal's order, and where each branch stopped.
    pub(crate) fn take(&self) -> (Vec<VerifiedStep>, Vec<String>) {
        let mut found = std::mem::take(&mut *lock(&self.found));
        found.sort_by_key(|(seq, _)| *seq);
        let mut stopped = std::mem::take(&mut *lock(&self.stopped));
        stopped.sort();
        (found.into_iter().map(|(_, s)| s).collect(), stopped)
    }

    /// A step reached by the replay: its recorded output once its effect is probed, or
    /// the end of this branch when it has not completed.
    pub(crate) async fn step(
        &self,
        cx: &ActivityCx,
        activity: &dyn DynActivity,
        record: Option<StepRecord>,
    ) -> Result<Value, RunError> {
        let step = cx.step().to_string();
        let Some(record) = record.filter(|r| r.state == StepRecordState::Completed) else {
            lock(&self.stopped).push(step.clone());
            return Err(RunError::Unfinished { step });
        };
        let finding = if activity.verifiable() {
            match tokio::time::timeout(PROBE_DEADLINE, activity.probe(cx)).await {
                Ok(Ok(Some(_))) => Finding::Present,
                Ok(Ok(None)) => Finding::Drifted,
                Ok(Err(e)) => Finding::Failed {
                    error: cx.redacted(&e.message),
                },
                Err(_) => Finding::Failed {
                    error: format!("no answer within {} s", PROBE_DEADLINE.as_secs()),
                },
            }
        } else {
            Finding::Unchecked
        };
        lock(&self.found).push((
            record.seq,
            VerifiedStep {
                key: step,
                kind: record.kind.clone(),
                finding,
            },
        ));
        Ok(record.output.unwrap_or(Value::Null))
    }
}
