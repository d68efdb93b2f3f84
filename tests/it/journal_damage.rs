//! A damaged journal never crashes Foundry: every single-byte flip of a real journal and of
//! its write-ahead log, read through the core's own store, is a clear error naming the file
//! or a correct read, never a panic or an abort; a seeded sample of the flips, through the
//! real binary, leaves the intact run beside it listed and resumable.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use foundry_core::journal::{JournalError, JournalSnapshot, JournalStore, RedbStore};
use foundry_core::model::RunId;
use foundry_tests::{Home, killed};
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// Enough steps for a checkpoint (one every 128 log frames) to have put some of them in
/// redb, with more in the log after it.
const STEPS: usize = 80;

/// Opening to drive is tried on every this-many-th flipped offset.
const OPEN_EVERY: usize = 37;

fn plan(steps: usize) -> Value {
    let steps: Vec<Value> = (0..steps)
        .map(|i| json!({"key": format!("s{i}"), "run": ["true"]}))
        .collect();
    json!({ "steps": steps })
}

/// Starts a plan of `steps` steps and kills its driver when its last step has started:
/// an interrupted run whose redb file was not closed and whose log holds frames.
fn interrupted_run(home: &Home, steps: usize) -> String {
    let before: Vec<String> = run_ids(home);
    let status = home
        .start_cmd(&plan(steps))
        .env("FOUNDRY_FAILPOINTS", format!("s{}#0@started", steps - 1))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start");
    assert!(killed(status), "the driver was not killed: {status:?}");
    run_ids(home)
        .into_iter()
        .find(|id| !before.contains(id))
        .expect("the new run")
}

fn run_ids(home: &Home) -> Vec<String> {
    std::fs::read_dir(home.runs_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    e.file_name()
                        .to_str()?
                        .strip_suffix(".journal")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Which file of the run a sweep damages.
#[derive(Clone, Copy, Debug)]
enum Part {
    Journal,
    Wal,
}

impl Part {
    fn path(self, runs: &Path, run: &str) -> PathBuf {
        match self {
            Part::Journal => runs.join(format!("{run}.journal")),
            Part::Wal => runs.join(format!("{run}.wal")),
        }
    }
}

/// The intact files of a run.
struct Pristine {
    journal: Vec<u8>,
    wal: Vec<u8>,
}

impl Pristine {
    fn of(runs: &Path, run: &str) -> Pristine {
        Pristine {
            journal: std::fs::read(Part::Journal.path(runs, run)).expect("journal"),
            wal: std::fs::read(Part::Wal.path(runs, run)).expect("wal"),
        }
    }

    fn bytes(&self, part: Part) -> &[u8] {
        match part {
            Part::Journal => &self.journal,
            Part::Wal => &self.wal,
        }
    }

    /// Puts the run's files in `runs`, with the byte at `offset` of `part` flipped.
    fn install(&self, runs: &Path, run: &str, flip: Option<(Part, usize)>) {
        for part in [Part::Journal, Part::Wal] {
            let mut bytes = self.bytes(part).to_vec();
            if let Some((p, offset)) = flip
                && std::mem::discriminant(&p) == std::mem::discriminant(&part)
            {
                bytes[offset] ^= 0xff;
            }
            std::fs::write(part.path(runs, run), &bytes).expect("install");
        }
    }
}

/// What reading a damaged copy gave.
#[derive(Default, Debug)]
struct Tally {
    clear_error: usize,
    correct_read: usize,
}

/// What a read shows of a run, to compare with the intact one's.
fn essence(s: &JournalSnapshot) -> Value {
    json!({
        "info": s.info,
        "meta": s.meta,
        "steps": s.steps,
        "summary": s.summary,
    })
}

fn classify(
    result: Result<JournalSnapshot, JournalError>,
    intact: &Value,
    run: &str,
    what: &str,
    tally: &mut Tally,
) {
    match result {
        Ok(snapshot) => {
            assert_eq!(
                &essence(&snapshot),
                intact,
                "{what}: read without an error, but not what was written"
            );
            tally.correct_read += 1;
        }
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains(run),
                "{what}: the error does not name the run's file: {message}"
            );
            assert!(
                !matches!(e, JournalError::Busy { .. }),
                "{what}: a damaged file is not busy: {message}"
            );
            tally.clear_error += 1;
        }
    }
}

/// Every offset of the journal, and of the log every offset up to 4 KiB past its last
/// frame (the rest is the zeroes it was made with: every 509th of those).
fn offsets(part: Part, bytes: &[u8]) -> Vec<usize> {
    match part {
        Part::Journal => (0..bytes.len()).collect(),
        Part::Wal => {
            let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            let dense = (used + 4096).min(bytes.len());
            (0..dense)
                .chain((dense..bytes.len()).step_by(509))
                .collect()
        }
    }
}

#[test]
fn every_byte_flip_of_a_journal_and_its_log_is_an_error_or_a_correct_read() {
    let home = Home::new();
    let run = interrupted_run(&home, STEPS);
    let pristine = Pristine::of(&home.runs_dir(), &run);
    let id: RunId = run.parse().expect("run id");

    // Memory-backed where there is one: the sweep commits (opening to drive repairs) once
    // per offset.
    let shm = Path::new("/dev/shm");
    let scratch = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        home.scratch()
    };
    let work = tempfile::Builder::new()
        .prefix("foundry-sweep-")
        .tempdir_in(scratch)
        .expect("work dir");
    let work = work.path();
    let store = RedbStore::new(work);
    pristine.install(work, &run, None);
    let intact = essence(&store.read(id).expect("the intact journal reads"));
    // A damaged last frame cannot be told from one torn while written: it reads as the
    // state before it.
    let mut torn_wal = pristine.wal.clone();
    let last = last_frame(&torn_wal);
    torn_wal[last.clone()].fill(0);
    let torn = Pristine {
        journal: pristine.journal.clone(),
        wal: torn_wal,
    };
    torn.install(work, &run, None);
    let before_last = essence(&store.read(id).expect("the torn log reads"));
    assert_eq!(
        intact["steps"].as_array().map(Vec::len),
        Some(STEPS),
        "{intact}"
    );

    for part in [Part::Journal, Part::Wal] {
        let bytes = pristine.bytes(part);
        let mut read = Tally::default();
        let mut opened = Tally::default();
        let offsets = offsets(part, bytes);
        let began = std::time::Instant::now();
        for (n, &offset) in offsets.iter().enumerate() {
            let what = format!("{part:?} byte {offset} of {}", bytes.len());
            pristine.install(work, &run, Some((part, offset)));
            let result = std::panic::catch_unwind(|| store.read(id))
                .unwrap_or_else(|_| panic!("{what}: reading panicked"));
            let expected = match part {
                Part::Wal if last.contains(&offset) => &before_last,
                _ => &intact,
            };
            classify(result, expected, &run, &what, &mut read);
            // Opening to drive repairs and commits, which costs more: every OPEN_EVERY-th
            // offset (the binary's sample resumes damaged runs too).
            if n % OPEN_EVERY != 0 {
                continue;
            }
            pristine.install(work, &run, Some((part, offset)));
            let result = std::panic::catch_unwind(|| store.open(id).map(|(_, s)| s))
                .unwrap_or_else(|_| panic!("{what}: opening to drive panicked"));
            classify(result, expected, &run, &what, &mut opened);
        }
        println!(
            "{part:?} ({} bytes, {} offsets flipped in {:?}): read: {} clear errors, {} correct reads; \
             opened to drive: {} clear errors, {} correct reads",
            bytes.len(),
            offsets.len(),
            began.elapsed(),
            read.clear_error,
            read.correct_read,
            opened.clear_error,
            opened.correct_read
        );
    }
}

/// Where the log's last frame lies.
fn last_frame(wal: &[u8]) -> std::ops::Range<usize> {
    let mut at = 16;
    let mut last = at..at;
    while let Some(w) = wal.get(at..at + 4) {
        let len = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize;
        if len == 0 || at + 16 + len > wal.len() {
            break;
        }
        last = at..at + 16 + len;
        at += 16 + len;
    }
    last
}

/// A command's run: never a panic, never killed by a signal.
fn assert_no_crash(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.code().is_some_and(|c| c != 101),
        "{what}: crashed ({:?}): {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "{what}: panicked: {stderr}");
}

#[test]
fn a_sample_of_byte_flips_through_the_binary_never_crashes_and_spares_the_neighbour() {
    let home = Home::new();
    let damaged = interrupted_run(&home, 40);
    let neighbour = interrupted_run(&home, 2);
    let runs = home.runs_dir();
    let pristine = Pristine::of(&runs, &damaged);
    let neighbour_files = Pristine::of(&runs, &neighbour);

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x10_0004);
    let mut tally = Tally::default();
    for part in [Part::Journal, Part::Wal] {
        let bytes = pristine.bytes(part);
        let used = match part {
            Part::Journal => bytes.len(),
            Part::Wal => bytes.iter().rposition(|&b| b != 0).map_or(16, |p| p + 1),
        };
        for _ in 0..12 {
            let offset = rng.random_range(0..used);
            let what = format!("{part:?} byte {offset}");
            pristine.install(&runs, &damaged, Some((part, offset)));
            neighbour_files.install(&runs, &neighbour, None);

            let list = home.run(&["workflow", "list", "--all", "--output", "json"]);
            assert_no_crash(&list, &format!("{what}: list"));
            let rows = foundry_tests::json_lines(&list.stdout);
            let row = |id: &str| {
                rows.iter()
                    .find(|r| r["run"] == id)
                    .unwrap_or_else(|| panic!("{what}: run {id} not listed: {rows:?}"))
            };
            let n = row(&neighbour);
            assert!(n["error"].is_null(), "{what}: the neighbour: {n}");
            assert_eq!(n["state"], "interrupted", "{what}: the neighbour: {n}");
            let d = row(&damaged);
            match d["error"].as_str() {
                Some(error) => {
                    assert!(error.contains(&damaged), "{what}: {error}");
                    tally.clear_error += 1;
                }
                None => {
                    assert_eq!(d["state"], "interrupted", "{what}: {d}");
                    tally.correct_read += 1;
                }
            }
            for verb in ["show", "status"] {
                let out = home.run(&["workflow", verb, &damaged]);
                assert_no_crash(&out, &format!("{what}: {verb}"));
                if !out.status.success() {
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert!(stderr.contains(&damaged), "{what}: {verb}: {stderr}");
                }
            }
            let out = home.run(&["workflow", "resume", &damaged]);
            assert_no_crash(&out, &format!("{what}: resume of the damaged run"));
            let out = home.run(&["workflow", "resume", &neighbour]);
            assert_no_crash(&out, &format!("{what}: resume of the neighbour"));
            assert!(
                out.status.success(),
                "{what}: the neighbour does not resume: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    println!(
        "binary sample: {} clear errors, {} correct reads",
        tally.clear_error, tally.correct_read
    );
}

fn digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).expect("reading a run's file")).to_vec()
}

#[test]
fn reading_an_interrupted_run_never_writes_its_files() {
    let home = Home::new();
    let run = interrupted_run(&home, 6);
    let runs = home.runs_dir();
    let files = [Part::Journal.path(&runs, &run), Part::Wal.path(&runs, &run)];
    let before: Vec<Vec<u8>> = files.iter().map(|f| digest(f)).collect();
    for args in [
        vec!["workflow", "list", "--all"],
        vec!["workflow", "list", "--all", "--output", "json"],
        vec!["workflow", "status", &run],
        vec!["workflow", "status", &run, "--output", "json"],
        vec!["workflow", "show", &run],
        vec!["workflow", "show", &run, "--output", "json"],
    ] {
        let out = home.ok_output(&args);
        let after: Vec<Vec<u8>> = files.iter().map(|f| digest(f)).collect();
        assert_eq!(
            before,
            after,
            "`foundry {}` changed the run's journal or log",
            args.join(" ")
        );
        if args.contains(&"json") && args.contains(&"show") {
            let shown = &foundry_tests::json_lines(&out.stdout)[0];
            assert_eq!(shown["state"], "interrupted", "{shown}");
            assert_eq!(shown["steps"]["done"], 5, "{shown}");
        }
    }
    // The driving process repairs, and the run then completes.
    home.ok_output(&["workflow", "resume", &run]);
    assert_eq!(home.show(&run)["state"], "completed");
}

/// Bumps the format a run's log records in its header, as a newer Foundry would write it.
fn bump_wal_format(path: &Path) {
    let mut bytes = std::fs::read(path).expect("wal");
    let version = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    bytes[12..16].copy_from_slice(&(version + 1).to_le_bytes());
    std::fs::write(path, bytes).expect("wal");
}

/// Bumps the format a journal records in its `meta` table (the value `\x01` `1` after the
/// key `format`), as a newer Foundry would write it.
fn bump_journal_format(path: &Path) {
    let mut bytes = std::fs::read(path).expect("journal");
    let key = b"format";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("the format key in the journal");
    let value = bytes[at..]
        .windows(2)
        .position(|w| w == [1, b'1'])
        .map(|p| at + p + 1)
        .expect("the format value after its key");
    bytes[value] = b'2';
    std::fs::write(path, bytes).expect("journal");
}

fn assert_upgrade_message(home: &Home, run: &str, file: &Path) {
    let name = file.file_name().and_then(|n| n.to_str()).expect("name");
    let before = digest(file);
    for args in [
        vec!["workflow", "show", run],
        vec!["workflow", "status", run],
        vec!["workflow", "resume", run],
    ] {
        let out = home.run(&args);
        assert_no_crash(&out, &args.join(" "));
        assert!(!out.status.success(), "{args:?} succeeded");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("written by a newer Foundry") && stderr.contains(name),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("upgrade Foundry to resume it"),
            "{args:?}: {stderr}"
        );
        for word in ["remove", "delete"] {
            assert!(
                !stderr.contains(word),
                "{args:?} suggests to {word}: {stderr}"
            );
        }
    }
    let list = home.run(&["workflow", "list", "--all"]);
    assert_no_crash(&list, "list");
    let stderr = String::from_utf8_lossy(&list.stderr);
    assert!(stderr.contains("written by a newer Foundry"), "{stderr}");
    assert_eq!(before, digest(file), "the newer file was changed");
}

#[test]
fn a_newer_format_log_or_journal_asks_for_an_upgrade() {
    let home = Home::new();
    let run = interrupted_run(&home, 3);
    let wal = Part::Wal.path(&home.runs_dir(), &run);
    bump_wal_format(&wal);
    assert_upgrade_message(&home, &run, &wal);

    let home = Home::new();
    let paused = home.start_plan(&json!({"steps": [
        {"key": "one", "run": ["true"]},
        {"key": "fails", "run": ["false"], "retry": {"max_attempts": 1}},
    ]}));
    assert!(!paused.status.success(), "{paused:?}");
    let run = run_ids(&home).pop().expect("a run");
    let journal = Part::Journal.path(&home.runs_dir(), &run);
    bump_journal_format(&journal);
    assert_upgrade_message(&home, &run, &journal);
}
