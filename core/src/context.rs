//! A run's context: how a workflow calls activities through the engine. Every call is a
//! step with a stable key, memoized by the journal.

use crate::sync::lock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::activity::{Activity, ActivityCx, ActivityError, Decision, DynActivity, InDoubt};
use crate::error::RunError;
use crate::events::{EventBus, EventKind};
use crate::failpoint::{self, Phase};
use crate::input::{Answer, InputProvider, Question};
use crate::journal::WriteOp;
use crate::model::{RunId, StepRecord, StepRecordState};
use crate::retry::RetryPolicy;
use crate::secret::{SecretRef, SecretStore, SecretValue};
use crate::time::Millis;
use crate::verify::Verifier;
use crate::writer::Writer;

/// A registered undo, run best-effort in reverse order when the run is cancelled.
pub(crate) struct UndoEntry {
    pub(crate) step: String,
    pub(crate) activity: Box<dyn DynActivity>,
}

/// What every context of one run shares.
pub(crate) struct RunShared {
    pub(crate) id: RunId,
    pub(crate) writer: Writer,
    /// Step records by key: the journal as loaded, then kept current.
    memo: Mutex<HashMap<String, StepRecord>>,
    occurrences: Mutex<HashMap<String, u32>>,
    next_seq: AtomicU64,
    pub(crate) events: EventBus,
    pub(crate) cancel: CancellationToken,
    /// Replaying a run that was being cancelled: recorded steps replay, new ones refuse.
    pub(crate) cancelling: AtomicBool,
    pub(crate) undo: Mutex<Vec<UndoEntry>>,
    pub(crate) secrets: Arc<dyn SecretStore>,
    input: Arc<dyn InputProvider>,
    /// A person's word on steps found in doubt, by key, each applied once when its step
    /// is reached (`workflow resume --done` / `--redo`).
    decisions: Mutex<HashMap<String, Decision>>,
    /// Set when the run is replayed to verify it: completed steps are probed, nothing
    /// runs and nothing is written.
    pub(crate) verifier: Option<Verifier>,
}

impl RunShared {
    pub(crate) fn new(
        id: RunId,
        writer: Writer,
        steps: Vec<StepRecord>,
        events: EventBus,
        secrets: Arc<dyn SecretStore>,
        input: Arc<dyn InputProvider>,
        decisions: HashMap<String, Decision>,
    ) -> RunShared {
        let next_seq = steps.iter().map(|s| s.seq + 1).max().unwrap_or(0);
        let memo = steps.into_iter().map(|s| (s.key.clone(), s)).collect();
        RunShared {
            id,
            writer,
            memo: Mutex::new(memo),
            occurrences: Mutex::new(HashMap::new()),
            next_seq: AtomicU64::new(next_seq),
            events,
            cancel: CancellationToken::new(),
            cancelling: AtomicBool::new(false),
            undo: Mutex::new(Vec::new()),
            secrets,
            input,
            decisions: Mutex::new(decisions),
            verifier: None,
        }
    }

    /// Every step record as the run knows it now.
    pub(crate) fn records(&self) -> Vec<StepRecord> {
        lock(&self.memo).values().cloned().collect()
    }

    fn take_decision(&self, key: &str) -> Option<Decision> {
        lock(&self.decisions).remove(key)
    }

    pub(crate) fn take_undo(&self) -> Vec<UndoEntry> {
        std::mem::take(&mut *lock(&self.undo))
    }
}

/// A step resumed after a pause or a failure for good, or redone on a person's word: a
/// fresh budget of attempts.
fn fresh_budget(record: &mut StepRecord, now: Millis) {
    record.attempt = 0;
    record.first_started_at = now;
    record.exhausted = false;
    record.awaits_decision = false;
}

/// A workflow's handle on its run. Cheap to clone; a fan-out child gets one scoped under
/// its name.
#[derive(Clone)]
pub struct Ctx {
    pub(crate) shared: Arc<RunShared>,
    pub(crate) scope: String,
    pub(crate) cancel: CancellationToken,
}

fn decode<T: DeserializeOwned>(step: &str, value: Value) -> Result<T, RunError> {
    serde_json::from_value(value)
        .map_err(|e| RunError::workflow(format!("step {step}: recorded output does not fit: {e}")))
}

impl Ctx {
    pub(crate) fn root(shared: Arc<RunShared>) -> Ctx {
        let cancel = shared.cancel.clone();
        Ctx {
            shared,
            scope: String::new(),
            cancel,
        }
    }

    pub fn run_id(&self) -> RunId {
        self.shared.id
    }

    /// Whether the run has been asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled() || self.shared.cancelling.load(Ordering::Relaxed)
    }

    /// The journal key of the next call with `key` in this scope.
    fn next_id(&self, key: &str) -> String {
        let scoped = format!("{}{key}", self.scope);
        let mut occ = lock(&self.shared.occurrences);
        let n = occ.entry(scoped.clone()).or_insert(0);
        let id = format!("{scoped}#{n}");
        *n += 1;
        id
    }

    /// Runs `activity` as the step `key`: returns the recorded output if the step is
    /// already done, and otherwise runs it under the engine's contract.
    pub async fn step<A: Activity>(&self, key: &str, activity: &A) -> Result<A::Output, RunError> {
        let id = self.next_id(key);
        let value = self.run_step(&id, activity, false).await?;
        decode(&id, value)
    }

    /// Like [`Ctx::step`], and registers `undo` to run if the run is later cancelled.
    pub async fn step_with_undo<A: Activity, U: Activity + 'static>(
        &self,
        key: &str,
        activity: &A,
        undo: U,
    ) -> Result<A::Output, RunError> {
        let id = self.next_id(key);
        let value = self.run_step(&id, activity, false).await?;
        lock(&self.shared.undo).push(UndoEntry {
            step: format!("undo/{id}"),
            activity: Box::new(undo),
        });
        decode(&id, value)
    }

    /// Runs an undo step: it runs even though the run is cancelling.
    pub(crate) async fn run_undo(&self, entry: &UndoEntry) -> Result<Value, RunError> {
        self.run_step(&entry.step, entry.activity.as_ref(), true)
            .await
    }

    fn record_of(&self, id: &str) -> Option<StepRecord> {
        lock(&self.shared.memo).get(id).cloned()
    }

    fn remember(&self, record: &StepRecord) {
        lock(&self.shared.memo).insert(record.key.clone(), record.clone());
    }

    /// An undo step (`force`) runs while the run is cancelling, so it gets a token of its own.
    fn activity_cx(&self, id: &str, attempt: u32, force: bool) -> ActivityCx {
        let cancel = if force {
            CancellationToken::new()
        } else {
            self.cancel.clone()
        };
        ActivityCx::new(
            id.to_string(),
            attempt,
            cancel,
            self.shared.events.clone(),
            self.shared.secrets.clone(),
        )
    }

    async fn write(&self, record: &StepRecord, events: Vec<EventKind>) -> Result<(), RunError> {
        self.remember(record);
        Ok(self
            .shared
            .writer
            .write(vec![WriteOp::Step(record.clone())], events)
            .await?)
    }

    fn write_lazy(&self, record: &StepRecord, events: Vec<EventKind>) -> Result<(), RunError> {
        self.remember(record);
        Ok(self
            .shared
            .writer
            .write_lazy(vec![WriteOp::Step(record.clone())], events)?)
    }

    fn complete(
        &self,
        mut record: StepRecord,
        output: Value,
        from_probe: bool,
    ) -> Result<Value, RunError> {
        let now = Millis::now();
        record.state = StepRecordState::Completed;
        record.output = Some(output.clone());
        record.error = None;
        record.next_attempt_at = None;
        record.from_probe = from_probe;
        record.finished_at = Some(now);
        let event = EventKind::StepCompleted {
            step: record.key.clone(),
            duration_ms: record.duration_ms(now),
            from_probe,
        };
        self.write_lazy(&record, vec![event])?;
        Ok(output)
    }

    /// Waits until `at`, or until the run is cancelled.
    async fn wait_until(&self, at: Millis, force: bool) -> Result<(), RunError> {
        let wait = Millis::now().until(at);
        if wait.is_zero() {
            return Ok(());
        }
        if force {
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => Ok(()),
            () = self.cancel.cancelled() => Err(RunError::Cancelled),
        }
    }

    /// A person said the effect of a step in doubt is there: it is recorded done with the
    /// output its activity assumes, without running.
    fn assume_done(
        &self,
        record: StepRecord,
        activity: &dyn DynActivity,
    ) -> Result<Value, RunError> {
        let step = record.key.clone();
        match activity.assumed_done() {
            Ok(Some(output)) => self.complete(record, output, true),
            Ok(None) => Err(RunError::StepFailed {
                step: step.clone(),
                error: format!(
                    "a {} step's output cannot be known without running it: resume with `--redo {step}` instead of `--done`",
                    activity.kind()
                ),
            }),
            Err(e) => Err(RunError::StepFailed {
                step,
                error: e.message,
            }),
        }
    }

    /// A step that must not run twice, found in doubt: recorded as failed for good and
    /// awaiting a person's decision, so the run pauses on it until `workflow resume`
    /// says whether it took effect (`--done`) or not (`--redo`).
    async fn pause_in_doubt(&self, mut record: StepRecord) -> Result<Value, RunError> {
        let step = record.key.clone();
        self.shared
            .events
            .emit(EventKind::StepInDoubt { step: step.clone() });
        let error = RunError::InDoubt { step: step.clone() };
        record.state = StepRecordState::Failed;
        record.error = Some(error.to_string());
        record.transient = false;
        record.exhausted = true;
        record.awaits_decision = true;
        record.next_attempt_at = None;
        record.finished_at = Some(Millis::now());
        let event = EventKind::StepFailed {
            step,
            attempt: record.attempt,
            error: error.to_string(),
            transient: false,
            next_attempt_at: None,
            exhausted: true,
        };
        self.write(&record, vec![event]).await?;
        Err(error)
    }

    /// A cancelled run reaching a step: a step in doubt is probed first, so that an effect
    /// already there is recorded (and its undo registered by the caller) rather than left
    /// behind; anything else stops here.
    async fn settle_for_cancel(
        &self,
        id: &str,
        activity: &dyn DynActivity,
        existing: Option<StepRecord>,
    ) -> Result<Value, RunError> {
        let in_doubt = existing.filter(|r| r.state == StepRecordState::Started);
        let Some(record) = in_doubt.filter(|_| activity.in_doubt() == InDoubt::Probe) else {
            return Err(RunError::Cancelled);
        };
        self.shared.events.emit(EventKind::StepInDoubt {
            step: id.to_string(),
        });
        // The probe runs to its end: the run's token is already cancelled.
        let cx = self.activity_cx(id, record.attempt, true);
        let probed = activity.probe(&cx).await;
        self.shared.events.emit(EventKind::ProbeResult {
            step: id.to_string(),
            present: matches!(probed, Ok(Some(_))),
        });
        match probed {
            Ok(Some(output)) => self.complete(record, output, true),
            Ok(None) => Err(RunError::Cancelled),
            Err(e) => {
                tracing::warn!(step = id, error = %e, "probe of a step in doubt failed while cancelling; its effect, if any, stays");
                Err(RunError::Cancelled)
            }
        }
    }

    async fn run_step(
        &self,
        id: &str,
        activity: &dyn DynActivity,
        force: bool,
    ) -> Result<Value, RunError> {
        let existing = self.record_of(id);
        if let Some(verifier) = &self.shared.verifier {
            let cx = self.activity_cx(id, 0, true);
            return verifier.step(&cx, activity, existing).await;
        }
        if let Some(r) = &existing
            && r.state == StepRecordState::Completed
        {
            return Ok(r.output.clone().unwrap_or(Value::Null));
        }
        if !force && self.is_cancelled() {
            return self.settle_for_cancel(id, activity, existing).await;
        }
        let policy = activity.policy();
        let now = Millis::now();
        // The in-doubt attempt's outcome, when its probe found that it ran and failed.
        let mut settled: Option<ActivityError> = None;
        // The next attempt runs again a step of the `Rerun` class found in doubt.
        let mut rerun = false;
        let mut record = match existing {
            Some(mut r) => {
                // Recorded by an earlier drive: the retry budget's clock counts the time a
                // process ran the step, not the time nothing did.
                r.first_started_at = now.saturating_sub(r.time_driven());
                // A person's word, checked by the driver to name a step in doubt.
                let decided = self.shared.take_decision(id);
                match r.state {
                    _ if decided == Some(Decision::Done) => {
                        return self.assume_done(r, activity);
                    }
                    _ if decided == Some(Decision::Redo) => fresh_budget(&mut r, now),
                    StepRecordState::Failed if r.awaits_decision => {
                        // Still nobody said whether it took effect: the run stays paused.
                        self.shared.events.emit(EventKind::StepInDoubt {
                            step: id.to_string(),
                        });
                        return Err(RunError::InDoubt {
                            step: id.to_string(),
                        });
                    }
                    StepRecordState::Started if activity.in_doubt() == InDoubt::Pause => {
                        return self.pause_in_doubt(r).await;
                    }
                    StepRecordState::Started if activity.in_doubt() == InDoubt::Rerun => {
                        self.shared.events.emit(EventKind::StepInDoubt {
                            step: id.to_string(),
                        });
                        rerun = true;
                    }
                    StepRecordState::Started => {
                        // In doubt: the process stopped between `started` and an outcome.
                        self.shared.events.emit(EventKind::StepInDoubt {
                            step: id.to_string(),
                        });
                        let cx = self.activity_cx(id, r.attempt, force);
                        let probed = activity.probe(&cx).await;
                        let present = matches!(probed, Ok(Some(_)));
                        self.shared.events.emit(EventKind::ProbeResult {
                            step: id.to_string(),
                            present,
                        });
                        match probed {
                            Ok(Some(output)) => return self.complete(r, output, true),
                            Err(e) if e.settles => settled = Some(e),
                            Err(e) => {
                                let error = self.shared.events.redacted(&e.message);
                                tracing::warn!(step = id, %error, "probe failed; running the step again");
                            }
                            Ok(None) => {}
                        }
                    }
                    StepRecordState::Failed if r.transient && !r.exhausted => {
                        // Keep the schedule journaled before the restart.
                        if let Some(at) = r.next_attempt_at {
                            self.wait_until(at, force).await?;
                        }
                    }
                    // Paused or failed for good, and resumed: a fresh budget of attempts.
                    _ => fresh_budget(&mut r, now),
                }
                r
            }
            None => StepRecord::new_started(
                self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
                id.to_string(),
                activity.kind().to_string(),
                now,
            ),
        };
        loop {
            let result = match settled.take() {
                Some(error) => Err(error),
                None => {
                    record.attempt += 1;
                    record.state = StepRecordState::Started;
                    record.started_at = Millis::now();
                    record.next_attempt_at = None;
                    record.policy = (policy != RetryPolicy::default()).then(|| policy.clone());
                    self.write(&record, vec![]).await?;
                    self.shared.events.emit(EventKind::StepStarted {
                        step: id.to_string(),
                        kind: record.kind.clone(),
                        attempt: record.attempt,
                    });
                    failpoint::hit(id, Phase::Started);

                    let mut cx = self.activity_cx(id, record.attempt, force);
                    cx.set_rerun_in_doubt(std::mem::take(&mut rerun));
                    let result = activity.apply(&cx).await;
                    failpoint::hit(id, Phase::Effect);
                    result
                }
            };

            let mut error = match result {
                Ok(output) => return self.complete(record, output, false),
                Err(e) => e,
            };
            // An error message may quote a command's output: never journal a secret in it.
            error.message = self.shared.events.redacted(&error.message);
            let now = Millis::now();
            let cancelled = !force && self.cancel.is_cancelled();
            let delay = if error.transient && !cancelled {
                policy.delay_after(record.attempt, record.first_started_at.until(now))
            } else {
                None
            };
            record.state = StepRecordState::Failed;
            record.error = Some(error.message.clone());
            record.transient = error.transient;
            record.finished_at = Some(now);
            record.next_attempt_at = delay.map(|d| now.saturating_add(d));
            record.exhausted = error.transient && delay.is_none() && !cancelled;
            let event = EventKind::StepFailed {
                step: id.to_string(),
                attempt: record.attempt,
                error: error.message.clone(),
                transient: error.transient,
                next_attempt_at: record.next_attempt_at,
                exhausted: record.exhausted,
            };
            self.write(&record, vec![event]).await?;
            if cancelled {
                return Err(RunError::Cancelled);
            }
            match record.next_attempt_at {
                Some(at) => self.wait_until(at, force).await?,
                None if record.exhausted => {
                    return Err(RunError::Exhausted {
                        step: id.to_string(),
                        attempts: record.attempt,
                        error: error.message,
                    });
                }
                None => {
                    return Err(RunError::StepFailed {
                        step: id.to_string(),
                        error: error.message,
                    });
                }
            }
        }
    }

    /// A value the run must see again when replayed, computed once and journaled.
    async fn journaled<T: Serialize + DeserializeOwned>(
        &self,
        key: &str,
        make: impl FnOnce() -> T,
    ) -> Result<T, RunError> {
        let id = self.next_id(key);
        if let Some(r) = self.record_of(&id)
            && r.state == StepRecordState::Completed
        {
            return decode(&id, r.output.unwrap_or(Value::Null));
        }
        if self.shared.verifier.is_some() {
            return Err(RunError::Unfinished { step: id });
        }
        let value = make();
        let json = serde_json::to_value(&value)
            .map_err(|e| RunError::workflow(format!("step {id}: {e}")))?;
        let now = Millis::now();
        let record = StepRecord {
            seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
            key: id,
            kind: "value".into(),
            state: StepRecordState::Completed,
            attempt: 1,
            output: Some(json),
            error: None,
            transient: false,
            next_attempt_at: None,
            exhausted: false,
            from_probe: false,
            awaits_decision: false,
            first_started_at: now,
            started_at: now,
            finished_at: Some(now),
            policy: None,
        };
        self.write_lazy(&record, vec![])?;
        Ok(value)
    }

    /// The current time, as first seen by this run at this point.
    pub async fn now(&self) -> Result<Millis, RunError> {
        self.journaled("$now", Millis::now).await
    }

    /// A random UUID, the same one on every replay.
    pub async fn uuid(&self) -> Result<uuid::Uuid, RunError> {
        self.journaled("$uuid", uuid::Uuid::new_v4).await
    }

    /// A random number, the same one on every replay.
    pub async fn random_u64(&self) -> Result<u64, RunError> {
        self.journaled("$random", rand::random::<u64>).await
    }

    /// Asks a person (or the environment) a question once; the answer is journaled, a
    /// secret answer by reference only.
    pub async fn ask(&self, key: &str, question: Question) -> Result<Answer, RunError> {
        let id = self.next_id(&format!("ask/{key}"));
        if let Some(r) = self.record_of(&id)
            && r.state == StepRecordState::Completed
        {
            return decode(&id, r.output.unwrap_or(Value::Null));
        }
        if self.shared.verifier.is_some() {
            return Err(RunError::Unfinished { step: id });
        }
        let provider = self.shared.input.clone();
        let (asked_key, asked) = (key.to_string(), question.clone());
        let reply = tokio::task::spawn_blocking(move || provider.ask(&asked_key, &asked))
            .await
            .ok()
            .flatten();
        let Some(reply) = reply else {
            self.shared.events.emit(EventKind::WaitingForInput {
                step: id.clone(),
                prompt: question.prompt.clone(),
            });
            return Err(RunError::WaitingForInput {
                step: id,
                prompt: question.prompt,
            });
        };
        let answer = if question.secret {
            let reference = self
                .shared
                .secrets
                .put(&SecretValue::new(reply))
                .map_err(|e| RunError::workflow(e.to_string()))?;
            Answer::Secret(reference)
        } else {
            Answer::Text(reply)
        };
        let json = serde_json::to_value(&answer)
            .map_err(|e| RunError::workflow(format!("step {id}: {e}")))?;
        let now = Millis::now();
        let record = StepRecord {
            seq: self.shared.next_seq.fetch_add(1, Ordering::Relaxed),
            key: id,
            kind: "input".into(),
            state: StepRecordState::Completed,
            attempt: 1,
            output: Some(json),
            error: None,
            transient: false,
            next_attempt_at: None,
            exhausted: false,
            from_probe: false,
            awaits_decision: false,
            first_started_at: now,
            started_at: now,
            finished_at: Some(now),
            policy: None,
        };
        // An answer is worth a commit of its own: asking again would bother a person.
        self.write(&record, vec![]).await?;
        Ok(answer)
    }

    /// The value behind a secret reference, for the one place that must use it.
    /// Events of this run redact it from then on.
    pub fn reveal(&self, reference: &SecretRef) -> Result<SecretValue, RunError> {
        let value = self
            .shared
            .secrets
            .get(reference)
            .map_err(|e| RunError::workflow(e.to_string()))?;
        self.shared.events.redact(value.expose());
        Ok(value)
    }
}
