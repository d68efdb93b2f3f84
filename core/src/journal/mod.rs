//! The journal of in-flight progress: the traits the engine writes through, and their
//! implementations: redb (embedded, the default) and PostgreSQL (a team's shared journal,
//! `FOUNDRY_JOURNAL=postgres://…`). Nothing above this module sees a storage type.

#[cfg(test)]
mod contract;
mod guard;
#[cfg(any(test, feature = "pg-cluster"))]
pub mod pg_cluster;
mod pg_listen;
mod pg_tls;
mod pgpass;
mod postgres;
mod redb_store;
mod wal;

use std::collections::HashMap;
use std::path::PathBuf;

pub use guard::{install_panic_hook, storage_call};
pub use postgres::PostgresStore;
pub use redb_store::RedbStore;

use crate::model::{Lease, RunId, RunInfo, RunMeta, RunSummary, StepRecord};

/// The journal format this build writes. Every journal file records its format; a file of
/// another format is refused with a clear message rather than misread.
pub const FORMAT_VERSION: u32 = 1;

/// Everything a journal holds about one run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct JournalSnapshot {
    pub format: u32,
    pub info: RunInfo,
    pub meta: RunMeta,
    pub lease: Option<Lease>,
    pub summary: Option<RunSummary>,
    /// Ordered by `seq`.
    pub steps: Vec<StepRecord>,
}

/// Where each step sits in a snapshot's `steps`, by key.
pub type StepIndex = HashMap<String, usize>;

impl JournalSnapshot {
    /// What a new run's journal holds once created: its info, meta and lease, no step.
    pub fn created(info: &RunInfo, meta: &RunMeta, lease: &Lease) -> JournalSnapshot {
        JournalSnapshot {
            format: FORMAT_VERSION,
            info: info.clone(),
            meta: meta.clone(),
            lease: Some(lease.clone()),
            summary: None,
            steps: Vec::new(),
        }
    }

    pub fn step_index(&self) -> StepIndex {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.key.clone(), i))
            .collect()
    }

    /// Applies batches in order, as committing them does, and keeps the steps in order.
    pub fn apply_all<'a>(&mut self, batches: impl IntoIterator<Item = &'a [WriteOp]>) {
        let mut index = self.step_index();
        for batch in batches {
            self.apply(batch, &mut index);
        }
        // Nearly in order already: a record replaced keeps its place, a new one comes last.
        self.steps.sort_by_key(|s| s.seq);
    }

    /// Applies `ops` in order, as committing them does; `index` is kept current.
    pub fn apply(&mut self, ops: &[WriteOp], index: &mut StepIndex) {
        for op in ops {
            match op {
                WriteOp::Step(record) => match index.get(&record.key) {
                    Some(&i) => self.steps[i] = record.clone(),
                    None => {
                        index.insert(record.key.clone(), self.steps.len());
                        self.steps.push(record.clone());
                    }
                },
                WriteOp::Meta(meta) => self.meta = meta.clone(),
                WriteOp::Lease(lease) => self.lease = Some(lease.clone()),
                WriteOp::Finish { meta, summary } => {
                    self.steps.clear();
                    index.clear();
                    self.meta = meta.clone();
                    self.summary = Some(summary.clone());
                    self.lease = None;
                }
            }
        }
    }
}

/// One change to a run's journal. A batch of them is written in one durable transaction.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteOp {
    Step(StepRecord),
    Meta(RunMeta),
    Lease(Lease),
    /// The run completed: every step record is deleted and the summary written, together.
    Finish {
        meta: RunMeta,
        summary: RunSummary,
    },
}

/// A run's journal, opened exclusively by the process that drives the run.
pub trait RunJournal: Send {
    /// Applies `ops` in one transaction that is durable when this returns.
    fn write(&mut self, ops: &[WriteOp]) -> Result<(), JournalError>;
    fn snapshot(&self) -> Result<JournalSnapshot, JournalError>;
    /// For a finished run: gives back the space of deleted records and drops what only
    /// driving needs (the write-ahead log).
    fn compact(&mut self) -> Result<(), JournalError>;
    /// Who asked, through a shared store, that this run be cancelled
    /// ([`JournalStore::request_cancel`]), as learnt when the run was taken and at each
    /// write since (the heartbeat's too); `None` while nobody has. A store of files takes
    /// its cancels through the driver's control socket instead.
    fn cancel_requested(&self) -> Option<Lease> {
        None
    }
    /// Asks to be woken, once, with who asked, the moment a cancel of this run is asked
    /// through a shared store, without waiting for the next write to read it. A store that
    /// cannot tell so soon drops `wake`; [`RunJournal::cancel_requested`] stays the guarantee.
    fn on_cancel(&mut self, wake: CancelWake) {
        drop(wake);
    }
}

/// What [`RunJournal::on_cancel`] calls: with who asked for the run to be cancelled.
pub type CancelWake = Box<dyn FnOnce(Lease) + Send>;

/// Where journals live.
pub trait JournalStore: Send + Sync {
    /// Creates the journal of a new run and holds it exclusively.
    fn create(
        &self,
        info: &RunInfo,
        meta: &RunMeta,
        lease: &Lease,
    ) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError>;
    /// Opens a run's journal exclusively, to drive the run, with what it holds.
    /// [`JournalError::Busy`] when another process holds it.
    fn open(&self, id: RunId) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError>;
    /// Reads a run's journal without driving it. [`JournalError::Busy`] when another
    /// process holds it: ask that process instead.
    fn read(&self, id: RunId) -> Result<JournalSnapshot, JournalError>;
    /// Every run with a journal, oldest first.
    fn list(&self) -> Result<Vec<RunId>, JournalError>;
    /// The runs that completed, oldest first; a run that cannot be read is not one of them.
    /// By default each run is read whole; a store that keeps the state apart reads only it.
    fn completed(&self) -> Result<Vec<RunId>, JournalError> {
        let mut completed = Vec::new();
        for id in self.list()? {
            if let Ok(s) = self.read(id)
                && s.meta.state == crate::model::RunState::Completed
            {
                completed.push(id);
            }
        }
        Ok(completed)
    }
    fn remove(&self, id: RunId) -> Result<(), JournalError>;
    /// Removes what interrupted creations left behind, older than `age`; returns how many.
    fn sweep(&self, age: std::time::Duration) -> Result<usize, JournalError>;
    /// Where a run's journal is, for messages.
    fn location(&self, id: RunId) -> PathBuf;
    /// Whether the store records who drives each run for every machine (a shared store):
    /// then a [`JournalStore::read`] snapshot's lease is its live driver's, and `None` when
    /// nobody drives it. A store of files leaves that to the driver's control socket.
    fn records_drivers(&self) -> bool {
        false
    }
    /// Waits until what dropped journals left to do is done (a shared store gives a run
    /// back on its own thread).
    fn settle(&self) {}
    /// Asks the run's live driver, on whatever machine, to cancel it: recorded with the
    /// run, `by` naming who asks, for the driver to find at its next write (its heartbeat
    /// at the latest). Returns that driver's lease; `None` when no live process drives the
    /// run or it has ended (the caller takes it to cancel it itself, or is told it ended),
    /// and always from a store that does not record drivers (a store of files, whose
    /// driver's control socket takes the cancel).
    fn request_cancel(&self, _id: RunId, _by: &Lease) -> Result<Option<Lease>, JournalError> {
        Ok(None)
    }
}

/// The store named where none can be made (a `FOUNDRY_JOURNAL` that is no journal's URL):
/// every call fails with why, so a command that needs the journal says so and stops,
/// rather than keeping its runs somewhere the user did not choose.
pub struct Unusable(pub JournalError);

impl JournalStore for Unusable {
    fn create(
        &self,
        _: &RunInfo,
        _: &RunMeta,
        _: &Lease,
    ) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError> {
        Err(self.0.clone())
    }
    fn open(&self, _: RunId) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError> {
        Err(self.0.clone())
    }
    fn read(&self, _: RunId) -> Result<JournalSnapshot, JournalError> {
        Err(self.0.clone())
    }
    fn list(&self) -> Result<Vec<RunId>, JournalError> {
        Err(self.0.clone())
    }
    fn remove(&self, _: RunId) -> Result<(), JournalError> {
        Err(self.0.clone())
    }
    fn sweep(&self, _: std::time::Duration) -> Result<usize, JournalError> {
        Ok(0)
    }
    fn location(&self, _: RunId) -> PathBuf {
        PathBuf::from("FOUNDRY_JOURNAL")
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {} is held by another process{}", path.display(), held_by(owner))]
    Busy {
        path: PathBuf,
        /// Who holds it, where the store knows (a shared store does; a file lock does not).
        owner: Option<Lease>,
    },
    /// This process's lease lapsed and another took the run over: its writes are refused
    /// (fencing), and it must stop driving.
    #[error("journal {}: the run was taken over by another process{} after this one's lease lapsed; this process writes nothing more", path.display(), held_by(owner))]
    TakenOver { path: PathBuf, owner: Option<Lease> },
    #[error("no run {id} (no journal at {})", path.display())]
    NotFound { id: RunId, path: PathBuf },
    #[error("journal {} is corrupt: {detail}", path.display())]
    Corrupt { path: PathBuf, detail: String },
    /// A journal or write-ahead log of another format; `path` is the file that says so.
    #[error("{}", format_message(path, *found))]
    Format { path: PathBuf, found: u32 },
    #[error("journal {}: {detail}", path.display())]
    Io { path: PathBuf, detail: String },
    /// The journal's server cannot be reached now (refused, lost, shutting down, starting):
    /// a driver waits for it, bounded, and goes on when it is back.
    #[error("journal {}: {detail}", path.display())]
    Unreachable {
        path: PathBuf,
        detail: String,
        hint: String,
    },
    /// The journal's server refused us, or cannot be used as named; `path` names it (never with a
    /// password). Trying again later may succeed.
    #[error("journal {}: {detail}", path.display())]
    Unavailable {
        path: PathBuf,
        detail: String,
        hint: String,
    },
}

fn held_by(owner: &Option<Lease>) -> String {
    owner
        .as_ref()
        .map(|l| format!(" ({l})"))
        .unwrap_or_default()
}

fn format_message(path: &std::path::Path, found: u32) -> String {
    let ours = format!(
        "format {found}; this foundry ({}) reads format {FORMAT_VERSION}",
        env!("CARGO_PKG_VERSION")
    );
    if found > FORMAT_VERSION {
        format!(
            "journal {} was written by a newer Foundry ({ours})",
            path.display()
        )
    } else {
        format!("journal {} has {ours}", path.display())
    }
}

impl JournalError {
    /// What the user can do about it, if anything.
    pub fn hint(&self) -> Option<String> {
        match self {
            JournalError::Busy { .. } => {
                Some("another foundry process is driving this run; `foundry workflow list` shows which".into())
            }
            JournalError::TakenOver { .. } => Some(
                "the run goes on where its new driver is; `foundry workflow status` shows it. A lease lapses when its holder is not heard from for FOUNDRY_LEASE_TTL (60 s unless set)".into(),
            ),
            JournalError::Corrupt { path, .. } => Some(format!(
                "this run cannot be resumed; remove {} to forget it (other runs are unaffected)",
                path.display()
            )),
            JournalError::Format { found, .. } if *found > FORMAT_VERSION => Some(
                "upgrade Foundry to resume it (or resume it with the Foundry that started it); the file is kept as it is".into(),
            ),
            JournalError::Format { .. } => Some(
                "this run was started by an older foundry: finish it with that version, or remove the file".into(),
            ),
            JournalError::Unavailable { hint, .. } | JournalError::Unreachable { hint, .. } => {
                Some(hint.clone())
            }
            _ => None,
        }
    }
}
