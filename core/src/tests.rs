//! Engine tests in-process, on a real journal in a temporary home: fan-out, determinism
//! helpers and memoization. Crash behaviour is tested against the binary in `tests/`; the
//! resume tests here (`on_both_stores!`) run on redb and on a throwaway PostgreSQL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::activity::{Activity, ActivityCx, ActivityError};
use crate::context::Ctx;
use crate::engine::Engine;
use crate::error::RunError;
use crate::fanout::FailurePolicy;
use crate::home::Home;
use crate::input::NoInput;
use crate::journal::pg_cluster::Cluster;
use crate::journal::{JournalStore, PostgresStore, RedbStore};
use crate::model::RunState;
use crate::workflow::{Registry, Workflow};

/// Counts how many run at once; fails when told to.
#[derive(Clone)]
struct Probe {
    now: Arc<AtomicUsize>,
    max: Arc<AtomicUsize>,
    runs: Arc<AtomicUsize>,
    saw_cancel: Arc<AtomicUsize>,
    fail: bool,
    hold: Duration,
}

impl Probe {
    fn new() -> Self {
        Probe {
            now: Arc::default(),
            max: Arc::default(),
            runs: Arc::default(),
            saw_cancel: Arc::default(),
            fail: false,
            hold: Duration::from_millis(20),
        }
    }
}

impl Activity for Probe {
    type Output = u32;

    fn kind(&self) -> &'static str {
        "probe"
    }

    fn in_doubt(&self) -> crate::InDoubt {
        crate::InDoubt::Probe
    }

    fn retry_policy(&self) -> crate::RetryPolicy {
        crate::RetryPolicy::none()
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<u32>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<u32, ActivityError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(n, Ordering::SeqCst);
        let cancelled = tokio::select! {
            () = tokio::time::sleep(if self.fail { Duration::ZERO } else { self.hold }) => false,
            () = cx.cancel_token().cancelled() => true,
        };
        self.now.fetch_sub(1, Ordering::SeqCst);
        if cancelled {
            self.saw_cancel.fetch_add(1, Ordering::SeqCst);
            return Err(ActivityError::permanent("cancelled"));
        }
        if self.fail {
            return Err(ActivityError::permanent("boom"));
        }
        Ok(7)
    }
}

#[derive(Serialize, Deserialize)]
struct FanInput {
    children: usize,
    limit: usize,
    failing: Vec<usize>,
    fail_fast: bool,
}

struct Fan(Probe);

impl Workflow for Fan {
    const NAME: &'static str = "fan";
    const VERSION: u32 = 1;
    type Input = FanInput;
    type Output = Vec<u32>;

    async fn run(&self, ctx: Ctx, input: FanInput) -> Result<Vec<u32>, RunError> {
        let probe = self.0.clone();
        let items = (0..input.children)
            .map(|i| {
                let mut p = probe.clone();
                p.fail = input.failing.contains(&i);
                // The failing child fails at once; the others hold long enough to be cut.
                if input.fail_fast && !input.failing.is_empty() && !p.fail {
                    p.hold = Duration::from_secs(5);
                }
                (format!("host-{i}"), p)
            })
            .collect();
        let policy = if input.fail_fast {
            FailurePolicy::FailFast
        } else {
            FailurePolicy::CollectAll
        };
        ctx.fan_out_ok(items, input.limit, policy, |child, p| async move {
            child.step("work", &p).await
        })
        .await
    }
}

async fn drive(engine: &Engine, workflow: &str, input: serde_json::Value) -> crate::RunOutcome {
    engine
        .start(workflow, input)
        .expect("start")
        .drive()
        .await
        .expect("drive")
}

fn engine(dir: &tempfile::TempDir, registry: Registry) -> Engine {
    Engine::new(Home::at(dir.path()), registry, Arc::new(NoInput))
}

/// Where a test's journals live.
#[derive(Clone, Copy, Debug)]
enum Backend {
    Redb,
    Postgres,
}

/// A test's journal store, and the throwaway server it may live on.
struct Journals {
    store: Arc<dyn JournalStore>,
    server: Option<Cluster>,
}

fn journals(dir: &tempfile::TempDir, backend: Backend) -> Journals {
    match backend {
        Backend::Redb => Journals {
            store: Arc::new(RedbStore::new(Home::at(dir.path()).runs_dir())),
            server: None,
        },
        Backend::Postgres => {
            let server = Cluster::start();
            let store = PostgresStore::new(&server.socket_url()).expect("store");
            Journals {
                store: Arc::new(store),
                server: Some(server),
            }
        }
    }
}

impl Journals {
    fn engine(&self, dir: &tempfile::TempDir, registry: Registry) -> Engine {
        Engine::with_store(
            Home::at(dir.path()),
            self.store.clone(),
            registry,
            Arc::new(NoInput),
        )
    }

    /// Leaves `run` as a driver killed with SIGKILL leaves it: still marked held, by a
    /// process that no longer exists (a file lock is released by the kernel itself).
    fn as_if_its_driver_was_killed(&self, run: crate::RunId) {
        let Some(server) = &self.server else { return };
        // Whatever this process sent the store before is done.
        self.store.read(run).expect("read");
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let pid = child.id();
        child.wait().expect("wait");
        let lease = crate::model::Lease {
            pid,
            ..crate::lease::own_lease()
        };
        let lease = serde_json::to_string(&lease).expect("json");
        server
            .psql(&format!(
                "UPDATE foundry_runs SET held = true, lease = '{lease}' WHERE id = '{run}'"
            ))
            .expect("psql");
    }
}

/// Each crash test body runs once per journal store.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_redb {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Redb).await })*
        }
        mod on_postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(super::Backend::Postgres).await })*
        }
    };
}

on_both_stores!(
    replay_sees_the_same_values_and_skips_done_steps,
    time_with_no_process_does_not_use_up_the_retry_budget,
    in_doubt_a_probed_step_is_decided_by_its_probe,
    in_doubt_a_rerun_step_runs_again_unprobed,
    in_doubt_a_step_that_must_not_run_twice_pauses_until_a_person_decides,
    in_doubt_only_a_step_that_can_assume_its_output_is_taken_as_done,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_keeps_to_its_cap_and_keys_children_by_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = Probe::new();
    let engine = engine(&dir, Registry::new().register(Fan(probe.clone())));
    let input = json!({"children": 10, "limit": 3, "failing": [], "fail_fast": true});
    let outcome = drive(&engine, "fan", input).await;
    assert_eq!(outcome.state, RunState::Completed);
    assert_eq!(outcome.output, Some(json!([7, 7, 7, 7, 7, 7, 7, 7, 7, 7])));
    assert_eq!(
        probe.max.load(Ordering::SeqCst),
        3,
        "at most 3 at once, and the cap is used"
    );
    assert_eq!(probe.runs.load(Ordering::SeqCst), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_fast_cancels_the_siblings_and_reports_the_first_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = Probe::new();
    let engine = engine(&dir, Registry::new().register(Fan(probe.clone())));
    let input = json!({"children": 4, "limit": 4, "failing": [2], "fail_fast": true});
    let outcome = drive(&engine, "fan", input).await;
    assert_eq!(outcome.state, RunState::Failed);
    let error = outcome.error.unwrap_or_default();
    assert!(
        error.contains("host-2/work#0") && error.contains("boom"),
        "{error}"
    );
    assert_eq!(
        probe.saw_cancel.load(Ordering::SeqCst),
        3,
        "the three siblings were cut, not run to their end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_all_reports_every_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut probe = Probe::new();
    probe.hold = Duration::from_millis(1);
    let engine = engine(&dir, Registry::new().register(Fan(probe.clone())));
    let input = json!({"children": 5, "limit": 2, "failing": [1, 3], "fail_fast": false});
    let outcome = drive(&engine, "fan", input).await;
    assert_eq!(outcome.state, RunState::Failed);
    let error = outcome.error.unwrap_or_default();
    assert!(error.starts_with("2 of the fan-out failed"), "{error}");
    assert!(
        error.contains("host-1") && error.contains("host-3"),
        "{error}"
    );
    assert_eq!(
        probe.saw_cancel.load(Ordering::SeqCst),
        0,
        "nobody was cancelled"
    );
    assert_eq!(probe.runs.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_probes_every_completed_step_of_each_branch_and_runs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut probe = Probe::new();
    probe.hold = Duration::from_millis(1);
    let engine = engine(&dir, Registry::new().register(Fan(probe.clone())));
    let input = json!({"children": 3, "limit": 3, "failing": [1], "fail_fast": false});
    let outcome = drive(&engine, "fan", input).await;
    assert_eq!(outcome.state, RunState::Failed);
    let before = engine.view(outcome.run).await.expect("view").snapshot.steps;

    let verified = engine.verify(outcome.run).await.expect("verify");
    // The probe finds nothing, so both completed branches have drifted; the failed
    // branch stops the replay there, and the other branches still go to their end.
    let found: Vec<(&str, &crate::Finding)> = verified
        .steps
        .iter()
        .map(|s| (s.key.as_str(), &s.finding))
        .collect();
    let drifted = &crate::Finding::Drifted;
    let mut expected = vec![("host-0/work#0", drifted), ("host-2/work#0", drifted)];
    let mut found_sorted = found.clone();
    found_sorted.sort_by_key(|(k, _)| *k);
    expected.sort_by_key(|(k, _)| *k);
    assert_eq!(found_sorted, expected);
    assert_eq!(verified.stopped_at, vec!["host-1/work#0".to_string()]);
    assert_eq!(verified.error, None);
    assert_eq!(probe.runs.load(Ordering::SeqCst), 3, "nothing ran again");
    let after = engine.view(outcome.run).await.expect("view").snapshot.steps;
    assert_eq!(before, after, "nothing was written");
    // The run can still be driven afterwards.
    assert!(engine.resume(outcome.run).await.is_ok());
}

/// Takes journaled values, then fails once (before anything else), then succeeds.
struct Values {
    fail_first: Arc<AtomicBool>,
    counted: Probe,
}

impl Workflow for Values {
    const NAME: &'static str = "values";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = serde_json::Value;

    async fn run(&self, ctx: Ctx, _input: ()) -> Result<serde_json::Value, RunError> {
        let mut quick = self.counted.clone();
        quick.hold = Duration::ZERO;
        ctx.step("counted", &quick).await?;
        let now = ctx.now().await?;
        let id = ctx.uuid().await?;
        let r = ctx.random_u64().await?;
        if self.fail_first.swap(false, Ordering::SeqCst) {
            return Err(RunError::StepFailed {
                step: "values".into(),
                error: "first time".into(),
            });
        }
        Ok(json!({"now": now, "id": id, "r": r}))
    }
}

async fn replay_sees_the_same_values_and_skips_done_steps(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journals = journals(&dir, backend);
    let probe = Probe::new();
    let flag = Arc::new(AtomicBool::new(true));
    let wf = Values {
        fail_first: flag.clone(),
        counted: probe.clone(),
    };
    let engine = journals.engine(&dir, Registry::new().register(wf));
    let driver = engine
        .start("values", serde_json::Value::Null)
        .expect("start");
    let run = driver.run_id();
    let first = driver.drive().await.expect("drive");
    assert_eq!(first.state, RunState::Failed);
    let view = engine.view(run).await.expect("view");
    let recorded: Vec<_> = view
        .snapshot
        .steps
        .iter()
        .filter(|s| s.kind == "value")
        .collect();
    assert_eq!(recorded.len(), 3, "now, uuid and random are journaled");

    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = engine
        .resume(run)
        .await
        .expect("resume")
        .drive()
        .await
        .expect("drive");
    assert_eq!(second.state, RunState::Completed);
    let out = second.output.expect("output");
    let by_key = |k: &str| {
        recorded
            .iter()
            .find(|s| s.key.starts_with(k))
            .and_then(|s| s.output.clone())
            .expect("recorded value")
    };
    assert_eq!(out["now"], by_key("$now"));
    assert_eq!(out["id"], by_key("$uuid"));
    assert_eq!(out["r"], by_key("$random"));
    assert_eq!(
        probe.runs.load(Ordering::SeqCst),
        1,
        "the done step was not run again"
    );
}

/// Version 1 runs steps a, b, c; version 2 (after an upgrade) runs a, x, c.
struct Evolving {
    version2: bool,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    fail_at_c: Arc<AtomicBool>,
}

struct Logged {
    name: &'static str,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    fail: bool,
}

impl Activity for Logged {
    type Output = ();

    fn kind(&self) -> &'static str {
        "logged"
    }

    fn in_doubt(&self) -> crate::InDoubt {
        crate::InDoubt::Rerun
    }

    fn retry_policy(&self) -> crate::RetryPolicy {
        crate::RetryPolicy::none()
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<()>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<(), ActivityError> {
        if self.fail {
            return Err(ActivityError::permanent("not yet"));
        }
        self.log
            .lock()
            .map_err(|_| ActivityError::permanent("lock"))?
            .push(self.name.to_string());
        Ok(())
    }
}

impl Workflow for Evolving {
    const NAME: &'static str = "evolving";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: Ctx, _input: ()) -> Result<(), RunError> {
        let step = |name: &'static str, fail: bool| Logged {
            name,
            log: self.log.clone(),
            fail,
        };
        ctx.step("a", &step("a", false)).await?;
        if self.version2 {
            ctx.step("x", &step("x", false)).await?;
        } else {
            ctx.step("b", &step("b", false)).await?;
        }
        ctx.step("c", &step("c", self.fail_at_c.load(Ordering::SeqCst)))
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_upgrade_added_steps_run_and_removed_ones_are_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fail = Arc::new(AtomicBool::new(true));
    let v1 = Evolving {
        version2: false,
        log: log.clone(),
        fail_at_c: fail.clone(),
    };
    let old = engine(&dir, Registry::new().register(v1));
    let driver = old
        .start("evolving", serde_json::Value::Null)
        .expect("start");
    let run = driver.run_id();
    assert_eq!(driver.drive().await.expect("drive").state, RunState::Failed);

    fail.store(false, Ordering::SeqCst);
    let v2 = Evolving {
        version2: true,
        log: log.clone(),
        fail_at_c: fail,
    };
    let new = engine(&dir, Registry::new().register(v2));
    let outcome = new
        .resume(run)
        .await
        .expect("resume")
        .drive()
        .await
        .expect("drive");
    assert_eq!(outcome.state, RunState::Completed);
    let log = log.lock().map(|l| l.clone()).unwrap_or_default();
    assert_eq!(
        log,
        vec!["a", "b", "x", "c"],
        "a ran once, x was added, b was not undone"
    );
}

/// Holds its step until the test lets it go; says when it has started.
#[derive(Clone)]
struct Held {
    started: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Semaphore>,
}

impl Activity for Held {
    type Output = ();

    fn kind(&self) -> &'static str {
        "held"
    }

    fn in_doubt(&self) -> crate::InDoubt {
        crate::InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<()>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<(), ActivityError> {
        self.started.notify_one();
        let permit = self.release.acquire().await;
        permit
            .map(drop)
            .map_err(|_| ActivityError::permanent("released"))
    }
}

struct HeldFlow(Held);

impl Workflow for HeldFlow {
    const NAME: &'static str = "held";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: Ctx, _input: ()) -> Result<(), RunError> {
        ctx.step("held", &self.0).await
    }
}

/// The engine asks a driven run's owner over its socket: on a single-threaded runtime too.
#[tokio::test(flavor = "current_thread")]
async fn resume_and_status_work_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let held = Held {
        started: Arc::default(),
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let engine = engine(&dir, Registry::new().register(HeldFlow(held.clone())));
    let driver = engine
        .start("held", serde_json::Value::Null)
        .expect("start");
    let run = driver.run_id();
    let driving = tokio::spawn(driver.drive());
    held.started.notified().await;

    let refused = engine.resume(run).await.err();
    let Some(crate::EngineError::Driven { lease, .. }) = refused else {
        panic!("a driven run was taken again: {refused:?}");
    };
    assert_eq!(lease.map(|l| l.pid), Some(std::process::id()));
    let view = engine.view(run).await.expect("view");
    assert_eq!(view.snapshot.meta.state, RunState::Running);

    held.release.add_permits(1);
    let outcome = driving.await.expect("join").expect("drive");
    assert_eq!(outcome.state, RunState::Completed);
}

/// Fails transiently until `fail_until` attempts have run, then succeeds.
#[derive(Clone)]
struct Flaky {
    attempts: Arc<AtomicUsize>,
    fail_until: usize,
}

impl Activity for Flaky {
    type Output = usize;

    fn kind(&self) -> &'static str {
        "flaky"
    }

    fn in_doubt(&self) -> crate::InDoubt {
        crate::InDoubt::Probe
    }

    fn retry_policy(&self) -> crate::RetryPolicy {
        crate::RetryPolicy {
            initial_ms: 1,
            factor: 1.0,
            max_delay_ms: 1,
            max_attempts: 10,
            max_elapsed_ms: Some(60_000),
            jitter: 0.0,
        }
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<usize>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<usize, ActivityError> {
        let n = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        if n < self.fail_until {
            return Err(ActivityError::transient(format!("not yet ({n})")));
        }
        Ok(n)
    }
}

struct FlakyFlow(Flaky);

impl Workflow for FlakyFlow {
    const NAME: &'static str = "flaky";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = usize;

    async fn run(&self, ctx: Ctx, _input: ()) -> Result<usize, RunError> {
        ctx.step("flaky", &self.0).await
    }
}

/// A step that failed once, then nothing ran for two hours (a process killed, a laptop
/// closed): the retry policy's elapsed-time bound counts the time a process ran it, so the
/// resumed run still retries instead of pausing at once.
async fn time_with_no_process_does_not_use_up_the_retry_budget(backend: Backend) {
    use crate::journal::WriteOp;
    use crate::model::{StepRecord, StepRecordState};
    use crate::time::Millis;

    let dir = tempfile::tempdir().expect("tempdir");
    let journals = journals(&dir, backend);
    let flaky = Flaky {
        attempts: Arc::default(),
        fail_until: 2,
    };
    let engine = journals.engine(&dir, Registry::new().register(FlakyFlow(flaky.clone())));
    let run = engine
        .start("flaky", serde_json::Value::Null)
        .expect("start")
        .run_id();
    // The first attempt failed two hours ago; its process died before the retry.
    let then = Millis(Millis::now().0 - 2 * 3_600_000);
    let record = StepRecord {
        seq: 0,
        key: "flaky#0".into(),
        kind: "flaky".into(),
        state: StepRecordState::Failed,
        attempt: 1,
        output: None,
        error: Some("not yet (0)".into()),
        transient: true,
        next_attempt_at: Some(Millis(then.0 + 200)),
        exhausted: false,
        from_probe: false,
        awaits_decision: false,
        first_started_at: then,
        started_at: then,
        finished_at: Some(Millis(then.0 + 100)),
        policy: None,
    };
    let (mut journal, _) = journals.store.open(run).expect("open");
    journal.write(&[WriteOp::Step(record)]).expect("write");
    drop(journal);
    journals.as_if_its_driver_was_killed(run);

    let outcome = engine
        .resume(run)
        .await
        .expect("resume")
        .drive()
        .await
        .expect("drive");
    assert_eq!(outcome.state, RunState::Completed, "{outcome:?}");
    assert_eq!(outcome.output, Some(json!(2)), "two more attempts ran here");
}

/// An activity of a given in-doubt class that counts its probes and applies.
#[derive(Clone)]
struct Classed {
    class: crate::InDoubt,
    present: bool,
    probes: Arc<AtomicUsize>,
    applies: Arc<AtomicUsize>,
}

impl Activity for Classed {
    type Output = String;

    fn kind(&self) -> &'static str {
        "classed"
    }

    fn in_doubt(&self) -> crate::InDoubt {
        self.class
    }

    fn assumed_done(&self) -> Option<String> {
        (self.class == crate::InDoubt::Pause).then(|| "assumed".into())
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<String>, ActivityError> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        Ok(self.present.then(|| "probed".into()))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<String, ActivityError> {
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(if cx.rerun_in_doubt() {
            "applied again".into()
        } else {
            "applied".into()
        })
    }
}

struct ClassedFlow(Classed);

impl Workflow for ClassedFlow {
    const NAME: &'static str = "classed";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = String;

    async fn run(&self, ctx: Ctx, _input: ()) -> Result<String, RunError> {
        ctx.step("it", &self.0).await
    }
}

/// A run whose one step `it#0` is in doubt, as a killed process leaves it.
fn run_in_doubt(
    dir: &tempfile::TempDir,
    journals: &Journals,
    activity: &Classed,
) -> (Engine, crate::RunId) {
    use crate::journal::WriteOp;
    use crate::model::StepRecord;
    use crate::time::Millis;

    let engine = journals.engine(dir, Registry::new().register(ClassedFlow(activity.clone())));
    let run = engine
        .start("classed", serde_json::Value::Null)
        .expect("start")
        .run_id();
    let now = Millis::now();
    let record = StepRecord {
        attempt: 1,
        ..StepRecord::new_started(0, "it#0".into(), "classed".into(), now)
    };
    let (mut journal, _) = journals.store.open(run).expect("open");
    journal.write(&[WriteOp::Step(record)]).expect("write");
    drop(journal);
    journals.as_if_its_driver_was_killed(run);
    (engine, run)
}

fn classed(class: crate::InDoubt, present: bool) -> Classed {
    Classed {
        class,
        present,
        probes: Arc::default(),
        applies: Arc::default(),
    }
}

async fn resume(engine: &Engine, run: crate::RunId) -> crate::RunOutcome {
    engine
        .resume(run)
        .await
        .expect("resume")
        .drive()
        .await
        .expect("drive")
}

async fn in_doubt_a_probed_step_is_decided_by_its_probe(backend: Backend) {
    for present in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let activity = classed(crate::InDoubt::Probe, present);
        let journals = journals(&dir, backend);
        let (engine, run) = run_in_doubt(&dir, &journals, &activity);
        let outcome = resume(&engine, run).await;
        assert_eq!(outcome.state, RunState::Completed);
        let expected = if present { "probed" } else { "applied" };
        assert_eq!(outcome.output, Some(json!(expected)));
        assert_eq!(activity.probes.load(Ordering::SeqCst), 1);
        assert_eq!(
            activity.applies.load(Ordering::SeqCst),
            usize::from(!present)
        );
    }
}

async fn in_doubt_a_rerun_step_runs_again_unprobed(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let activity = classed(crate::InDoubt::Rerun, true);
    let journals = journals(&dir, backend);
    let (engine, run) = run_in_doubt(&dir, &journals, &activity);
    let outcome = resume(&engine, run).await;
    assert_eq!(
        outcome.output,
        Some(json!("applied again")),
        "the activity knows it runs again"
    );
    assert_eq!(activity.probes.load(Ordering::SeqCst), 0);
    assert_eq!(activity.applies.load(Ordering::SeqCst), 1);
}

async fn resume_deciding(
    engine: &Engine,
    run: crate::RunId,
    step: &str,
    decision: crate::Decision,
) -> crate::RunOutcome {
    let mut driver = engine.resume(run).await.expect("resume");
    assert_eq!(driver.decide(step, decision).expect("decide"), "it#0");
    driver.drive().await.expect("drive")
}

async fn in_doubt_a_step_that_must_not_run_twice_pauses_until_a_person_decides(backend: Backend) {
    for decision in [crate::Decision::Redo, crate::Decision::Done] {
        let dir = tempfile::tempdir().expect("tempdir");
        let activity = classed(crate::InDoubt::Pause, true);
        let journals = journals(&dir, backend);
        let (engine, run) = run_in_doubt(&dir, &journals, &activity);
        // Resumed without a word: it pauses, naming the step, and again on the next
        // resume; nothing runs.
        for _ in 0..2 {
            let outcome = resume(&engine, run).await;
            assert_eq!(outcome.state, RunState::Paused);
            let error = outcome.error.unwrap_or_default();
            assert!(
                error.contains("step it#0 was interrupted and must not run twice")
                    && error.contains("--done it#0"),
                "{error}"
            );
            let view = engine.view(run).await.expect("view");
            assert_eq!(view.snapshot.meta.state, RunState::Paused);
            assert_eq!(view.counts().in_doubt, 1, "shown in doubt");
            assert_eq!(view.current_step(), Some("it#0"));
        }
        assert_eq!(activity.probes.load(Ordering::SeqCst), 0);
        assert_eq!(activity.applies.load(Ordering::SeqCst), 0, "nothing ran");

        // A step that is not in doubt is refused.
        let mut driver = engine.resume(run).await.expect("resume");
        let refused = driver
            .decide("other", decision)
            .expect_err("not in doubt")
            .to_string();
        assert!(refused.contains("(in doubt: it#0)"), "{refused}");
        drop(driver);

        // A person checked and said: the step runs again, or is recorded done unrun.
        let outcome = resume_deciding(&engine, run, "it", decision).await;
        assert_eq!(outcome.state, RunState::Completed, "{outcome:?}");
        let (output, applies) = match decision {
            crate::Decision::Redo => ("applied", 1),
            crate::Decision::Done => ("assumed", 0),
        };
        assert_eq!(outcome.output, Some(json!(output)));
        assert_eq!(activity.applies.load(Ordering::SeqCst), applies);
    }
}

async fn in_doubt_only_a_step_that_can_assume_its_output_is_taken_as_done(backend: Backend) {
    let dir = tempfile::tempdir().expect("tempdir");
    let activity = classed(crate::InDoubt::Rerun, true);
    let journals = journals(&dir, backend);
    let (engine, run) = run_in_doubt(&dir, &journals, &activity);
    let outcome = resume_deciding(&engine, run, "it#0", crate::Decision::Done).await;
    assert_eq!(outcome.state, RunState::Failed);
    let error = outcome.error.unwrap_or_default();
    assert!(error.contains("resume with `--redo it#0`"), "{error}");
    assert_eq!(activity.applies.load(Ordering::SeqCst), 0, "nothing ran");
    let outcome = resume_deciding(&engine, run, "it#0", crate::Decision::Redo).await;
    assert_eq!(outcome.state, RunState::Completed, "{outcome:?}");
    assert_eq!(activity.applies.load(Ordering::SeqCst), 1);
}

/// Answers every question with the same secret.
struct Answers(&'static str);

impl crate::InputProvider for Answers {
    fn ask(&self, _key: &str, _question: &crate::Question) -> Option<String> {
        Some(self.0.to_string())
    }
}

/// Fails quoting what it was given, as a command's output may.
struct Quoting(String);

impl Activity for Quoting {
    type Output = ();

    fn kind(&self) -> &'static str {
        "quoting"
    }

    fn in_doubt(&self) -> crate::InDoubt {
        crate::InDoubt::Rerun
    }

    fn retry_policy(&self) -> crate::RetryPolicy {
        crate::RetryPolicy::none()
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<()>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<(), ActivityError> {
        Err(ActivityError::permanent(format!("refused: {}", self.0)))
    }
}

struct SecretFlow;

impl Workflow for SecretFlow {
    const NAME: &'static str = "secret";
    const VERSION: u32 = 1;
    type Input = ();
    type Output = ();

    async fn run(&self, ctx: Ctx, _input: ()) -> Result<(), RunError> {
        let question = crate::Question {
            prompt: "password".into(),
            secret: true,
            default: None,
        };
        let crate::Answer::Secret(reference) = ctx.ask("password", question).await? else {
            return Err(RunError::workflow("not a secret answer"));
        };
        let value = ctx.reveal(&reference)?;
        ctx.step("use", &Quoting(value.expose().to_string())).await
    }
}

/// A run given a secret, stopped with its steps still journaled: no row holds the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_row_of_the_postgres_journal_holds_a_secret() {
    const SECRET: &str = "hunter2-never-in-a-row";
    let dir = tempfile::tempdir().expect("tempdir");
    let journals = journals(&dir, Backend::Postgres);
    let engine = Engine::with_store(
        Home::at(dir.path()),
        journals.store.clone(),
        Registry::new().register(SecretFlow),
        Arc::new(Answers(SECRET)),
    );
    let outcome = drive(&engine, "secret", serde_json::Value::Null).await;
    assert_eq!(outcome.state, RunState::Failed, "{outcome:?}");
    let server = journals.server.as_ref().expect("server");
    let rows = server
        .psql(
            "SELECT t::text FROM foundry_runs t UNION ALL SELECT t::text FROM foundry_steps t
         UNION ALL SELECT t::text FROM foundry_log t
         UNION ALL SELECT t::text FROM foundry_summaries t",
        )
        .expect("psql");
    assert!(
        rows.contains("ask/password#0"),
        "the steps are there: {rows}"
    );
    assert!(
        rows.contains("refused: <redacted>"),
        "the error is there: {rows}"
    );
    assert!(!rows.contains(SECRET), "a secret in a row: {rows}");
}
