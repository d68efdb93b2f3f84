//! The journal writer: commits what the run's tasks write, in batches (group commit), on
//! the thread of the task that finds no commit in progress.
//!
//! A write is either *urgent* (its sender waits until it is durable: a step's `started`, a
//! failure and its schedule) or *lazy* (a step's `completed`, a journaled value). A lazy
//! write waits in a buffer and rides with the next urgent write, which the next step's
//! `started` makes within microseconds in a sequential workflow; if none comes within
//! [`LINGER`], a timer commits it alone. No effect happens between a step's completion and
//! its durability: the next effect always waits for an urgent commit, and the buffer goes
//! ahead of it. Events about a write are emitted only once it is durable.
//!
//! An urgent writer that finds no commit in progress commits itself, with everything
//! queued, and keeps committing what others queue meanwhile until the queue is empty
//! (leader and followers); the others wait for their acknowledgement. A sequential run thus
//! commits on its own thread, with no hand-off to another: on small virtual machines,
//! waking a thread costs as much as the `fdatasync`.

use crate::sync::lock;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::events::{EventBus, EventKind};
use crate::failpoint::{self, Phase};
use crate::journal::{JournalError, JournalSnapshot, RunJournal, StepIndex, WriteOp};
use crate::model::{IllegalTransition, Lease, RunState, StepRecordState};
use crate::retry::PollPolicy;

/// How long a lazy write waits for company before it is committed alone.
pub const LINGER: Duration = Duration::from_millis(2);

/// How long a write waits for a journal server that cannot be reached (restarting, a
/// network cut): `FOUNDRY_JOURNAL_WAIT` (a duration such as `2m`; `0s` stops at once), else
/// two minutes; tried again every 250 ms.
fn journal_wait() -> PollPolicy {
    static WAIT: std::sync::OnceLock<PollPolicy> = std::sync::OnceLock::new();
    *WAIT.get_or_init(|| {
        let policy = PollPolicy::new(250, 120_000);
        match std::env::var("FOUNDRY_JOURNAL_WAIT") {
            Err(_) => policy,
            Ok(text) => match humantime::parse_duration(text.trim()) {
                Ok(wait) => policy.within(wait),
                Err(e) => {
                    tracing::warn!(value = %text, error = %e, "FOUNDRY_JOURNAL_WAIT is not a duration (such as 2m); waiting 2 minutes");
                    policy
                }
            },
        }
    })
}

/// Why a write was not made.
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The write would move the run's state against the transition table.
    #[error(transparent)]
    Illegal(#[from] IllegalTransition),
    /// The run's outcome is written: its journal takes nothing more.
    #[error(
        "E_ILLEGAL_TRANSITION: the run's outcome ({state}) is recorded; nothing may be written after it"
    )]
    AfterOutcome { state: RunState },
}

struct Request {
    ops: Vec<WriteOp>,
    events: Vec<EventKind>,
    ack: Option<oneshot::Sender<Result<(), WriteError>>>,
    /// The drive's outcome: the writer takes nothing after it.
    last: bool,
}

/// The run's state as committed, which every write is checked against.
#[derive(Clone, Copy)]
struct Gate {
    state: RunState,
    /// The drive's outcome is written.
    sealed: bool,
}

impl Gate {
    /// The gate after `ops`, or why they may not be written.
    fn after(mut self, ops: &[WriteOp], last: bool) -> Result<Gate, WriteError> {
        for op in ops {
            if self.sealed || self.state.is_finished() {
                return Err(WriteError::AfterOutcome { state: self.state });
            }
            match op {
                WriteOp::Meta(meta) => self.state = self.state.transition(meta.state)?,
                WriteOp::Finish { meta, .. } => {
                    self.state = self.state.transition(meta.state)?;
                    self.sealed = true;
                }
                WriteOp::Step(_) | WriteOp::Lease(_) => {}
            }
        }
        self.sealed |= last;
        Ok(self)
    }
}

struct Queue {
    requests: Vec<Request>,
    lazy_ops: Vec<WriteOp>,
    lazy_events: Vec<EventKind>,
    /// When the oldest buffered lazy write was made.
    lazy_since: Option<Instant>,
    timer: bool,
    /// The task of that timer, joined when the writer closes.
    linger: Option<tokio::task::JoinHandle<()>>,
    /// A leader is committing: what is queued now will be committed by it.
    committing: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    /// Held only by the leader. `None` once closed.
    journal: Mutex<Option<Box<dyn RunJournal>>>,
    /// Once a commit fails, nothing later may be acknowledged: the journal no longer
    /// matches what the run believes.
    poisoned: Mutex<Option<JournalError>>,
    /// Cancelled when a commit learns the run was taken over (fencing): the drive stops at
    /// once, not at its next write.
    lost: tokio_util::sync::CancellationToken,
    /// Cancelled when the journal says another machine asked for the run to be cancelled
    /// (a shared store, learnt as the run was taken or with a commit); who asked.
    asked: tokio_util::sync::CancellationToken,
    asker: Mutex<Option<Lease>>,
    /// Held by the leader only, like `journal`.
    gate: Mutex<Gate>,
    mirror: Mirror,
    events: EventBus,
}

/// The run's journal writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    inner: Arc<Inner>,
}

/// The run's journal as committed, kept in memory for the control socket.
pub(crate) struct MirrorState {
    pub(crate) snapshot: JournalSnapshot,
    index: StepIndex,
}

pub(crate) type Mirror = Arc<Mutex<MirrorState>>;

impl MirrorState {
    pub(crate) fn new(snapshot: JournalSnapshot) -> Mirror {
        let index = snapshot.step_index();
        Arc::new(Mutex::new(MirrorState { snapshot, index }))
    }

    fn apply(&mut self, ops: &[WriteOp]) {
        self.snapshot.apply(ops, &mut self.index);
    }
}

fn completed_steps(ops: &[WriteOp]) -> impl Iterator<Item = &str> {
    ops.iter().filter_map(|op| match op {
        WriteOp::Step(r) if r.state == StepRecordState::Completed => Some(r.key.as_str()),
        _ => None,
    })
}

impl Writer {
    pub(crate) fn new(journal: Box<dyn RunJournal>, mirror: Mirror, events: EventBus) -> Writer {
        let gate = Gate {
            state: lock(&mirror).snapshot.meta.state,
            sealed: false,
        };
        let queue = Queue {
            requests: Vec::new(),
            lazy_ops: Vec::new(),
            lazy_events: Vec::new(),
            lazy_since: None,
            timer: false,
            linger: None,
            committing: false,
        };
        let writer = Writer {
            inner: Arc::new(Inner {
                queue: Mutex::new(queue),
                asked: tokio_util::sync::CancellationToken::new(),
                asker: Mutex::new(None),
                journal: Mutex::new(Some(journal)),
                poisoned: Mutex::new(None),
                lost: tokio_util::sync::CancellationToken::new(),
                gate: Mutex::new(gate),
                mirror,
                events,
            }),
        };
        if let Some(journal) = lock(&writer.inner.journal).as_deref_mut() {
            writer.note_cancel(journal);
            // Asked later through a shared store: heard at once where the store can tell.
            let inner = Arc::downgrade(&writer.inner);
            journal.on_cancel(Box::new(move |by| {
                if let Some(inner) = inner.upgrade() {
                    Writer { inner }.asked_by(by);
                }
            }));
        }
        writer
    }

    /// Takes note that `by` asked for the run to be cancelled, once.
    fn asked_by(&self, by: Lease) {
        if self.inner.asked.is_cancelled() {
            return;
        }
        *lock(&self.inner.asker) = Some(by);
        self.inner.asked.cancel();
    }

    /// Takes note of a cancel the journal says was asked.
    fn note_cancel(&self, journal: &dyn RunJournal) {
        if let Some(by) = journal.cancel_requested() {
            self.asked_by(by);
        }
    }

    /// Resolves once the journal says another process asked for the run to be cancelled
    /// ([`RunJournal::cancel_requested`]); who asked.
    pub(crate) async fn cancel_asked(&self) -> Option<Lease> {
        self.inner.asked.cancelled().await;
        lock(&self.inner.asker).clone()
    }

    fn closed() -> JournalError {
        JournalError::Io {
            path: "journal writer".into(),
            detail: "the journal is closed".into(),
        }
    }

    /// Writes `ops` (after any buffered lazy writes) and waits until they are durable;
    /// then emits `events`.
    pub(crate) async fn write(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
    ) -> Result<(), WriteError> {
        self.request(ops, events, false).await
    }

    /// Writes the drive's outcome, like [`Writer::write`]; every later write is refused.
    pub(crate) async fn write_last(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
    ) -> Result<(), WriteError> {
        self.request(ops, events, true).await
    }

    /// The run's state as committed.
    pub(crate) fn state(&self) -> RunState {
        lock(&self.inner.gate).state
    }

    async fn request(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
        last: bool,
    ) -> Result<(), WriteError> {
        let (ack, done) = oneshot::channel();
        let lead = {
            let mut q = lock(&self.inner.queue);
            let mut all_ops = std::mem::take(&mut q.lazy_ops);
            q.lazy_since = None;
            all_ops.extend(ops);
            let mut all_events = std::mem::take(&mut q.lazy_events);
            all_events.extend(events);
            q.requests.push(Request {
                ops: all_ops,
                events: all_events,
                ack: Some(ack),
                last,
            });
            !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            self.lead();
        }
        done.await.map_err(|_| WriteError::from(Self::closed()))?
    }

    /// Writes `ops` with the next commit; `events` are emitted once it is durable.
    pub(crate) fn write_lazy(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
    ) -> Result<(), WriteError> {
        let mut q = lock(&self.inner.queue);
        q.lazy_ops.extend(ops);
        q.lazy_events.extend(events);
        q.lazy_since.get_or_insert_with(Instant::now);
        if !std::mem::replace(&mut q.timer, true) {
            let writer = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    q.linger = Some(rt.spawn(async move { writer.linger().await }));
                }
                Err(_) => {
                    drop(q);
                    self.flush();
                }
            }
        }
        Ok(())
    }

    /// The timer of lazy writes: commits them once the oldest has waited [`LINGER`]. In a
    /// busy sequential run an urgent write takes them first, so the timer only re-arms.
    async fn linger(&self) {
        let mut wait = LINGER;
        loop {
            tokio::time::sleep(wait).await;
            let since = {
                let mut q = lock(&self.inner.queue);
                match q.lazy_since {
                    None => {
                        q.timer = false;
                        return;
                    }
                    Some(since) => since,
                }
            };
            match LINGER.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => wait = left,
                _ => return self.flush(),
            }
        }
    }

    /// Commits buffered lazy writes now, unless a leader will.
    pub(crate) fn flush(&self) {
        let lead = {
            let mut q = lock(&self.inner.queue);
            q.timer = false;
            q.lazy_since = None;
            if !q.lazy_ops.is_empty() {
                let ops = std::mem::take(&mut q.lazy_ops);
                let events = std::mem::take(&mut q.lazy_events);
                q.requests.push(Request {
                    ops,
                    events,
                    ack: None,
                    last: false,
                });
            }
            !q.requests.is_empty() && !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            self.lead();
        }
    }

    /// Commits what is queued, batch after batch, until nothing is. A request the run's
    /// state does not allow is refused alone; the others are committed.
    fn lead(&self) {
        loop {
            let batch = {
                let mut q = lock(&self.inner.queue);
                if q.requests.is_empty() {
                    q.committing = false;
                    return;
                }
                std::mem::take(&mut q.requests)
            };
            let mut gate = *lock(&self.inner.gate);
            let mut allowed = Vec::with_capacity(batch.len());
            for req in batch {
                match gate.after(&req.ops, req.last) {
                    Ok(next) => {
                        gate = next;
                        allowed.push(req);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "a journal write was refused");
                        if let Some(ack) = req.ack {
                            let _ = ack.send(Err(e));
                        }
                    }
                }
            }
            let mut batch = allowed;
            if batch.is_empty() {
                continue;
            }
            let ops: Vec<WriteOp> = batch.iter_mut().flat_map(|r| r.ops.drain(..)).collect();
            let result = self.commit(&ops);
            if result.is_ok() {
                *lock(&self.inner.gate) = gate;
                lock(&self.inner.mirror).apply(&ops);
                for req in &mut batch {
                    for kind in req.events.drain(..) {
                        self.inner.events.emit(kind);
                    }
                }
                for step in completed_steps(&ops) {
                    failpoint::hit(step, Phase::Completed);
                }
            }
            for req in batch {
                if let Some(ack) = req.ack {
                    let _ = ack.send(result.clone().map_err(WriteError::from));
                }
            }
        }
    }

    fn commit(&self, ops: &[WriteOp]) -> Result<(), JournalError> {
        let mut poisoned = lock(&self.inner.poisoned);
        if let Some(e) = &*poisoned {
            return Err(e.clone());
        }
        let mut journal = lock(&self.inner.journal);
        let result = match journal.as_mut() {
            Some(j) => {
                let written = self.write_waiting(j.as_mut(), ops);
                if written.is_ok() {
                    self.note_cancel(j.as_ref());
                }
                written
            }
            None => Err(Self::closed()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "journal write failed; the run stops here");
            *poisoned = Some(e.clone());
            if matches!(e, JournalError::TakenOver { .. }) {
                self.inner.lost.cancel();
            }
        }
        result
    }

    /// Resolves once a commit has learnt that another driver took the run over; the error
    /// that said so.
    pub(crate) async fn taken_over(&self) -> JournalError {
        self.inner.lost.cancelled().await;
        lock(&self.inner.poisoned)
            .clone()
            .unwrap_or_else(Self::closed)
    }

    /// Writes `ops`, waiting (bounded, on this thread, as a commit blocks) while the
    /// journal's server cannot be reached. A write is made again whole: each of its
    /// records replaces the one of its key, so one that was committed before the
    /// connection was lost is only committed again.
    fn write_waiting(
        &self,
        journal: &mut dyn RunJournal,
        ops: &[WriteOp],
    ) -> Result<(), JournalError> {
        let wait = journal_wait();
        let mut poll = wait.start();
        // The first tick is at once: the write is tried before any wait.
        poll.tick_blocking();
        let began = Instant::now();
        let mut told = false;
        loop {
            let result = journal.write(ops);
            match &result {
                Err(e @ JournalError::Unreachable { .. }) if wait.deadline_ms > 0 => {
                    if !std::mem::replace(&mut told, true) {
                        tracing::warn!(error = %e, "the journal cannot be reached; waiting for it");
                        self.inner.events.emit(EventKind::JournalUnreachable {
                            detail: e.to_string(),
                            waiting_ms: wait.deadline_ms,
                        });
                    }
                    if !poll.tick_blocking() {
                        return result;
                    }
                }
                _ => {
                    if told && result.is_ok() {
                        let after_ms =
                            u64::try_from(began.elapsed().as_millis()).unwrap_or(u64::MAX);
                        tracing::info!(after_ms, "the journal answers again");
                        self.inner
                            .events
                            .emit(EventKind::JournalReachable { after_ms });
                    }
                    return result;
                }
            }
        }
    }

    /// Commits everything written so far, waits for the timer of lazy writes to end, and
    /// hands the journal back; later writes fail.
    pub(crate) async fn close(&self) -> Option<Box<dyn RunJournal>> {
        self.flush();
        let linger = lock(&self.inner.queue).linger.take();
        if let Some(task) = linger
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the journal's timer ended badly");
        }
        // A leader still at work holds the journal until the queue is empty.
        lock(&self.inner.journal).take()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::journal::{JournalStore, RedbStore};
    use crate::model::{RunId, RunInfo, RunMeta, RunSummary, StepRecord};
    use crate::time::Millis;

    fn meta(state: RunState) -> RunMeta {
        RunMeta {
            state,
            updated_at: Millis::now(),
            error: None,
        }
    }

    fn step(key: &str) -> WriteOp {
        WriteOp::Step(StepRecord {
            attempt: 1,
            ..StepRecord::new_started(0, key.into(), "noop".into(), Millis(1))
        })
    }

    fn finish() -> WriteOp {
        WriteOp::Finish {
            meta: meta(RunState::Completed),
            summary: RunSummary {
                steps: 0,
                finished_at: Millis::now(),
                duration_ms: 0,
                output: Value::Null,
            },
        }
    }

    /// A writer on a new run's real journal, and where to read it back.
    fn writer(dir: &tempfile::TempDir) -> (Writer, RedbStore, RunId) {
        let store = RedbStore::new(dir.path().to_path_buf());
        let id = RunId::new();
        let info = RunInfo {
            id,
            workflow: "w".into(),
            workflow_version: 1,
            input: Value::Null,
            foundry_version: "test".into(),
            created_at: Millis::now(),
        };
        let lease = crate::lease::own_lease();
        let (journal, snapshot) = store
            .create(&info, &meta(RunState::Running), &lease)
            .expect("create");
        let writer = Writer::new(journal, MirrorState::new(snapshot), EventBus::new(id));
        (writer, store, id)
    }

    #[tokio::test]
    async fn nothing_is_written_after_the_finish_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, store, id) = writer(&dir);
        writer.write(vec![step("a#0")], vec![]).await.expect("step");
        writer
            .write_last(vec![finish()], vec![])
            .await
            .expect("finish");

        let refused = writer.write(vec![step("late#0")], vec![]).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.starts_with("E_ILLEGAL_TRANSITION"), "{message}");
        let again = writer.write(vec![WriteOp::Meta(meta(RunState::Running))], vec![]);
        assert!(matches!(again.await, Err(WriteError::AfterOutcome { .. })));
        writer
            .write_lazy(vec![step("lazy#0")], vec![])
            .expect("buffered");
        writer.flush();

        drop(writer.close().await);
        let read = store.read(id).expect("read");
        assert_eq!(read.meta.state, RunState::Completed);
        assert!(read.steps.is_empty(), "{:?}", read.steps);
    }

    #[tokio::test]
    async fn every_write_is_checked_against_the_transition_table() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, store, id) = writer(&dir);
        let cancelling = vec![WriteOp::Meta(meta(RunState::Cancelling))];
        writer.write(cancelling, vec![]).await.expect("cancelling");
        let refused = writer.write(vec![finish()], vec![]).await;
        let message = refused.err().map(|e| e.to_string());
        assert_eq!(
            message.as_deref(),
            Some("E_ILLEGAL_TRANSITION: a cancelling run cannot become completed")
        );
        // The refusal poisons nothing: a legal write still goes through.
        writer
            .write(vec![step("undo#0")], vec![])
            .await
            .expect("undo");
        drop(writer.close().await);
        let read = store.read(id).expect("read");
        assert_eq!(read.meta.state, RunState::Cancelling);
        assert_eq!(read.steps.len(), 1);
    }

    #[tokio::test]
    async fn a_paused_outcome_takes_no_heartbeat_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (writer, store, id) = writer(&dir);
        let paused = vec![WriteOp::Meta(meta(RunState::Paused))];
        writer.write_last(paused, vec![]).await.expect("paused");
        let before = store_lease(&writer);
        let mut lease = crate::lease::own_lease();
        lease.heartbeat_at = Millis(before.as_ref().map_or(0, |l| l.heartbeat_at.0) + 60_000);
        let late = writer.write(vec![WriteOp::Lease(lease)], vec![]).await;
        assert!(matches!(late, Err(WriteError::AfterOutcome { .. })));
        drop(writer.close().await);
        let read = store.read(id).expect("read");
        assert_eq!(read.meta.state, RunState::Paused);
        assert_eq!(
            read.lease.map(|l| l.heartbeat_at),
            before.map(|l| l.heartbeat_at)
        );
    }

    fn store_lease(writer: &Writer) -> Option<crate::model::Lease> {
        lock(&writer.inner.mirror).snapshot.lease.clone()
    }
}
