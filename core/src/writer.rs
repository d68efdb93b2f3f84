//! The journal writer: one thread owns the run's journal and commits what the run's tasks
//! send it, in batches (group commit).
//!
//! A write is either *urgent* (its sender waits until it is durable: a step's `started`, a
//! failure and its schedule) or *lazy* (a step's `completed`, a journaled value). A lazy
//! write waits in a buffer on the sender's side and rides with the next urgent write, which
//! the next step's `started` makes within microseconds in a sequential workflow; if none
//! comes within [`LINGER`], a timer sends it alone. So a step costs one trip to the journal
//! thread, not two. No effect happens between a step's completion and its durability: the
//! next effect always waits for an urgent commit, and the buffer is sent, in order, ahead
//! of it. Events about a write are emitted only once it is durable.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

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

enum Msg {
    Write(Request),
    /// Commit what came before, then stop and hand the journal back.
    Close,
}

/// A handle to send writes to the writer thread. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Writer {
    /// Lazy writes not yet sent. Sending happens under this lock, so the thread receives
    /// writes in the order they were made.
    lazy: Arc<Mutex<Lazy>>,
}

struct Lazy {
    tx: Sender<Msg>,
    ops: Vec<WriteOp>,
    events: Vec<EventKind>,
    timer: bool,
}

/// The writer thread itself; closing it returns the journal.
pub(crate) struct WriterThread {
    thread: JoinHandle<Box<dyn RunJournal>>,
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

/// Receives the next write; `None` once closed.
fn recv_write(rx: &Receiver<Msg>, closing: &mut bool) -> Option<Request> {
    match rx.recv() {
        Ok(Msg::Write(r)) => Some(r),
        Ok(Msg::Close) | Err(_) => {
            *closing = true;
            None
        }
    }
}

/// Takes whatever else is already queued, stopping at a close.
fn drain(rx: &Receiver<Msg>, batch: &mut Vec<Request>, closing: &mut bool) {
    while !*closing {
        match rx.try_recv() {
            Ok(Msg::Write(r)) => batch.push(r),
            Ok(Msg::Close) => *closing = true,
            Err(_) => break,
        }
    }
}

fn run(
    mut journal: Box<dyn RunJournal>,
    rx: Receiver<Msg>,
    mirror: Mirror,
    events: EventBus,
) -> Box<dyn RunJournal> {
    // Once a commit fails, nothing later may be acknowledged: the journal no longer
    // matches what the run believes.
    let mut poisoned: Option<JournalError> = None;
    let mut closing = false;
    while !closing {
        let Some(first) = recv_write(&rx, &mut closing) else {
            break;
        };
        let mut batch = vec![first];
        drain(&rx, &mut batch, &mut closing);
        let ops: Vec<WriteOp> = batch.iter_mut().flat_map(|r| r.ops.drain(..)).collect();
        let result = match &poisoned {
            Some(e) => Err(e.clone()),
            None => journal.write(&ops),
        };
        match &result {
            Ok(()) => {
                if let Ok(mut m) = mirror.lock() {
                    m.apply(&ops);
                }
                for req in &mut batch {
                    for kind in req.events.drain(..) {
                        events.emit(kind);
                    }
                }
                for step in completed_steps(&ops) {
                    failpoint::hit(step, Phase::Completed);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "journal write failed; the run stops here");
                poisoned.get_or_insert_with(|| e.clone());
            }
        }
        for req in batch {
            if let Some(ack) = req.ack {
                let _ = ack.send(result.clone());
            }
        }
    }
    journal
}

impl Writer {
    pub(crate) fn spawn(
        journal: Box<dyn RunJournal>,
        mirror: Mirror,
        events: EventBus,
    ) -> Result<(Writer, WriterThread), JournalError> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("foundry-journal".into())
            .spawn(move || run(journal, rx, mirror, events))
            .map_err(|e| JournalError::Io {
                path: "journal writer".into(),
                detail: e.to_string(),
            })?;
        let lazy = Lazy {
            tx,
            ops: Vec::new(),
            events: Vec::new(),
            timer: false,
        };
        Ok((
            Writer {
                lazy: Arc::new(Mutex::new(lazy)),
            },
            WriterThread { thread },
        ))
    }

    fn closed() -> JournalError {
        JournalError::Io {
            path: "journal writer".into(),
            detail: "the writer has stopped".into(),
        }
    }

    fn buffer(&self) -> MutexGuard<'_, Lazy> {
        // Every update of the buffer is a push or a take: a panic cannot leave it half done.
        self.lazy.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `ops` (after any buffered lazy writes) and waits until they are durable;
    /// then emits `events`.
    pub(crate) async fn write(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
    ) -> Result<(), JournalError> {
        let (ack, done) = oneshot::channel();
        {
            let mut lazy = self.buffer();
            let mut all_ops = std::mem::take(&mut lazy.ops);
            all_ops.extend(ops);
            let mut all_events = std::mem::take(&mut lazy.events);
            all_events.extend(events);
            lazy.tx
                .send(Msg::Write(Request {
                    ops: all_ops,
                    events: all_events,
                    ack: Some(ack),
                }))
                .map_err(|_| Self::closed())?;
        }
        done.await.map_err(|_| Self::closed())?
    }

    /// Writes `ops` with the next commit; `events` are emitted once it is durable.
    pub(crate) fn write_lazy(
        &self,
        ops: Vec<WriteOp>,
        events: Vec<EventKind>,
    ) -> Result<(), JournalError> {
        let mut lazy = self.buffer();
        lazy.ops.extend(ops);
        lazy.events.extend(events);
        if !lazy.timer {
            lazy.timer = true;
            let writer = self.clone();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        tokio::time::sleep(LINGER).await;
                        writer.flush_lazy();
                    });
                }
                Err(_) => {
                    drop(lazy);
                    self.flush_lazy();
                }
            }
        }
        Ok(())
    }

    /// Sends buffered lazy writes on their own.
    fn flush_lazy(&self) {
        let mut lazy = self.buffer();
        lazy.timer = false;
        if lazy.ops.is_empty() {
            return;
        }
        let ops = std::mem::take(&mut lazy.ops);
        let events = std::mem::take(&mut lazy.events);
        // A closed writer: the run is over and nothing more can be recorded.
        let _ = lazy.tx.send(Msg::Write(Request {
            ops,
            events,
            ack: None,
        }));
    }
}

impl WriterThread {
    /// Commits everything sent before, stops the thread, and hands the journal back.
    pub(crate) fn close(self, writer: &Writer) -> Option<Box<dyn RunJournal>> {
        writer.flush_lazy();
        let _ = writer.buffer().tx.send(Msg::Close);
        self.thread.join().ok()
    }
}
