//! The write-ahead log in front of a run's redb file, `<run-id>.wal`.
//!
//! A redb commit copies and rewrites several pages (leaf, branches, table tree, free list,
//! header) and makes all of them durable: about twice the cost of one raw `fdatasync` on
//! our disks, paid once per step. The log makes a batch durable with one small write into
//! a preallocated file and one `fdatasync`; redb then takes the same batch as a
//! non-durable commit, and every so often a durable redb commit (a checkpoint) makes the
//! log's frames redundant so it can start over.
//!
//! The file starts with a 16-byte header: the magic `FOUNDRYWAL`, two zero bytes, and the
//! format version as a little-endian u32 ([`super::FORMAT_VERSION`], as the journal's).
//! Frames follow it. A frame is `[len: u32][crc32: u32][seq: u64][payload: len bytes]`,
//! little-endian; the
//! checksum covers `seq` and the payload (the batch as JSON). Reading stops at the first
//! frame that is torn, fails its checksum, or does not carry the next sequence number: a
//! frame is only ever torn at the end, since each is made durable before the next is
//! written. After a checkpoint the log restarts at its first frame with the next sequence number,
//! which the checkpoint records in redb; frames of the previous round left further on
//! have smaller numbers and so end the reading.

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::WriteOp;

const HEADER: usize = 16;

const MAGIC: &[u8; 10] = b"FOUNDRYWAL";
/// Where frames start: after the file header.
const START: u64 = 16;

fn file_header() -> [u8; START as usize] {
    let mut h = [0u8; START as usize];
    h[..MAGIC.len()].copy_from_slice(MAGIC);
    h[12..].copy_from_slice(&super::FORMAT_VERSION.to_le_bytes());
    h
}

/// The log's format version, or why the file is not a log.
fn check_header(bytes: &[u8]) -> io::Result<u32> {
    let header = bytes
        .get(..START as usize)
        .ok_or_else(|| io::Error::new(ErrorKind::InvalidData, "shorter than its header"))?;
    if &header[..MAGIC.len()] != MAGIC {
        return Err(io::Error::new(
            ErrorKind::InvalidData,
            "not a foundry write-ahead log",
        ));
    }
    let version = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
    if version != super::FORMAT_VERSION {
        return Err(io::Error::new(ErrorKind::InvalidData, OtherFormat(version)));
    }
    Ok(version)
}

/// A log of another format than ours, carried inside an [`io::Error`]: [`other_format`]
/// finds it again.
#[derive(Debug)]
pub(super) struct OtherFormat(pub(super) u32);

impl std::fmt::Display for OtherFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "format {}; this foundry reads format {}",
            self.0,
            super::FORMAT_VERSION
        )
    }
}

impl std::error::Error for OtherFormat {}

/// The format of a log refused for its format.
pub(super) fn other_format(e: &io::Error) -> Option<u32> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<OtherFormat>())
        .map(|f| f.0)
}

/// The log's size, written with zeroes when it is created: a frame then overwrites blocks
/// that exist, and `fdatasync` has no file size or extent to record.
pub(super) const CAPACITY: u64 = 1 << 20;

/// A batch that does not fit in the rest of the log.
#[derive(Debug)]
pub(super) struct Full;

pub(super) struct Wal {
    file: File,
    path: PathBuf,
    offset: u64,
    next_seq: u64,
    frames: u64,
}

fn frame(seq: u64, ops: &[WriteOp]) -> io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(ops).map_err(io::Error::other)?;
    let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("batch too large"))?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(&payload);
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc.finalize().to_le_bytes());
    bytes.extend_from_slice(&seq.to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// The frame at `at` if it is whole, checksummed and carries `seq`: its payload.
fn frame_at(bytes: &[u8], at: usize, seq: u64) -> Option<&[u8]> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    let mut seq_bytes = [0u8; 8];
    seq_bytes.copy_from_slice(&header[8..16]);
    if u64::from_le_bytes(seq_bytes) != seq {
        return None;
    }
    // The length is checked against the bytes there are before anything is sliced.
    let len = usize::try_from(word(0)).ok().filter(|&l| l > 0)?;
    let payload = bytes.get(at + HEADER..(at + HEADER).checked_add(len)?)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq_bytes);
    hasher.update(payload);
    (hasher.finalize() == word(4)).then_some(payload)
}

/// How reading a log ended before its end.
#[derive(Debug, PartialEq)]
enum Stop {
    /// At the last frame written (or torn while written): the log's true end.
    End,
    /// At a damaged frame with intact frames of the same round after it: the log lost data
    /// in the middle, which a crash cannot do.
    Damaged { seq: u64, at: usize },
}

/// The frames of `bytes` from `first_seq` on, in order, where they end, and why reading
/// stopped there.
fn parse(bytes: &[u8], first_seq: u64) -> (Vec<Vec<WriteOp>>, u64, Stop) {
    let mut batches = Vec::new();
    let mut at = START as usize;
    let mut expected = first_seq;
    loop {
        let ops = frame_at(bytes, at, expected)
            .and_then(|payload| serde_json::from_slice::<Vec<WriteOp>>(payload).ok());
        let Some(ops) = ops else {
            break;
        };
        at += HEADER + frame_len(bytes, at);
        batches.push(ops);
        expected += 1;
    }
    // Where the log ends its next header is still the zeroes it was made with. Otherwise
    // a later frame of this round (frames of earlier rounds further on carry smaller
    // numbers) means the one here was damaged, not torn.
    let zeroes = bytes
        .get(at..at + HEADER)
        .is_none_or(|h| h.iter().all(|&b| b == 0));
    let damaged = !zeroes
        && (at + 1..bytes.len().saturating_sub(HEADER))
            .any(|p| frame_at(bytes, p, expected + 1).is_some());
    let stop = if damaged {
        Stop::Damaged { seq: expected, at }
    } else {
        Stop::End
    };
    (batches, at as u64, stop)
}

/// The payload length of the frame at `at`, already checked by [`frame_at`].
fn frame_len(bytes: &[u8], at: usize) -> usize {
    bytes
        .get(at..at + 4)
        .map_or(0, |w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize)
}

impl Wal {
    /// Creates an empty log (written with zeroes, made durable) whose first frame will
    /// carry `next_seq`.
    pub(super) fn create(path: &Path, next_seq: u64) -> io::Result<Wal> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        let mut bytes = vec![0u8; CAPACITY as usize];
        bytes[..START as usize].copy_from_slice(&file_header());
        file.write_all_at(&bytes, 0)?;
        file.sync_all()?;
        Ok(Wal {
            file,
            path: path.to_path_buf(),
            offset: START,
            next_seq,
            frames: 0,
        })
    }

    /// Opens the log, returning the batches written since the checkpoint that recorded
    /// `next_seq`, oldest first. A missing log (a journal written before logs existed, or
    /// whose log was never made) is an empty one.
    pub(super) fn open(path: &Path, next_seq: u64) -> io::Result<(Wal, Vec<Vec<WriteOp>>)> {
        let batches = Wal::read(path, next_seq)?;
        let file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) if f.metadata()?.len() >= CAPACITY => f,
            Ok(_) | Err(_) => return Ok((Wal::create(path, next_seq)?, batches)),
        };
        let wal = Wal {
            file,
            path: path.to_path_buf(),
            offset: START,
            next_seq,
            frames: 0,
        };
        Ok((wal, batches))
    }

    /// The batches after the checkpoint that recorded `next_seq`, without opening the log
    /// for writing.
    pub(super) fn read(path: &Path, next_seq: u64) -> io::Result<Vec<Vec<WriteOp>>> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.len() > 4 * CAPACITY => {
                return Err(io::Error::new(
                    ErrorKind::InvalidData,
                    format!("{} bytes: larger than any log foundry writes", meta.len()),
                ));
            }
            _ => {}
        }
        match std::fs::read(path) {
            Ok(bytes) => {
                check_header(&bytes)?;
                match parse(&bytes, next_seq) {
                    (batches, _, Stop::End) => Ok(batches),
                    (_, _, Stop::Damaged { seq, at }) => Err(io::Error::new(
                        ErrorKind::InvalidData,
                        format!("frame {seq} at byte {at} is damaged and later frames are intact"),
                    )),
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The sequence number the next frame will carry.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Frames written since the last restart.
    pub(super) fn frames(&self) -> u64 {
        self.frames
    }

    pub(super) fn bytes_used(&self) -> u64 {
        self.offset - START
    }

    /// Makes `ops` durable as the next frame. `Ok(Err(Full))` when it does not fit: the
    /// caller checkpoints instead.
    pub(super) fn append(&mut self, ops: &[WriteOp]) -> io::Result<Result<(), Full>> {
        let bytes = frame(self.next_seq, ops)?;
        if self.offset + bytes.len() as u64 > CAPACITY {
            return Ok(Err(Full));
        }
        self.file.write_all_at(&bytes, self.offset)?;
        self.file.sync_data()?;
        self.offset += bytes.len() as u64;
        self.next_seq += 1;
        self.frames += 1;
        Ok(Ok(()))
    }

    /// Starts over at the first frame after a checkpoint recorded `next_seq` durably.
    pub(super) fn restart(&mut self, next_seq: u64) {
        self.offset = START;
        self.next_seq = next_seq;
        self.frames = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RunMeta, RunState};
    use crate::time::Millis;

    fn op(n: u64) -> Vec<WriteOp> {
        vec![WriteOp::Meta(RunMeta {
            state: RunState::Running,
            updated_at: Millis(n),
            error: None,
        })]
    }

    fn stamp(batch: &[WriteOp]) -> u64 {
        match &batch[0] {
            WriteOp::Meta(m) => m.updated_at.0,
            _ => 0,
        }
    }

    #[test]
    fn frames_read_back_until_a_torn_or_stale_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, 7).expect("create");
        for n in 0..5 {
            wal.append(&op(n)).expect("io").expect("fits");
        }
        let batches = Wal::read(&path, 7).expect("read");
        assert_eq!(
            batches.iter().map(|b| stamp(b)).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4]
        );
        // A later checkpoint's number: nothing of this round counts.
        assert!(Wal::read(&path, 12).expect("read").is_empty());

        // A torn last frame ends the log before it.
        let mut bytes = std::fs::read(&path).expect("bytes");
        let end = parse(&bytes, 7).1 as usize;
        assert_eq!(parse(&bytes, 7).2, Stop::End);
        bytes[end - 3] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        assert_eq!(Wal::read(&path, 7).expect("read").len(), 4);

        // After a restart, older frames further on are not read as new ones.
        let mut wal = Wal::create(&path, 7).expect("create");
        for n in 0..5 {
            wal.append(&op(n)).expect("io").expect("fits");
        }
        wal.restart(12);
        wal.append(&op(100)).expect("io").expect("fits");
        let batches = Wal::read(&path, 12).expect("read");
        assert_eq!(
            batches.iter().map(|b| stamp(b)).collect::<Vec<_>>(),
            vec![100]
        );
    }

    #[test]
    fn a_frame_damaged_before_intact_ones_is_an_error_not_an_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        let mut wal = Wal::create(&path, 3).expect("create");
        for n in 0..5 {
            wal.append(&op(n)).expect("io").expect("fits");
        }
        let pristine = std::fs::read(&path).expect("bytes");
        let second = START as usize + HEADER + frame_len(&pristine, START as usize);
        // Its length, its checksum, its number, its payload.
        for offset in [second, second + 5, second + 9, second + HEADER + 3] {
            let mut bytes = pristine.clone();
            bytes[offset] ^= 0xff;
            std::fs::write(&path, &bytes).expect("write");
            let err = Wal::read(&path, 3).expect_err("damaged");
            assert_eq!(err.kind(), ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("frame 4 at byte"), "{err}");
        }
    }

    #[test]
    fn a_log_of_another_format_or_no_log_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.wal");
        drop(Wal::create(&path, 1).expect("create"));
        let mut bytes = std::fs::read(&path).expect("bytes");
        bytes[12] = 99;
        std::fs::write(&path, &bytes).expect("write");
        let err = Wal::read(&path, 1).expect_err("refused");
        assert!(err.to_string().contains("format 99"), "{err}");
        std::fs::write(&path, b"garbage").expect("write");
        assert!(Wal::read(&path, 1).is_err());
    }

    #[test]
    fn a_full_log_says_so() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create(&dir.path().join("x.wal"), 1).expect("create");
        let big = vec![WriteOp::Meta(RunMeta {
            state: RunState::Failed,
            updated_at: Millis(1),
            error: Some("x".repeat(CAPACITY as usize)),
        })];
        assert!(wal.append(&big).expect("io").is_err());
        assert_eq!(wal.next_seq(), 1);
    }
}
