//! The disk's own figures: raw 4 KiB write + fdatasync, and a bare redb durable commit,
//! measured in the benchmark directory so they compare with the engine's.

use std::fs::{self, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use redb::{Database, Durability, TableDefinition};

use crate::stats::{Summary, micros};

const BLOCK: usize = 4096;
/// Operations discarded before measuring.
const WARMUP: u64 = 50;
/// Operations measured.
const OPS: u64 = 1000;
/// The rewrite test cycles over this many blocks of a preallocated file.
const REWRITE_BLOCKS: u64 = 256;

/// The file system a directory sits on, from `/proc/self/mountinfo`.
#[derive(Debug)]
pub struct Mount {
    pub point: PathBuf,
    pub source: String,
    pub fstype: String,
}

impl Mount {
    /// File systems kept in memory: an fsync there costs nothing and proves nothing.
    pub fn in_memory(&self) -> bool {
        matches!(self.fstype.as_str(), "tmpfs" | "ramfs" | "devtmpfs")
    }
}

/// Mount points escape space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The mount holding `dir`: the longest mount point that is a prefix of its real path.
pub fn mount_of(dir: &Path) -> Result<Mount> {
    let real = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let table =
        fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut best: Option<Mount> = None;
    for line in table.lines() {
        // id parent major:minor root mount-point options [optional...] - fstype source super
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(point) = left.split(' ').nth(4).map(|p| PathBuf::from(unescape(p))) else {
            continue;
        };
        let mut rest = right.split(' ');
        let (Some(fstype), Some(source)) = (rest.next(), rest.next()) else {
            continue;
        };
        let longer = best
            .as_ref()
            .is_none_or(|b| point.as_os_str().len() >= b.point.as_os_str().len());
        if real.starts_with(&point) && longer {
            best = Some(Mount {
                point,
                source: unescape(source),
                fstype: fstype.to_string(),
            });
        }
    }
    best.with_context(|| format!("no mount holds {}", real.display()))
}

/// A new file at `path`, for reading and writing.
fn new_file(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// 4 KiB `pwrite` + `fdatasync`, rewriting blocks of a preallocated file (its size never
/// changes, so no metadata needs flushing): the raw figure, taken as often as asked, so that
/// it can be measured right beside what it is compared with. The file is removed on drop.
pub struct Rewrite {
    file: fs::File,
    path: PathBuf,
    block: Vec<u8>,
    done: u64,
}

impl Rewrite {
    pub fn open(dir: &Path) -> Result<Rewrite> {
        let path = dir.join("fsync-rewrite.dat");
        let file = new_file(&path)?;
        let block = vec![0u8; BLOCK];
        for b in 0..REWRITE_BLOCKS {
            file.write_all_at(&block, b * BLOCK as u64)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        file.sync_all()
            .with_context(|| format!("syncing {}", path.display()))?;
        Ok(Rewrite {
            file,
            path,
            block,
            done: 0,
        })
    }

    /// `n` more operations, each in µs.
    pub fn samples(&mut self, n: u64) -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let i = self.done;
            self.done += 1;
            self.block[..8].copy_from_slice(&i.to_le_bytes());
            let offset = (i % REWRITE_BLOCKS) * BLOCK as u64;
            let t = Instant::now();
            self.file
                .write_all_at(&self.block, offset)
                .and_then(|()| self.file.sync_data())
                .with_context(|| format!("write + fdatasync to {}", self.path.display()))?;
            samples.push(micros(t.elapsed()));
        }
        Ok(samples)
    }
}

impl Drop for Rewrite {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_file(&self.path) {
            eprintln!("warning: could not remove {}: {e}", self.path.display());
        }
    }
}

/// The raw figure ([`Rewrite`]): per operation in µs, over [`OPS`] operations after
/// [`WARMUP`] ones.
pub fn fsync_rewrite_4k(rewrite: &mut Rewrite) -> Result<Summary> {
    rewrite.samples(WARMUP)?;
    Summary::of(&rewrite.samples(OPS)?)
}

/// 4 KiB appended + `fdatasync`: the file grows, so its size is flushed too. A note
/// beside the main figure, per operation in µs.
pub fn fsync_append_4k(dir: &Path) -> Result<Summary> {
    let path = dir.join("fsync-append.dat");
    let file = new_file(&path)?;
    let mut block = vec![0u8; BLOCK];
    let mut samples = Vec::with_capacity(OPS as usize);
    for i in 0..WARMUP + OPS {
        block[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        file.write_all_at(&block, i * BLOCK as u64)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("append + fdatasync to {}", path.display()))?;
        let took = t.elapsed();
        if i >= WARMUP {
            samples.push(micros(took));
        }
    }
    drop(file);
    fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Summary::of(&samples)
}

pub(crate) const STEPS: TableDefinition<&str, &[u8]> = TableDefinition::new("steps");

/// What a bare redb database costs per durable commit, in µs.
pub struct RedbBaseline {
    /// One new key per commit.
    pub insert: Summary,
    /// The engine's pattern in a sequential run: each commit updates the previous key
    /// (its `completed`) and inserts a new one (the next `started`).
    pub update_and_insert: Summary,
}

/// One durable commit of `puts` into the `steps` table.
pub(crate) fn commit(db: &Database, puts: &[(&str, &[u8])]) -> Result<()> {
    let mut tx = db.begin_write()?;
    tx.set_durability(Durability::Immediate)?;
    {
        let mut table = tx.open_table(STEPS)?;
        for (key, value) in puts {
            table.insert(*key, *value)?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// 1000 durable commits of a `value_len`-byte value into a bare redb database (after a
/// warm-up), twice: one insert per commit, then the engine's update + insert.
pub fn redb_commits(dir: &Path, value_len: usize) -> Result<RedbBaseline> {
    let value = vec![b'x'; value_len];
    let mut results = Vec::with_capacity(2);
    for (name, pair) in [
        ("baseline-insert.redb", false),
        ("baseline-pair.redb", true),
    ] {
        let path = dir.join(name);
        let db = Database::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut samples = Vec::with_capacity(OPS as usize);
        for i in 0..WARMUP + OPS {
            let key = format!("noop-{i}#0");
            let previous = format!("noop-{}#0", i.saturating_sub(1));
            let mut puts: Vec<(&str, &[u8])> = Vec::with_capacity(2);
            if pair && i > 0 {
                puts.push((previous.as_str(), value.as_slice()));
            }
            puts.push((key.as_str(), value.as_slice()));
            let t = Instant::now();
            commit(&db, &puts).with_context(|| format!("committing to {}", path.display()))?;
            let took = t.elapsed();
            if i >= WARMUP {
                samples.push(micros(took));
            }
        }
        drop(db);
        fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        results.push(Summary::of(&samples)?);
    }
    match results.as_slice() {
        [insert, update_and_insert] => Ok(RedbBaseline {
            insert: *insert,
            update_and_insert: *update_and_insert,
        }),
        _ => bail!("redb baseline: expected two summaries"),
    }
}
