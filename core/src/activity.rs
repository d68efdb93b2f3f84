//! What an activity is to the engine: a probe (read-only: is the effect already there?)
//! and an apply (idempotent), with a retry policy.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::events::{EventBus, EventKind, Stream};
use crate::retry::RetryPolicy;
use crate::secret::{SecretRef, SecretStore, SecretValue};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An activity's failure, classified: a transient one is retried by the step's policy.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActivityError {
    pub message: String,
    pub transient: bool,
    /// From a probe: the in-doubt attempt is known to have run and ended with this error,
    /// so it is recorded as that attempt's outcome rather than running the step again.
    pub settles: bool,
}

impl ActivityError {
    pub fn transient(message: impl Into<String>) -> Self {
        ActivityError {
            message: message.into(),
            transient: true,
            settles: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        ActivityError {
            message: message.into(),
            transient: false,
            settles: false,
        }
    }

    /// Marks a probe's error as the in-doubt attempt's known outcome (see `settles`).
    pub fn settling(mut self) -> Self {
        self.settles = true;
        self
    }
}

/// What an activity gets from the engine while it runs.
#[derive(Clone)]
pub struct ActivityCx {
    step: String,
    attempt: u32,
    cancel: CancellationToken,
    events: EventBus,
    secrets: Option<Arc<dyn SecretStore>>,
    rerun_in_doubt: bool,
}

impl std::fmt::Debug for ActivityCx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityCx")
            .field("step", &self.step)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl ActivityCx {
    pub(crate) fn new(
        step: String,
        attempt: u32,
        cancel: CancellationToken,
        events: EventBus,
        secrets: Arc<dyn SecretStore>,
    ) -> Self {
        ActivityCx {
            step,
            attempt,
            cancel,
            events,
            secrets: Some(secrets),
            rerun_in_doubt: false,
        }
    }

    /// For an activity used outside any run: a live status query, or a test. Its output
    /// events go nowhere.
    pub fn standalone(step: &str) -> Self {
        ActivityCx {
            step: step.to_string(),
            attempt: 1,
            cancel: CancellationToken::new(),
            events: EventBus::new(crate::model::RunId::new()),
            secrets: None,
            rerun_in_doubt: false,
        }
    }

    /// The same, with a secret store for activities that keep or read secrets.
    pub fn with_secrets(mut self, secrets: Arc<dyn SecretStore>) -> Self {
        self.secrets = Some(secrets);
        self
    }

    fn store(&self) -> Result<&dyn SecretStore, ActivityError> {
        self.secrets
            .as_deref()
            .ok_or_else(|| ActivityError::permanent("this activity needs a secret store"))
    }

    /// Keeps a secret the activity obtained (a generated key, an init answer) and returns
    /// the reference its output may carry: the value never reaches the journal. Events of
    /// this run redact the value from then on.
    pub fn keep(&self, value: &SecretValue) -> Result<SecretRef, ActivityError> {
        self.events.redact(value.expose());
        self.store()?
            .put(value)
            .map_err(|e| ActivityError::permanent(e.to_string()))
    }

    /// The value behind a reference the activity's input carries. Events of this run
    /// redact it from then on.
    pub fn reveal(&self, reference: &SecretRef) -> Result<SecretValue, ActivityError> {
        let value = self
            .store()?
            .get(reference)
            .map_err(|e| ActivityError::permanent(e.to_string()))?;
        self.events.redact(value.expose());
        Ok(value)
    }

    /// Events of this run redact `value` from then on: for a part of a revealed secret
    /// (one key of several, or the same value in another encoding) that may show alone.
    pub fn redact(&self, value: &SecretValue) {
        self.events.redact(value.expose());
    }

    /// `text` as this run's events would carry it, every secret it knows replaced.
    pub fn redacted(&self, text: &str) -> String {
        self.events.redacted(text)
    }

    /// Drops a kept secret once nothing needs it any more; a missing one is no error.
    pub fn forget(&self, reference: &SecretRef) -> Result<(), ActivityError> {
        self.store()?
            .delete(reference)
            .map_err(|e| ActivityError::permanent(e.to_string()))
    }

    /// The step's journal key: stable across restarts, so a long activity can name what it
    /// leaves running (a detached process, a unit) after it and find it again.
    pub fn step(&self) -> &str {
        &self.step
    }

    /// A name for what this step leaves behind on a host (a detached process, a unit),
    /// unique across runs and the same on every resume: `<run>-<step, as safe characters>-<hash>`.
    pub fn instance(&self) -> String {
        let safe: String = self
            .step
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
                _ => '_',
            })
            .take(48)
            .collect();
        // FNV-1a: two keys that read alike once made safe still get different names.
        let hash = self.step.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!(
            "{}-{safe}-{:08x}",
            self.events.run().0.simple(),
            hash as u32
        )
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Whether this attempt runs again a step found in doubt (an [`InDoubt::Rerun`]
    /// activity): the attempt before it may have made the change this one finds made, so
    /// an activity that reports changes reports one.
    pub fn rerun_in_doubt(&self) -> bool {
        self.rerun_in_doubt
    }

    pub(crate) fn set_rerun_in_doubt(&mut self, rerun: bool) {
        self.rerun_in_doubt = rerun;
    }

    /// Cancelled when the run is cancelled: long activities stop early and report it.
    pub fn cancel_token(&self) -> &CancellationToken {
        &self.cancel
    }

    /// Streams a line of the activity's output as an event.
    pub fn output(&self, stream: Stream, line: impl Into<String>) {
        self.events.emit(EventKind::StepOutput {
            step: self.step.clone(),
            stream,
            line: line.into(),
        });
    }
}

/// What the engine does with a step found in doubt: started, with no outcome recorded,
/// because the process that ran it stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InDoubt {
    /// Its probe decides: the effect is there (the step completes from the probe) or not
    /// (the step runs again).
    Probe,
    /// Running it again is harmless: it runs again without a probe.
    Rerun,
    /// It must never run twice unchecked: the run pauses, naming the step, for a person to
    /// check and say what happened ([`Decision`]); `workflow cancel` gives up.
    Pause,
}

/// A person's word on a step that paused its run in doubt ([`InDoubt::Pause`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Its effect is there: the step is recorded done with [`Activity::assumed_done`]'s
    /// output, without running.
    Done,
    /// Its effect is not there: the step runs again.
    Redo,
}

/// One idempotent thing done to real infrastructure.
pub trait Activity: Send + Sync {
    type Output: Serialize + DeserializeOwned + Send;

    /// A short name of the activity's kind, shown in `workflow show`.
    fn kind(&self) -> &'static str;

    /// What happens to a step of this activity found in doubt. Every activity says it.
    fn in_doubt(&self) -> InDoubt;

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    /// The output recorded when a person says the effect of this step's interrupted
    /// attempt is there ([`Decision::Done`]); `None` when it cannot be known without
    /// running the step, so only [`Decision::Redo`] applies.
    fn assumed_done(&self) -> Option<Self::Output> {
        None
    }

    /// Whether [`Activity::probe`] can tell that a completed step's effect is still there,
    /// so that `workflow status --verify` asks it. An activity run again rather than
    /// probed in doubt has no such probe, nor has one a person must decide about.
    fn verifiable(&self) -> bool {
        self.in_doubt() == InDoubt::Probe
    }

    /// Read-only: the effect's output if it is already there, `None` if not.
    fn probe(
        &self,
        cx: &ActivityCx,
    ) -> impl Future<Output = Result<Option<Self::Output>, ActivityError>> + Send;

    /// Makes the effect. Safe to run again.
    fn apply(
        &self,
        cx: &ActivityCx,
    ) -> impl Future<Output = Result<Self::Output, ActivityError>> + Send;
}

/// An activity with its output as JSON, as the engine stores it.
pub(crate) trait DynActivity: Send + Sync {
    fn kind(&self) -> &'static str;
    fn in_doubt(&self) -> InDoubt;
    fn verifiable(&self) -> bool;
    fn policy(&self) -> RetryPolicy;
    fn assumed_done(&self) -> Result<Option<Value>, ActivityError>;
    fn probe<'a>(
        &'a self,
        cx: &'a ActivityCx,
    ) -> BoxFuture<'a, Result<Option<Value>, ActivityError>>;
    fn apply<'a>(&'a self, cx: &'a ActivityCx) -> BoxFuture<'a, Result<Value, ActivityError>>;
}

fn to_json<T: Serialize>(kind: &str, value: &T) -> Result<Value, ActivityError> {
    serde_json::to_value(value)
        .map_err(|e| ActivityError::permanent(format!("{kind}: cannot record its output: {e}")))
}

impl<A: Activity> DynActivity for A {
    fn kind(&self) -> &'static str {
        Activity::kind(self)
    }

    fn in_doubt(&self) -> InDoubt {
        Activity::in_doubt(self)
    }

    fn verifiable(&self) -> bool {
        Activity::verifiable(self)
    }

    fn policy(&self) -> RetryPolicy {
        self.retry_policy()
    }

    fn assumed_done(&self) -> Result<Option<Value>, ActivityError> {
        Activity::assumed_done(self)
            .map(|out| to_json(Activity::kind(self), &out))
            .transpose()
    }

    fn probe<'a>(
        &'a self,
        cx: &'a ActivityCx,
    ) -> BoxFuture<'a, Result<Option<Value>, ActivityError>> {
        Box::pin(async move {
            match Activity::probe(self, cx).await? {
                Some(out) => Ok(Some(to_json(Activity::kind(self), &out)?)),
                None => Ok(None),
            }
        })
    }

    fn apply<'a>(&'a self, cx: &'a ActivityCx) -> BoxFuture<'a, Result<Value, ActivityError>> {
        Box::pin(async move {
            let out = Activity::apply(self, cx).await?;
            to_json(Activity::kind(self), &out)
        })
    }
}
