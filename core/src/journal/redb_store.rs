//! The redb journal: one database file per run, `<home>/runs/<run-id>.journal`, mode 0600.
//!
//! redb's default concurrency mode locks a file to one process and commits with one fsync;
//! the modes that let other processes read alongside the writer always commit in two
//! phases, which would double the cost of every step. So a run's file belongs to the
//! process driving it, and other terminals ask that process over its control socket.
//!
//! Each batch is made durable in the run's write-ahead log (`wal.rs`) and kept in memory;
//! every [`CHECKPOINT_FRAMES`] batches one durable redb commit takes them all (a
//! checkpoint) and the log starts over.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Builder, Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::guard::storage_call;
use super::wal::{self, Wal};
use super::{FORMAT_VERSION, JournalError, JournalSnapshot, JournalStore, RunJournal, WriteOp};
use crate::model::{Lease, RunId, RunInfo, RunMeta, RunSummary, StepRecord};

/// Every table of the journal, in one place.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const STEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("steps");

const KEY_FORMAT: &str = "format";
const KEY_INFO: &str = "info";
const KEY_STATE: &str = "state";
const KEY_LEASE: &str = "lease";
const KEY_SUMMARY: &str = "summary";
/// The sequence number of the first log frame not yet in a durable redb commit.
const KEY_WAL_SEQ: &str = "wal_seq";

/// A checkpoint after this many log frames, or when the log is half full.
pub(super) const CHECKPOINT_FRAMES: u64 = 128;

/// Every value starts with its encoding's version byte, so a value's encoding can change
/// without a new file format.
const ENCODING_JSON_V1: u8 = 1;

const EXTENSION: &str = "journal";

/// Journals as redb files in one directory.
#[derive(Clone, Debug)]
pub struct RedbStore {
    dir: PathBuf,
}

impl RedbStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RedbStore { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct RedbJournal {
    db: Database,
    path: PathBuf,
    wal: Wal,
    /// Batches durable in the log and not yet in redb: they go in at the next checkpoint.
    pending: Vec<WriteOp>,
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = vec![ENCODING_JSON_V1];
    // Serializing our own plain structs into a Vec cannot fail.
    serde_json::to_writer(&mut bytes, value).unwrap_or_default();
    bytes
}

fn decode<T: DeserializeOwned>(path: &Path, what: &str, bytes: &[u8]) -> Result<T, JournalError> {
    let corrupt = |detail: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        detail: format!("{what}: {detail}"),
    };
    match bytes.split_first() {
        Some((&ENCODING_JSON_V1, rest)) => {
            serde_json::from_slice(rest).map_err(|e| corrupt(e.to_string()))
        }
        Some((other, _)) => Err(corrupt(format!("unknown value encoding {other}"))),
        None => Err(corrupt("empty value".into())),
    }
}

/// Maps a redb error onto ours, naming the file.
fn storage_error(path: &Path, err: impl Into<redb::Error>) -> JournalError {
    let path = path.to_path_buf();
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => JournalError::Busy { path, owner: None },
        redb::Error::Corrupted(detail) => JournalError::Corrupt { path, detail },
        redb::Error::UpgradeRequired(v) => JournalError::Corrupt {
            path,
            detail: format!("written by an unsupported storage version {v}"),
        },
        redb::Error::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            JournalError::Corrupt {
                path,
                detail: e.to_string(),
            }
        }
        other => JournalError::Io {
            path,
            detail: other.to_string(),
        },
    }
}

/// Runs a storage call guarded against panics, so a damaged file is reported, not fatal.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T, JournalError>) -> Result<T, JournalError> {
    storage_call(f).unwrap_or_else(|detail| {
        Err(JournalError::Corrupt {
            path: path.to_path_buf(),
            detail,
        })
    })
}

fn read_snapshot(path: &Path, tx: &redb::ReadTransaction) -> Result<JournalSnapshot, JournalError> {
    let err = |e: redb::TableError| match e {
        redb::TableError::TableDoesNotExist(_) => JournalError::Corrupt {
            path: path.to_path_buf(),
            detail: "not a foundry journal (no meta table)".into(),
        },
        other => storage_error(path, other),
    };
    let meta = tx.open_table(META).map_err(err)?;
    let get = |key: &str| -> Result<Option<Vec<u8>>, JournalError> {
        Ok(meta
            .get(key)
            .map_err(|e| storage_error(path, e))?
            .map(|v| v.value().to_vec()))
    };
    let format: u32 = match get(KEY_FORMAT)? {
        Some(bytes) => decode(path, KEY_FORMAT, &bytes)?,
        None => {
            return Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                detail: "no format version".into(),
            });
        }
    };
    if format != FORMAT_VERSION {
        return Err(JournalError::Format {
            path: path.to_path_buf(),
            found: format,
        });
    }
    let required = |key: &str| -> Result<Vec<u8>, JournalError> {
        get(key)?.ok_or_else(|| JournalError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("no {key} record"),
        })
    };
    let info: RunInfo = decode(path, KEY_INFO, &required(KEY_INFO)?)?;
    let state: RunMeta = decode(path, KEY_STATE, &required(KEY_STATE)?)?;
    let lease: Option<Lease> = get(KEY_LEASE)?
        .map(|b| decode(path, KEY_LEASE, &b))
        .transpose()?;
    let summary: Option<RunSummary> = get(KEY_SUMMARY)?
        .map(|b| decode(path, KEY_SUMMARY, &b))
        .transpose()?;
    let mut steps = Vec::new();
    match tx.open_table(STEPS) {
        Ok(table) => {
            // No reserve from the table's recorded length: a damaged count must not size
            // an allocation.
            for entry in table.iter().map_err(|e| storage_error(path, e))? {
                let (key, value) = entry.map_err(|e| storage_error(path, e))?;
                let record: StepRecord = decode(path, key.value(), value.value())?;
                steps.push(record);
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(e) => return Err(storage_error(path, e)),
    }
    // In key order from the table: each record moved once, not once per comparison.
    steps.sort_unstable_by_key(|s| s.seq);
    Ok(JournalSnapshot {
        format,
        info,
        meta: state,
        lease,
        summary,
        steps,
    })
}

/// The first log frame not in the durable state; 1 for a journal from before logs.
fn read_wal_seq(path: &Path, tx: &redb::ReadTransaction) -> Result<u64, JournalError> {
    let meta = tx.open_table(META).map_err(|e| storage_error(path, e))?;
    let value = meta.get(KEY_WAL_SEQ).map_err(|e| storage_error(path, e))?;
    match value {
        Some(v) => decode(path, KEY_WAL_SEQ, v.value()),
        None => Ok(1),
    }
}

fn wal_error(path: &Path, e: std::io::Error) -> JournalError {
    let path = path.to_path_buf();
    if let Some(found) = wal::other_format(&e) {
        return JournalError::Format { path, found };
    }
    let detail = format!("write-ahead log: {e}");
    if e.kind() == std::io::ErrorKind::InvalidData {
        JournalError::Corrupt { path, detail }
    } else {
        JournalError::Io { path, detail }
    }
}

impl RunJournal for RedbJournal {
    fn write(&mut self, ops: &[WriteOp]) -> Result<(), JournalError> {
        let appended = self
            .wal
            .append(ops)
            .map_err(|e| wal_error(self.wal.path(), e))?;
        self.pending.extend_from_slice(ops);
        match appended {
            Ok(())
                if self.wal.frames() < CHECKPOINT_FRAMES
                    && self.wal.bytes_used() <= wal::CAPACITY / 2 =>
            {
                Ok(())
            }
            // Enough for a checkpoint, or too big for what is left of the log: into redb,
            // durably.
            Ok(()) | Err(wal::Full) => self.checkpoint(),
        }
    }

    fn snapshot(&self) -> Result<JournalSnapshot, JournalError> {
        let mut snapshot = guarded(&self.path, || {
            let tx = self
                .db
                .begin_read()
                .map_err(|e| storage_error(&self.path, e))?;
            read_snapshot(&self.path, &tx)
        })?;
        if !self.pending.is_empty() {
            snapshot.apply_all([self.pending.as_slice()]);
        }
        Ok(snapshot)
    }

    fn compact(&mut self) -> Result<(), JournalError> {
        self.checkpoint()?;
        let path = self.path.clone();
        guarded(&path, || {
            self.db
                .compact()
                .map(|_| ())
                .map_err(|e| storage_error(&path, e))
        })?;
        // Everything is in redb now, and a finished run is never driven again.
        match fs::remove_file(self.wal.path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(wal_error(self.wal.path(), e))
            }
            _ => Ok(()),
        }
    }
}

impl Drop for RedbJournal {
    fn drop(&mut self) {
        // A clean file opens without replaying the log.
        if !self.pending.is_empty()
            && let Err(e) = self.checkpoint()
        {
            tracing::warn!(error = %e, "checkpoint of the journal failed; the log keeps the batches");
        }
    }
}

impl RedbJournal {
    /// One durable redb commit of everything the log holds; the log then starts over.
    fn checkpoint(&mut self) -> Result<(), JournalError> {
        let next = self.wal.next_seq();
        let pending = std::mem::take(&mut self.pending);
        if let Err(e) = self.commit(&pending, Durability::Immediate, Some(next)) {
            self.pending = pending;
            return Err(e);
        }
        self.wal.restart(next);
        Ok(())
    }

    /// Commits `ops` to redb; with `wal_seq`, records it as the first frame the commit
    /// does not hold.
    fn commit(
        &mut self,
        ops: &[WriteOp],
        durability: Durability,
        wal_seq: Option<u64>,
    ) -> Result<(), JournalError> {
        let path = self.path.clone();
        guarded(&path, || {
            let e = |err: redb::Error| storage_error(&path, err);
            let mut tx = self.db.begin_write().map_err(|x| e(x.into()))?;
            tx.set_durability(durability).map_err(|x| e(x.into()))?;
            {
                let mut meta = tx.open_table(META).map_err(|x| e(x.into()))?;
                let mut steps = tx.open_table(STEPS).map_err(|x| e(x.into()))?;
                for op in ops {
                    match op {
                        WriteOp::Step(record) => {
                            steps
                                .insert(record.key.as_str(), encode(record).as_slice())
                                .map_err(|x| e(x.into()))?;
                        }
                        WriteOp::Meta(state) => {
                            meta.insert(KEY_STATE, encode(state).as_slice())
                                .map_err(|x| e(x.into()))?;
                        }
                        WriteOp::Lease(lease) => {
                            meta.insert(KEY_LEASE, encode(lease).as_slice())
                                .map_err(|x| e(x.into()))?;
                        }
                        WriteOp::Finish {
                            meta: state,
                            summary,
                        } => {
                            steps.retain(|_, _| false).map_err(|x| e(x.into()))?;
                            meta.insert(KEY_STATE, encode(state).as_slice())
                                .map_err(|x| e(x.into()))?;
                            meta.insert(KEY_SUMMARY, encode(summary).as_slice())
                                .map_err(|x| e(x.into()))?;
                            meta.remove(KEY_LEASE).map_err(|x| e(x.into()))?;
                        }
                    }
                }
                if let Some(seq) = wal_seq {
                    meta.insert(KEY_WAL_SEQ, encode(&seq).as_slice())
                        .map_err(|x| e(x.into()))?;
                }
            }
            tx.commit().map_err(|x| e(x.into()))
        })
    }
}

/// A journal file seen through an overlay in memory, for redb to repair without touching
/// the file: a read comes from the file, with what redb wrote over it applied; a write stays
/// in memory. The repair reads every page (it verifies their checksums and rebuilds the
/// allocator state from them) but copies only what it writes.
#[derive(Debug)]
struct Overlay {
    file: fs::File,
    state: Mutex<OverlayState>,
    /// redb only sets lengths it read from the file's own header; past this, it is refused.
    limit: u64,
}

#[derive(Debug)]
struct OverlayState {
    /// The length redb sees.
    len: u64,
    /// How much of that comes from the file (the rest reads as zeros).
    from_file: u64,
    /// What redb wrote, oldest first.
    writes: Vec<(u64, Vec<u8>)>,
}

impl Overlay {
    fn state(&self) -> std::sync::MutexGuard<'_, OverlayState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "a length or offset beyond the file",
    )
}

impl redb::StorageBackend for Overlay {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.state().len)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        use std::os::unix::fs::FileExt;
        let state = self.state();
        let end = offset
            .checked_add(out.len() as u64)
            .filter(|end| *end <= state.len)
            .ok_or_else(out_of_range)?;
        let in_file = usize::try_from(state.from_file.min(end).saturating_sub(offset))
            .map_err(|_| out_of_range())?;
        self.file.read_exact_at(&mut out[..in_file], offset)?;
        out[in_file..].fill(0);
        for (at, data) in &state.writes {
            let (from, to) = ((*at).max(offset), (at + data.len() as u64).min(end));
            if from < to {
                let (from, to) = (from as usize, to as usize);
                let (at, offset) = (*at as usize, offset as usize);
                out[from - offset..to - offset].copy_from_slice(&data[from - at..to - at]);
            }
        }
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.limit {
            return Err(out_of_range());
        }
        let mut state = self.state();
        state.len = len;
        // Cut off, then grown again, the cut part reads as zeros.
        state.from_file = state.from_file.min(len);
        for (at, data) in &mut state.writes {
            data.truncate(usize::try_from(len.saturating_sub(*at)).unwrap_or(usize::MAX));
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut state = self.state();
        if offset
            .checked_add(data.len() as u64)
            .is_none_or(|end| end > state.len)
        {
            return Err(out_of_range());
        }
        // redb rewrites its header in place: what this write covers whole is gone.
        let end = offset + data.len() as u64;
        state
            .writes
            .retain(|(at, old)| *at < offset || at + old.len() as u64 > end);
        state.writes.push((offset, data.to_vec()));
        Ok(())
    }
}

/// What a journal's redb file holds, without its log, and the first log frame it does not
/// hold; read without writing the file.
fn read_parts(path: &Path) -> Result<(JournalSnapshot, u64), JournalError> {
    let read_only = guarded(path, || match Builder::new().open_read_only(path) {
        Ok(db) => Ok(Some(db)),
        // A file left by a killed process must be repaired before it can be read, and
        // reading never writes: repair it through an overlay in memory. Nobody held the
        // file (that would be Busy).
        Err(redb::DatabaseError::RepairAborted) => Ok(None),
        Err(e) => Err(storage_error(path, e)),
    })?;
    match read_only {
        Some(db) => read_and_close(path, db, |db| {
            let tx = db.begin_read().map_err(|e| storage_error(path, e))?;
            Ok((read_snapshot(path, &tx)?, read_wal_seq(path, &tx)?))
        }),
        None => read_repaired_copy(path),
    }
}

/// Reads `db` with `read`, then closes it, each guarded: closing a database walks what it
/// holds and may panic on a damaged file, caught then rather than while a first panic
/// unwinds (which would abort the process). A database whose read panicked is not closed:
/// it is leaked, with its file handle.
fn read_and_close<D, T>(
    path: &Path,
    db: D,
    read: impl FnOnce(&D) -> Result<T, JournalError>,
) -> Result<T, JournalError> {
    match storage_call(|| read(&db)) {
        Ok(result) => {
            if let Err(detail) = storage_call(move || drop(db)) {
                tracing::debug!(path = %path.display(), %detail, "closing a damaged journal failed");
            }
            result
        }
        Err(detail) => {
            std::mem::forget(db);
            Err(JournalError::Corrupt {
                path: path.to_path_buf(),
                detail,
            })
        }
    }
}

/// Reads a journal that needs repair by repairing it through an [`Overlay`]: the file on
/// disk is left as it is, for the process that drives the run to repair.
fn read_repaired_copy(path: &Path) -> Result<(JournalSnapshot, u64), JournalError> {
    let io = |e: std::io::Error| JournalError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let file = fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let overlay = Overlay {
        file,
        limit: size.saturating_mul(2),
        state: Mutex::new(OverlayState {
            len: size,
            from_file: size,
            writes: Vec::new(),
        }),
    };
    let db = guarded(path, || {
        Builder::new()
            .create_with_backend(overlay)
            .map_err(|e| storage_error(path, e))
    })?;
    read_and_close(path, db, |db| {
        let tx = db.begin_read().map_err(|e| storage_error(path, e))?;
        Ok((read_snapshot(path, &tx)?, read_wal_seq(path, &tx)?))
    })
}

impl RedbStore {
    fn path_of(&self, id: RunId) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    fn wal_path_of(&self, id: RunId) -> PathBuf {
        self.dir.join(format!("{id}.wal"))
    }

    /// Opens a journal for writing: checks its format, then brings the batches its log
    /// holds beyond the last checkpoint into redb, durably.
    fn open_exclusive(&self, id: RunId) -> Result<(RedbJournal, JournalSnapshot), JournalError> {
        let path = self.path_of(id);
        if !path.exists() {
            return Err(JournalError::NotFound { id, path });
        }
        // Opening for writing changes the file (redb marks it open, repairs it): a journal
        // or log that is damaged, or of another format, is refused before that.
        let (read, read_seq) = read_parts(&path)?;
        let wal_path = self.wal_path_of(id);
        Wal::read(&wal_path, read_seq).map_err(|e| wal_error(&wal_path, e))?;
        let (db, mut snapshot, seq) = guarded(&path, || {
            let db = Builder::new()
                .open(&path)
                .map_err(|e| storage_error(&path, e))?;
            let tx = db.begin_read().map_err(|e| storage_error(&path, e))?;
            let seq = read_wal_seq(&path, &tx)?;
            // Every commit moves the log's sequence on: at the same one, redb holds what
            // was just read (another process may have driven the run in between).
            let snapshot = if seq == read_seq {
                read
            } else {
                read_snapshot(&path, &tx)?
            };
            drop(tx);
            Ok((db, snapshot, seq))
        })?;
        let (wal, batches) = Wal::open(&wal_path, seq).map_err(|e| wal_error(&wal_path, e))?;
        let mut journal = RedbJournal {
            db,
            path,
            wal,
            pending: Vec::new(),
        };
        if !batches.is_empty() {
            let next = seq + batches.len() as u64;
            let ops: Vec<WriteOp> = batches.into_iter().flatten().collect();
            journal.commit(&ops, Durability::Immediate, Some(next))?;
            journal.wal.restart(next);
            snapshot.apply_all([ops.as_slice()]);
        }
        Ok((journal, snapshot))
    }
}

impl JournalStore for RedbStore {
    fn create(
        &self,
        info: &RunInfo,
        meta: &RunMeta,
        lease: &Lease,
    ) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError> {
        let path = self.path_of(info.id);
        // Built under a temporary name and renamed when complete, so a process killed
        // while creating a run leaves no half-made journal behind under a run's name.
        let partial = self.dir.join(format!("{}.{EXTENSION}.partial", info.id));
        let io = |e: std::io::Error| JournalError::Io {
            path: path.clone(),
            detail: e.to_string(),
        };
        fs::create_dir_all(&self.dir).map_err(io)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(io)?;
        let db = guarded(&path, || {
            Builder::new()
                .create_with_backend(
                    redb::backends::FileBackend::new(file).map_err(|e| storage_error(&path, e))?,
                )
                .map_err(|e| storage_error(&path, e))
        })?;
        let wal_path = self.wal_path_of(info.id);
        let wal = Wal::create(&wal_path, 1).map_err(|e| wal_error(&wal_path, e))?;
        let journal = RedbJournal {
            db,
            path: path.clone(),
            wal,
            pending: Vec::new(),
        };
        guarded(&path, || {
            let e = |err: redb::Error| storage_error(&path, err);
            let tx = journal.db.begin_write().map_err(|x| e(x.into()))?;
            {
                let mut table = tx.open_table(META).map_err(|x| e(x.into()))?;
                table
                    .insert(KEY_FORMAT, encode(&FORMAT_VERSION).as_slice())
                    .map_err(|x| e(x.into()))?;
                table
                    .insert(KEY_INFO, encode(info).as_slice())
                    .map_err(|x| e(x.into()))?;
                table
                    .insert(KEY_WAL_SEQ, encode(&1u64).as_slice())
                    .map_err(|x| e(x.into()))?;
                table
                    .insert(KEY_STATE, encode(meta).as_slice())
                    .map_err(|x| e(x.into()))?;
                table
                    .insert(KEY_LEASE, encode(lease).as_slice())
                    .map_err(|x| e(x.into()))?;
                tx.open_table(STEPS).map_err(|x| e(x.into()))?;
            }
            tx.commit().map_err(|x| e(x.into()))
        })?;
        fs::rename(&partial, &path).map_err(io)?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        let snapshot = JournalSnapshot::created(info, meta, lease);
        Ok((Box::new(journal), snapshot))
    }

    fn open(&self, id: RunId) -> Result<(Box<dyn RunJournal>, JournalSnapshot), JournalError> {
        let (journal, snapshot) = self.open_exclusive(id)?;
        Ok((Box::new(journal), snapshot))
    }

    fn read(&self, id: RunId) -> Result<JournalSnapshot, JournalError> {
        let path = self.path_of(id);
        if !path.exists() {
            return Err(JournalError::NotFound { id, path });
        }
        let (mut snapshot, seq) = read_parts(&path)?;
        let wal_path = self.wal_path_of(id);
        let batches = Wal::read(&wal_path, seq).map_err(|e| wal_error(&wal_path, e))?;
        if !batches.is_empty() {
            snapshot.apply_all(batches.iter().map(Vec::as_slice));
        }
        Ok(snapshot)
    }

    fn list(&self) -> Result<Vec<RunId>, JournalError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(JournalError::Io {
                    path: self.dir.clone(),
                    detail: e.to_string(),
                });
            }
        };
        let mut ids: Vec<RunId> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                name.strip_suffix(&format!(".{EXTENSION}"))?.parse().ok()
            })
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn remove(&self, id: RunId) -> Result<(), JournalError> {
        let _ = fs::remove_file(self.wal_path_of(id));
        let path = self.path_of(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(JournalError::Io {
                path,
                detail: e.to_string(),
            }),
        }
    }

    fn sweep(&self, age: std::time::Duration) -> Result<usize, JournalError> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries.filter_map(Result::ok) {
            let is_partial = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(&format!(".{EXTENSION}.partial")));
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|elapsed| elapsed >= age);
            if is_partial && old && fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    fn location(&self, id: RunId) -> PathBuf {
        self.path_of(id)
    }
}

/// Writes another format version into a run's journal, as an older or newer Foundry would
/// have (the contract's format test).
#[cfg(test)]
pub(super) fn set_format_for_test(dir: &Path, id: RunId, format: u32) {
    let db = Database::open(RedbStore::new(dir).path_of(id)).expect("open");
    let tx = db.begin_write().expect("tx");
    {
        let mut meta = tx.open_table(META).expect("meta");
        meta.insert(KEY_FORMAT, encode(&format).as_slice())
            .expect("insert");
    }
    tx.commit().expect("commit");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RunState;
    use crate::time::Millis;

    fn new_run(store: &RedbStore) -> RunId {
        let info = RunInfo {
            id: RunId::new(),
            workflow: "w".into(),
            workflow_version: 1,
            input: serde_json::Value::Null,
            foundry_version: "test".into(),
            created_at: Millis(1),
        };
        let meta = RunMeta {
            state: RunState::Running,
            updated_at: Millis(1),
            error: None,
        };
        let lease = Lease {
            pid: 1,
            host: "h".into(),
            started_at: Millis(1),
            heartbeat_at: Millis(1),
        };
        drop(store.create(&info, &meta, &lease).expect("create"));
        info.id
    }

    #[test]
    fn an_overlay_reads_the_file_with_what_was_written_over_it_and_leaves_the_file_alone() {
        use redb::StorageBackend;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        fs::write(&path, [1u8; 16]).expect("write");
        let overlay = Overlay {
            file: fs::File::open(&path).expect("open"),
            limit: 32,
            state: Mutex::new(OverlayState {
                len: 16,
                from_file: 16,
                writes: Vec::new(),
            }),
        };
        let read = |at: u64, len: usize| {
            let mut out = vec![9u8; len];
            overlay.read(at, &mut out).map(|()| out)
        };
        overlay.write(2, &[2, 2, 2, 2]).expect("write");
        overlay.write(4, &[3, 3, 3, 3]).expect("write");
        overlay
            .write(2, &[4, 4, 4, 4])
            .expect("the same range again");
        assert_eq!(
            read(0, 10).expect("read"),
            [1, 1, 4, 4, 4, 4, 3, 3, 1, 1],
            "later writes over earlier ones, the file under both"
        );
        assert_eq!(read(5, 2).expect("read"), [4, 3]);
        assert!(read(10, 8).is_err(), "past the end");
        assert!(overlay.write(14, &[0; 4]).is_err(), "past the end");
        // Cut, then grown: the cut part reads as zeros, from the file and from the writes.
        overlay.set_len(5).expect("cut");
        overlay.set_len(24).expect("grow");
        assert_eq!(read(0, 10).expect("read"), [1, 1, 4, 4, 4, 0, 0, 0, 0, 0]);
        assert_eq!(read(20, 4).expect("read"), [0; 4]);
        assert!(overlay.set_len(33).is_err(), "past the limit");
        assert_eq!(
            fs::read(&path).expect("read"),
            [1u8; 16],
            "the file changed"
        );
    }

    #[test]
    fn files_are_private_and_listed_by_run() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let store = RedbStore::new(dir.path());
        let a = new_run(&store);
        let b = new_run(&store);
        assert_eq!(store.list().expect("list"), vec![a, b]);
        let mode = fs::metadata(store.path_of(a))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        // A half-created journal is not a run.
        fs::write(
            dir.path().join(format!("{}.journal.partial", RunId::new())),
            b"",
        )
        .expect("partial");
        assert_eq!(store.list().expect("list").len(), 2);
    }
}
