//! The journal contract, one body per property, run on every store: redb files in a temp
//! dir, and PostgreSQL in a throwaway cluster (`pg_cluster`).

use std::any::Any;

use super::pg_cluster::Cluster;
use super::{JournalError, JournalStore, PostgresStore, RedbStore, WriteOp};
use crate::model::{Lease, RunId, RunInfo, RunMeta, RunState, RunSummary, StepRecord};
use crate::time::Millis;

/// A store under test, a second handle on the same journals (as another process has), and
/// a way to damage what it holds.
pub(crate) struct Case {
    pub store: Box<dyn JournalStore>,
    reopen: Box<dyn Fn() -> Box<dyn JournalStore>>,
    set_format: Box<dyn Fn(RunId, u32)>,
    /// Keeps the temp dir or the server alive.
    _keep: Box<dyn Any>,
}

impl Case {
    /// Another handle on the same journals.
    pub fn reopen(&self) -> Box<dyn JournalStore> {
        (self.reopen)()
    }
}

pub(crate) fn redb() -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().to_path_buf();
    let again = path.clone();
    let damaged = path.clone();
    Case {
        store: Box::new(RedbStore::new(path)),
        reopen: Box::new(move || Box::new(RedbStore::new(again.clone()))),
        set_format: Box::new(move |id, format| {
            super::redb_store::set_format_for_test(&damaged, id, format);
        }),
        _keep: Box::new(dir),
    }
}

pub(crate) fn postgres() -> Case {
    let server = std::rc::Rc::new(Cluster::start());
    let url = server.socket_url();
    let again = url.clone();
    let sql = server.clone();
    Case {
        store: Box::new(PostgresStore::new(&url).expect("store")),
        reopen: Box::new(move || Box::new(PostgresStore::new(&again).expect("store"))),
        set_format: Box::new(move |id, format| {
            sql.psql(&format!(
                "UPDATE foundry_runs SET format = {format} WHERE id = '{id}'"
            ))
            .expect("psql");
        }),
        _keep: Box::new(server),
    }
}

pub(crate) fn info() -> RunInfo {
    RunInfo {
        id: RunId::new(),
        workflow: "w".into(),
        workflow_version: 1,
        input: serde_json::json!({"name": "x"}),
        foundry_version: "test".into(),
        created_at: Millis::now(),
    }
}

pub(crate) fn meta(state: RunState) -> RunMeta {
    RunMeta {
        state,
        updated_at: Millis(1),
        error: None,
    }
}

fn lease() -> Lease {
    crate::lease::own_lease()
}

fn new_run(store: &dyn JournalStore) -> RunId {
    let info = info();
    drop(
        store
            .create(&info, &meta(RunState::Running), &lease())
            .expect("create"),
    );
    info.id
}

pub(crate) fn step(seq: u64, key: &str) -> StepRecord {
    StepRecord::new_started(seq, key.into(), "k".into(), Millis(seq + 1))
}

pub(crate) fn a_journal_of_another_format_is_refused_with_a_clear_message(case: Case) {
    let id = new_run(&*case.store);
    (case.set_format)(id, 99);
    let err = case.store.read(id).expect_err("refused");
    assert!(
        matches!(err, JournalError::Format { found: 99, .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("format 99"), "{message}");
    assert!(message.contains(&id.to_string()), "{message}");
    assert!(message.contains("written by a newer Foundry"), "{message}");
    let hint = err.hint().unwrap_or_default();
    assert!(hint.contains("upgrade Foundry to resume it"), "{hint}");
    assert!(!hint.contains("remove"), "{hint}");
    assert!(matches!(
        case.store.open(id).err(),
        Some(JournalError::Format { .. })
    ));
}

pub(crate) fn runs_are_listed_oldest_first_and_removed(case: Case) {
    let store = &*case.store;
    let a = new_run(store);
    std::thread::sleep(std::time::Duration::from_millis(2));
    let b = new_run(store);
    assert_eq!(store.list().expect("list"), vec![a, b]);
    assert_eq!(store.completed().expect("completed"), vec![]);
    for id in [b, a] {
        let (mut journal, _) = store.open(id).expect("open");
        journal
            .write(&[
                WriteOp::Step(step(0, "a#0")),
                WriteOp::Meta(meta(RunState::Completed)),
            ])
            .expect("complete");
    }
    let c = new_run(store);
    assert_eq!(
        store.completed().expect("completed"),
        vec![a, b],
        "oldest first"
    );
    store.remove(a).expect("remove");
    assert_eq!(store.list().expect("list"), vec![b, c]);
    assert_eq!(store.completed().expect("completed"), vec![b]);
    assert!(matches!(
        store.read(a).err(),
        Some(JournalError::NotFound { .. })
    ));
    assert!(matches!(
        store.open(RunId::new()).err(),
        Some(JournalError::NotFound { .. })
    ));
}

pub(crate) fn writes_are_durable_and_read_back_in_order(case: Case) {
    let info = info();
    let (mut journal, snapshot) = case
        .store
        .create(&info, &meta(RunState::Running), &lease())
        .expect("create");
    assert!(snapshot.steps.is_empty());
    journal
        .write(&[WriteOp::Step(step(0, "b#0")), WriteOp::Step(step(1, "a#0"))])
        .expect("write");
    let mut again = step(0, "b#0");
    again.attempt = 2;
    journal
        .write(&[
            // Twice in one batch (started, then its outcome): the last one holds.
            WriteOp::Step(step(0, "b#0")),
            WriteOp::Step(again.clone()),
            WriteOp::Meta(meta(RunState::Paused)),
        ])
        .expect("write");
    let seen = journal.snapshot().expect("snapshot");
    drop(journal);
    // As another process sees it.
    let other = case.reopen();
    let read = other.read(info.id).expect("read");
    for snapshot in [seen, read] {
        let keys: Vec<_> = snapshot.steps.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["b#0", "a#0"]);
        assert_eq!(snapshot.steps[0], again);
        assert_eq!(snapshot.meta.state, RunState::Paused);
        assert_eq!(snapshot.info.input, info.input);
        assert!(snapshot.summary.is_none());
    }
}

pub(crate) fn finishing_deletes_the_steps_and_writes_the_summary_together(case: Case) {
    let id = new_run(&*case.store);
    let (mut journal, snapshot) = case.store.open(id).expect("open");
    assert!(snapshot.lease.is_some());
    journal
        .write(&[WriteOp::Step(step(0, "a#0")), WriteOp::Step(step(1, "b#0"))])
        .expect("write");
    let summary = RunSummary {
        steps: 2,
        finished_at: Millis(9),
        duration_ms: 8,
        output: serde_json::json!("done"),
    };
    journal
        .write(&[WriteOp::Finish {
            meta: meta(RunState::Completed),
            summary: summary.clone(),
        }])
        .expect("finish");
    journal.compact().expect("compact");
    drop(journal);
    let read = case.reopen().read(id).expect("read");
    assert!(read.steps.is_empty(), "{:?}", read.steps);
    assert_eq!(read.summary.map(|s| s.output), Some(summary.output));
    assert_eq!(read.meta.state, RunState::Completed);
    assert!(read.lease.is_none());
}

pub(crate) fn a_held_journal_is_busy_until_dropped(case: Case) {
    let id = new_run(&*case.store);
    let (journal, _) = case.store.open(id).expect("open");
    let err = case.store.open(id).err().expect("busy");
    assert!(matches!(err, JournalError::Busy { .. }), "{err:?}");
    drop(journal);
    let (_journal, snapshot) = case.store.open(id).expect("open again");
    assert_eq!(snapshot.info.id, id);
}

/// The writes of a sequential run of `steps` steps from `from`: each step's `started` with
/// the previous one's completion; every 100th write changes the run's state too, and every
/// 250th retries its step (a second record of the same key, later).
pub(crate) fn sequential_writes(from: u64, steps: u64) -> Vec<Vec<WriteOp>> {
    (from..from + steps)
        .map(|seq| {
            let mut ops = Vec::new();
            if let Some(previous) = seq.checked_sub(1) {
                let mut done = step(previous, &format!("s{previous}#0"));
                done.state = crate::model::StepRecordState::Completed;
                done.output = Some(serde_json::json!({ "n": previous }));
                ops.push(WriteOp::Step(done));
            }
            let mut started = step(seq, &format!("s{seq}#0"));
            if seq % 250 == 0 {
                ops.push(WriteOp::Step(started.clone()));
                started.attempt = 2;
            }
            ops.push(WriteOp::Step(started));
            if seq % 100 == 0 {
                ops.push(WriteOp::Meta(meta(RunState::Running)));
            }
            ops
        })
        .collect()
}

/// A run longer than any store keeps in one piece (the PostgreSQL journal folds its log
/// every few thousand records), driven by one process, then taken over by another: every
/// read, the new driver's included, gives what applying the writes in order gives.
pub(crate) fn a_long_run_reads_back_as_written_across_drivers(case: Case) {
    let info = info();
    let (mut journal, created) = case
        .store
        .create(&info, &meta(RunState::Running), &lease())
        .expect("create");
    let mut model = created;
    let first = sequential_writes(0, 1600);
    for ops in &first {
        journal.write(ops).expect("write");
    }
    model.apply_all(first.iter().map(Vec::as_slice));
    assert_eq!(journal.snapshot().expect("snapshot").steps, model.steps);
    drop(journal);
    let other = case.reopen();
    let (mut journal, taken) = other.open(info.id).expect("taken over");
    assert_eq!(taken.steps, model.steps, "as the new driver found it");
    let second = sequential_writes(1600, 700);
    for ops in &second {
        journal.write(ops).expect("write");
    }
    model.apply_all(second.iter().map(Vec::as_slice));
    drop(journal);
    let read = case.reopen().read(info.id).expect("read");
    assert_eq!(read.steps.len(), 2300);
    assert_eq!(read.steps, model.steps);
}

/// One test per store and property: `contract!(name)`.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod redb_contract {
            $(#[test] fn $name() { super::$name(super::redb()) })*
        }
        mod postgres_contract {
            $(#[test] fn $name() { super::$name(super::postgres()) })*
        }
    };
}

contract!(
    a_journal_of_another_format_is_refused_with_a_clear_message,
    runs_are_listed_oldest_first_and_removed,
    writes_are_durable_and_read_back_in_order,
    finishing_deletes_the_steps_and_writes_the_summary_together,
    a_held_journal_is_busy_until_dropped,
    a_long_run_reads_back_as_written_across_drivers,
);
