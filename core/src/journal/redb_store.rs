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
    steps.sort_by_key(|s| s.seq);
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
            let mut index = snapshot.step_index();
            snapshot.apply(&self.pending, &mut index);
            snapshot.steps.sort_by_key(|s| s.seq);
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

/// The largest journal read into memory to be repaired there; a run's journal holds only
/// in-flight progress and stays far below it.
const MAX_COPY: u64 = 256 << 20;

/// A journal file's bytes in memory, for redb to repair without touching the file. It never
/// grows beyond twice the file (redb sets lengths it read from the file's own header).
#[derive(Debug)]
struct MemoryCopy {
    bytes: std::sync::RwLock<Vec<u8>>,
    limit: u64,
}

impl MemoryCopy {
    fn bytes(&self) -> std::sync::RwLockReadGuard<'_, Vec<u8>> {
        self.bytes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn bytes_mut(&self) -> std::sync::RwLockWriteGuard<'_, Vec<u8>> {
        self.bytes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn out_of_range() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "a length or offset beyond the file",
    )
}

impl redb::StorageBackend for MemoryCopy {
    fn len(&self) -> Result<u64, std::io::Error> {
        Ok(self.bytes().len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        let bytes = self.bytes();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(out.len()).ok_or_else(out_of_range)?;
        out.copy_from_slice(bytes.get(start..end).ok_or_else(out_of_range)?);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        if len > self.limit {
            return Err(out_of_range());
        }
        let len = usize::try_from(len).map_err(|_| out_of_range())?;
        self.bytes_mut().resize(len, 0);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        let mut bytes = self.bytes_mut();
        let start = usize::try_from(offset).map_err(|_| out_of_range())?;
        let end = start.checked_add(data.len()).ok_or_else(out_of_range)?;
        bytes
            .get_mut(start..end)
            .ok_or_else(out_of_range)?
            .copy_from_slice(data);
        Ok(())
    }
}

/// Reads a journal that needs repair by repairing a copy of it in memory: the file on disk
/// is left as it is, for the process that drives the run to repair.
fn read_repaired_copy(path: &Path) -> Result<(JournalSnapshot, u64), JournalError> {
    let io = |e: std::io::Error| JournalError::Io {
        path: path.to_path_buf(),
        detail: e.to_string(),
    };
    let size = fs::metadata(path).map_err(io)?.len();
    if size > MAX_COPY {
        return Err(JournalError::Corrupt {
            path: path.to_path_buf(),
            detail: format!(
                "{size} bytes, more than a journal holds ({MAX_COPY}): refused without its driver"
            ),
        });
    }
    let bytes = fs::read(path).map_err(io)?;
    let copy = MemoryCopy {
        limit: size.saturating_mul(2),
        bytes: std::sync::RwLock::new(bytes),
    };
    guarded(path, || {
        let db = Builder::new()
            .create_with_backend(copy)
            .map_err(|e| storage_error(path, e))?;
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
        self.read(id)?;
        let (db, mut snapshot, seq) = guarded(&path, || {
            let db = Builder::new()
                .open(&path)
                .map_err(|e| storage_error(&path, e))?;
            let tx = db.begin_read().map_err(|e| storage_error(&path, e))?;
            let snapshot = read_snapshot(&path, &tx)?;
            let seq = read_wal_seq(&path, &tx)?;
            drop(tx);
            Ok((db, snapshot, seq))
        })?;
        let wal_path = self.wal_path_of(id);
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
            let mut index = snapshot.step_index();
            snapshot.apply(&ops, &mut index);
            snapshot.steps.sort_by_key(|s| s.seq);
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
        let read_only = guarded(&path, || {
            let db = match Builder::new().open_read_only(&path) {
                Ok(db) => db,
                // A file left by a killed process must be repaired before it can be read,
                // and reading never writes: repair a copy in memory. Nobody held the file
                // (that would be Busy).
                Err(redb::DatabaseError::RepairAborted) => return Ok(None),
                Err(e) => return Err(storage_error(&path, e)),
            };
            let tx = db.begin_read().map_err(|e| storage_error(&path, e))?;
            Ok(Some((
                read_snapshot(&path, &tx)?,
                read_wal_seq(&path, &tx)?,
            )))
        })?;
        let (mut snapshot, seq) = match read_only {
            Some(read) => read,
            None => read_repaired_copy(&path)?,
        };
        let wal_path = self.wal_path_of(id);
        let batches = Wal::read(&wal_path, seq).map_err(|e| wal_error(&wal_path, e))?;
        if !batches.is_empty() {
            let mut index = snapshot.step_index();
            for batch in &batches {
                snapshot.apply(batch, &mut index);
            }
            snapshot.steps.sort_by_key(|s| s.seq);
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
