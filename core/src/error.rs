//! Why a run stopped.

use crate::journal::JournalError;
use crate::writer::WriteError;

#[derive(Clone, Debug, thiserror::Error)]
pub enum RunError {
    /// A step failed with a permanent error: the run fails.
    #[error("step {step} failed: {error}")]
    StepFailed { step: String, error: String },
    /// A step's retries are exhausted: the run pauses.
    #[error("step {step} failed after {attempts} attempt{}: {error}", if *.attempts == 1 { "" } else { "s" })]
    Exhausted {
        step: String,
        attempts: u32,
        error: String,
    },
    /// A step that must never run twice unchecked was found in doubt: the run pauses.
    #[error(
        "step {step} was interrupted and must not run twice unchecked; check whether it took effect, then `foundry workflow resume <run> --done {step}` if it did, `--redo {step}` if it did not, or `foundry workflow cancel <run>` to give up"
    )]
    InDoubt { step: String },
    #[error("cancelled")]
    Cancelled,
    /// Input is needed and nobody can be asked: the run waits.
    #[error("step {step} needs input: {prompt}")]
    WaitingForInput { step: String, prompt: String },
    /// The journal could not be written: the run stops where it is.
    #[error("{0}")]
    Journal(String),
    /// The workflow itself refused to go on (bad input, an impossible plan).
    #[error("{0}")]
    Workflow(String),
    /// Verifying a run (`workflow status --verify`) reached a step that has not completed:
    /// the replay stops there, as it must change nothing.
    #[error("step {step} has not completed")]
    Unfinished { step: String },
    /// Several children of a fan-out failed.
    #[error("{} of the fan-out failed: {}", .0.len(), .0.iter().map(|(k, e)| format!("{k}: {e}")).collect::<Vec<_>>().join("; "))]
    Children(Vec<(String, RunError)>),
}

impl RunError {
    pub fn workflow(message: impl Into<String>) -> Self {
        RunError::Workflow(message.into())
    }
}

impl From<JournalError> for RunError {
    fn from(e: JournalError) -> Self {
        RunError::Journal(e.to_string())
    }
}

impl From<WriteError> for RunError {
    fn from(e: WriteError) -> Self {
        RunError::Journal(e.to_string())
    }
}
