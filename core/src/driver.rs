//! Driving one run: from taking it to its outcome, with undo steps on cancel and the
//! completed run's summary written in the transaction that deletes its steps.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::activity::Decision;
use crate::context::{Ctx, RunShared};
use crate::control::ControlServer;
use crate::engine::{Engine, EngineError, RunOutcome};
use crate::error::RunError;
use crate::events::{Event, EventBus, EventKind};
use crate::journal::{JournalSnapshot, RunJournal, WriteOp};
use crate::lease;
use crate::model::{RunId, RunMeta, RunState, RunSummary, StepRecord, StepRecordState};
use crate::time::Millis;
use crate::workflow::DynWorkflow;
use crate::writer::{MirrorState, WriteError, Writer};

/// A run taken to be driven: subscribe to its events, then drive it.
pub struct Driver {
    pub(crate) engine: Engine,
    pub(crate) workflow: Arc<dyn DynWorkflow>,
    pub(crate) journal: Box<dyn RunJournal>,
    pub(crate) snapshot: JournalSnapshot,
    pub(crate) events: EventBus,
    pub(crate) resumed: bool,
    pub(crate) cancel: bool,
    pub(crate) short_id: String,
    pub(crate) decisions: HashMap<String, Decision>,
}

impl Driver {
    pub fn run_id(&self) -> RunId {
        self.snapshot.info.id
    }

    /// The run's shortest unique id prefix, for human output.
    pub fn short_id(&self) -> &str {
        &self.short_id
    }

    pub fn snapshot(&self) -> &JournalSnapshot {
        &self.snapshot
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Records a person's word on a step found in doubt, applied when the drive reaches
    /// it: its effect is there ([`Decision::Done`]) or not ([`Decision::Redo`]). `step` is
    /// the key `workflow status` shows, its `#0` optional. Refused for a step that is not
    /// in doubt. Returns the step's full key.
    pub fn decide(&mut self, step: &str, decision: Decision) -> Result<String, EngineError> {
        let run = self.run_id();
        let in_doubt = |r: &&StepRecord| r.awaits_decision || r.state == StepRecordState::Started;
        let occurrence = |key: &str| {
            key.strip_prefix(step)
                .and_then(|rest| rest.strip_prefix('#'))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let named: Vec<&StepRecord> = match self.snapshot.steps.iter().find(|r| r.key == step) {
            Some(exact) => vec![exact],
            None => self
                .snapshot
                .steps
                .iter()
                .filter(|r| occurrence(&r.key))
                .collect(),
        };
        match named.as_slice() {
            [one] if in_doubt(one) => {
                let key = one.key.clone();
                self.decisions.insert(key.clone(), decision);
                Ok(key)
            }
            _ => Err(EngineError::NotInDoubt {
                run,
                step: step.to_string(),
                in_doubt: self
                    .snapshot
                    .steps
                    .iter()
                    .filter(in_doubt)
                    .map(|r| r.key.clone())
                    .collect(),
            }),
        }
    }

    /// Drives the run until it completes, pauses, fails, waits for input or is cancelled.
    pub async fn drive(self) -> Result<RunOutcome, EngineError> {
        let Driver {
            engine,
            workflow,
            journal,
            snapshot,
            events,
            resumed,
            cancel,
            short_id: _,
            decisions,
        } = self;
        let run = snapshot.info.id;
        let started = Millis::now();
        let mirror = MirrorState::new(snapshot.clone());
        let writer = Writer::new(journal, mirror.clone(), events.clone());
        let shared = Arc::new(RunShared::new(
            run,
            writer.clone(),
            snapshot.steps.clone(),
            events.clone(),
            engine.run_secrets(run),
            engine.input.clone(),
            decisions,
        ));
        if let Err(e) = events.log_to(&engine.home.log_path(run)) {
            tracing::warn!(error = %e, "no log file for this run");
        }
        let control = match ControlServer::bind(
            engine.home.socket_path(run),
            mirror.clone(),
            events.clone(),
            shared.cancel.clone(),
        ) {
            Ok(server) => Some(server),
            Err(e) => {
                tracing::warn!(error = %e, "no control socket: other terminals cannot follow this run");
                None
            }
        };

        let cancelling = cancel || snapshot.meta.state == RunState::Cancelling;
        let first = if cancelling {
            RunState::Cancelling
        } else {
            RunState::Running
        };
        let result = async {
            let state = snapshot
                .meta
                .state
                .transition(first)
                .map_err(|source| EngineError::Transition { run, source })?;
            set_state(&writer, state, None, vec![])
                .await
                .map_err(|e| drive_error(run, e))?;
            events.emit(EventKind::RunStarted {
                workflow: snapshot.info.workflow.clone(),
                resumed,
                foundry_version: env!("CARGO_PKG_VERSION").to_string(),
            });
            if cancelling {
                shared.cancelling.store(true, Ordering::Relaxed);
                shared.cancel.cancel();
            }
            let background = Background::spawn(&shared, cancelling);
            let ctx = Ctx::root(shared.clone());
            // Taken over (the heartbeat's commit, or any other, was fenced): the workflow is
            // dropped where it stands, so no activity starts after that and a running local
            // command is killed (`kill_on_drop`); its outcome could not be written anyway.
            let result = tokio::select! {
                result = workflow.run(ctx.clone(), snapshot.info.input.clone()) => result,
                lost = writer.taken_over() => {
                    background.stop().await;
                    return Err(EngineError::Journal(lost));
                }
            };
            // Nothing of this drive writes after its outcome: its tasks end first.
            background.stop().await;
            finish(&engine, &shared, &ctx, &snapshot, started, result).await
        }
        .await;

        if let Some(control) = control {
            control.stop().await;
        }
        let journal = writer.close().await;
        events.flush_log();
        if let (Ok(outcome), Some(mut journal)) = (&result, journal)
            && outcome.state == RunState::Completed
        {
            if let Err(e) = journal.compact() {
                tracing::warn!(error = %e, "compacting the finished journal failed");
            }
            drop(journal);
            engine.prune_summaries()?;
        }
        // The run is given back (a shared store does it on its own thread): done before this
        // returns, so a process that ends now leaves it free for other machines at once.
        engine.store.settle();
        result
    }
}

async fn set_state(
    writer: &Writer,
    state: RunState,
    error: Option<String>,
    events: Vec<EventKind>,
) -> Result<(), WriteError> {
    writer
        .write(vec![WriteOp::Meta(meta(state, error))], events)
        .await
}

fn meta(state: RunState, error: Option<String>) -> RunMeta {
    RunMeta {
        state,
        updated_at: Millis::now(),
        error,
    }
}

/// A write error as the drive reports it.
fn drive_error(run: RunId, e: WriteError) -> EngineError {
    match e {
        WriteError::Journal(e) => EngineError::Journal(e),
        WriteError::Illegal(source) => EngineError::Transition { run, source },
        e @ WriteError::AfterOutcome { .. } => EngineError::Run {
            run,
            detail: e.to_string(),
        },
    }
}

/// Journals a cancel request, once: the run becomes cancelling.
async fn journal_cancel(shared: &RunShared) -> Result<(), WriteError> {
    if shared.writer.state() == RunState::Cancelling {
        return Ok(());
    }
    let event = vec![EventKind::CancelRequested];
    set_state(&shared.writer, RunState::Cancelling, None, event).await
}

/// The drive's own tasks: the heartbeat, and the watcher that journals a cancel request
/// the moment it arrives (from the control socket, or from the shared journal, which the
/// heartbeat's commit reads at the latest). Stopped and joined before the run's outcome is written.
struct Background {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Background {
    fn spawn(shared: &Arc<RunShared>, cancelling: bool) -> Background {
        let stop = CancellationToken::new();
        let beat = {
            let (shared, stop) = (shared.clone(), stop.clone());
            tokio::spawn(async move {
                let mut lease = lease::own_lease();
                loop {
                    tokio::select! {
                        () = tokio::time::sleep(lease::heartbeat_every()) => {}
                        () = stop.cancelled() => return,
                    }
                    lease.heartbeat_at = Millis::now();
                    if shared
                        .writer
                        .write_lazy(vec![WriteOp::Lease(lease.clone())], vec![])
                        .is_err()
                    {
                        return;
                    }
                }
            })
        };
        let mut tasks = vec![beat];
        if !cancelling {
            let (shared, stop) = (shared.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    () = shared.cancel.cancelled() => {}
                    // Asked through a shared journal by another machine: the same cancel
                    // as one given to the control socket.
                    by = shared.writer.cancel_asked() => {
                        match by {
                            Some(by) => tracing::info!(asked_by = %by, "cancel asked through the shared journal"),
                            None => tracing::info!("cancel asked through the shared journal"),
                        }
                        shared.cancel.cancel();
                    }
                    () = stop.cancelled() => return,
                }
                if let Err(e) = journal_cancel(&shared).await {
                    tracing::error!(error = %e, "could not journal the cancel request");
                }
            }));
        }
        Background { stop, tasks }
    }

    async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "a task of the drive ended badly");
            }
        }
    }
}

/// Records how the workflow ended, running undo steps on cancel.
async fn finish(
    engine: &Engine,
    shared: &Arc<RunShared>,
    ctx: &Ctx,
    snapshot: &JournalSnapshot,
    started: Millis,
    result: Result<Value, RunError>,
) -> Result<RunOutcome, EngineError> {
    let run = snapshot.info.id;
    // A cancel journaled while the workflow ended is honoured: a cancelling run never
    // becomes completed.
    let cancel_journaled = shared.writer.state() == RunState::Cancelling;
    let result = match result {
        Err(_) if shared.cancel.is_cancelled() => Err(RunError::Cancelled),
        Ok(_) if cancel_journaled => Err(RunError::Cancelled),
        other => other,
    };
    if matches!(result, Err(RunError::Cancelled)) {
        journal_cancel(shared)
            .await
            .map_err(|e| drive_error(run, e))?;
    }
    let (state, output, error) = match result {
        Ok(output) => (RunState::Completed, Some(output), None),
        Err(RunError::Cancelled) => {
            let failures = undo_all(shared, ctx).await;
            let error =
                (!failures.is_empty()).then(|| format!("undo failed: {}", failures.join("; ")));
            (RunState::Cancelled, None, error)
        }
        Err(RunError::Journal(detail)) => return Err(EngineError::Run { run, detail }),
        Err(e @ (RunError::Exhausted { .. } | RunError::InDoubt { .. })) => {
            (RunState::Paused, None, Some(e.to_string()))
        }
        Err(e @ RunError::WaitingForInput { .. }) => {
            (RunState::WaitingForInput, None, Some(e.to_string()))
        }
        Err(e) => (RunState::Failed, None, Some(e.to_string())),
    };
    let finished = EventKind::RunFinished {
        state,
        error: error.clone(),
    };
    let records = shared.records();
    if state == RunState::Completed {
        let now = Millis::now();
        let summary = RunSummary {
            steps: records.len() as u64,
            finished_at: now,
            duration_ms: started.until(now).as_millis() as u64,
            output: output.clone().unwrap_or(Value::Null),
        };
        let meta = RunMeta {
            state,
            updated_at: now,
            error: None,
        };
        shared
            .writer
            .write_last(vec![WriteOp::Finish { meta, summary }], vec![finished])
            .await
            .map_err(|e| drive_error(run, e))?;
    } else {
        let ops = vec![WriteOp::Meta(self::meta(state, error.clone()))];
        shared
            .writer
            .write_last(ops, vec![finished])
            .await
            .map_err(|e| drive_error(run, e))?;
    }
    if state.is_finished() {
        // Nothing reads a finished run's secrets again: no step of it will run. Removed
        // after the finish is journaled, so a crash in between leaves an orphan that
        // `workflow gc` removes, never a run that needs what is gone.
        if let Err(e) = crate::secret::forget_run(&engine.home, run) {
            tracing::warn!(error = %e, "could not remove a finished run's secrets");
        }
    }
    Ok(RunOutcome {
        run,
        state,
        output,
        error,
    })
}

/// Runs registered undo steps, newest first; returns what failed.
async fn undo_all(shared: &Arc<RunShared>, ctx: &Ctx) -> Vec<String> {
    let mut failures = Vec::new();
    for entry in shared.take_undo().into_iter().rev() {
        if let Err(e) = ctx.run_undo(&entry).await {
            failures.push(format!("{}: {e}", entry.step));
        }
    }
    failures
}
