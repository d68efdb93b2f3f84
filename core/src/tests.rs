//! Engine tests in-process, on a real journal in a temporary home: fan-out, determinism
//! helpers and memoization. Crash behaviour is tested against the binary in `tests/`.

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
    let started = std::time::Instant::now();
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
        "the three siblings were cut"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "siblings did not run to the end"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_sees_the_same_values_and_skips_done_steps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probe = Probe::new();
    let flag = Arc::new(AtomicBool::new(true));
    let wf = Values {
        fail_first: flag.clone(),
        counted: probe.clone(),
    };
    let engine = engine(&dir, Registry::new().register(wf));
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
