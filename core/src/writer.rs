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

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::events::{EventBus, EventKind};
use crate::failpoint::{self, Phase};
use crate::journal::{JournalError, JournalSnapshot, RunJournal, StepIndex, WriteOp};
use crate::model::StepRecordState;

/// How long a lazy write waits for company before it is committed alone.
pub const LINGER: Duration = Duration::from_millis(2);

struct Request {
    ops: Vec<WriteOp>,
    events: Vec<EventKind>,
    ack: Option<oneshot::Sender<Result<(), JournalError>>>,
}

struct Queue {
    requests: Vec<Request>,
    lazy_ops: Vec<WriteOp>,
    lazy_events: Vec<EventKind>,
    /// When the oldest buffered lazy write was made.
    lazy_since: Option<Instant>,
    timer: bool,
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
    mirror: Mirror,
    events: EventBus,
}

/// The run's journal writer. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a push, a take or a swap: a panic cannot leave one
    // half done.
    m.lock().unwrap_or_else(|e| e.into_inner())
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
        let queue = Queue {
            requests: Vec::new(),
            lazy_ops: Vec::new(),
            lazy_events: Vec::new(),
            lazy_since: None,
            timer: false,
            committing: false,
        };
        Writer {
            inner: Arc::new(Inner {
                queue: Mutex::new(queue),
                journal: Mutex::new(Some(journal)),
                poisoned: Mutex::new(None),
                mirror,
                events,
            }),
        }
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
    ) -> Result<(), JournalError> {
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
            });
            !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            self.lead();
        }
        done.await.map_err(|_| Self::closed())?
    }

    /// Writes `ops` with the next commit; `events` are emitted once it is durable.
    pub(crate) fn write_lazy(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
    ) -> Result<(), JournalError> {
        let mut q = lock(&self.inner.queue);
        q.lazy_ops.extend(ops);
        q.lazy_events.extend(events);
        q.lazy_since.get_or_insert_with(Instant::now);
        if !std::mem::replace(&mut q.timer, true) {
            drop(q);
            let writer = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { writer.linger().await });
                }
                Err(_) => self.flush(),
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
                });
            }
            !q.requests.is_empty() && !std::mem::replace(&mut q.committing, true)
        };
        if lead {
            self.lead();
        }
    }

    /// Commits what is queued, batch after batch, until nothing is.
    fn lead(&self) {
        loop {
            let mut batch = {
                let mut q = lock(&self.inner.queue);
                if q.requests.is_empty() {
                    q.committing = false;
                    return;
                }
                std::mem::take(&mut q.requests)
            };
            let ops: Vec<WriteOp> = batch.iter_mut().flat_map(|r| r.ops.drain(..)).collect();
            let result = self.commit(&ops);
            if result.is_ok() {
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
                    let _ = ack.send(result.clone());
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
            Some(j) => j.write(ops),
            None => Err(Self::closed()),
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "journal write failed; the run stops here");
            *poisoned = Some(e.clone());
        }
        result
    }

    /// Commits everything written so far and hands the journal back; later writes fail.
    pub(crate) fn close(&self) -> Option<Box<dyn RunJournal>> {
        self.flush();
        // A leader still at work holds the journal until the queue is empty.
        lock(&self.inner.journal).take()
    }
}
