//! `engine --journal postgres`: the engine on a PostgreSQL journal, beside the server's own
//! durable single-row commit, on a throwaway cluster made in the measured directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use foundry_core::journal::pg_cluster::Cluster;
use foundry_core::journal::{JournalStore, PostgresStore, RunJournal, WriteOp};
use foundry_core::model::{RunInfo, RunMeta, StepRecord, StepRecordState};
use foundry_core::{Engine, Home, Millis, NoInput, RunId, RunState};

use crate::stats::{Summary, micros, millis};

const WARMUP: u64 = 50;
const OPS: u64 = 1000;
/// The steps a [`JournalSteps`] run says it has (it is never driven).
const DURABLE_WRITES: u64 = 100_000;

/// A cluster on the disk under `dir`.
pub fn cluster(dir: &Path) -> Result<Cluster> {
    Cluster::start_in(Some(dir)).map_err(|e| anyhow!("starting a PostgreSQL cluster: {e}"))
}

/// PostgreSQL's own durable commit: one INSERT of a row per transaction (autocommit,
/// `synchronous_commit = on`), on the socket the journal uses; taken as often as asked, so
/// that it can be measured right beside the engine's step.
pub struct Commits {
    client: postgres::Client,
    value: String,
    done: u64,
}

impl Commits {
    /// On `cluster`, with rows of `value_len` bytes.
    pub fn open(cluster: &Cluster, value_len: usize) -> Result<Commits> {
        let url = cluster.socket_url();
        let mut client = postgres::Client::connect(&url, postgres::NoTls)
            .context("connecting for the baseline")?;
        client
            .batch_execute(
                "SET synchronous_commit TO on;
                 CREATE TABLE bench_baseline (k text PRIMARY KEY, v text NOT NULL)",
            )
            .context("making the baseline table")?;
        Ok(Commits {
            client,
            value: "x".repeat(value_len),
            done: 0,
        })
    }

    /// `n` more commits, each in µs.
    pub fn samples(&mut self, n: u64) -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let key = format!("noop-{}#0", self.done);
            self.done += 1;
            let t = Instant::now();
            self.client
                .execute(
                    "INSERT INTO bench_baseline (k, v) VALUES ($1, $2)",
                    &[&key, &self.value],
                )
                .context("inserting a baseline row")?;
            samples.push(micros(t.elapsed()));
        }
        Ok(samples)
    }
}

/// The baseline's figure ([`Commits`]): per commit in µs, over [`OPS`] commits after
/// [`WARMUP`] ones.
pub fn baseline_commit(commits: &mut Commits) -> Result<Summary> {
    commits.samples(WARMUP)?;
    Summary::of(&commits.samples(OPS)?)
}

/// An engine whose journal is the cluster's database, its home (secrets, logs) at `home`.
pub fn engine_on(cluster: &Cluster, home: &Path) -> Result<Engine> {
    let store = PostgresStore::new(&cluster.socket_url()).context("the journal store")?;
    store.check().context("reaching the journal's server")?;
    Ok(Engine::with_store(
        Home::at(home),
        Arc::new(store),
        foundry_workflows::registry(),
        Arc::new(NoInput),
    ))
}

/// A run of `engine-bench` as a driver killed in its last step leaves it: `completed`
/// steps done, one started after them, nobody driving; written through the journal store
/// in batches of a thousand. Its id.
pub fn unfinished_run(cluster: &Cluster, completed: u64) -> Result<RunId> {
    let store = PostgresStore::new(&cluster.socket_url()).context("the journal store")?;
    let (mut journal, id) = new_run(&store, completed + 1)?;
    let now = Millis::now();
    let record = |seq, done| step_record(seq, done, now);
    let mut seq = 0;
    while seq < completed {
        let end = (seq + 1000).min(completed);
        let batch: Vec<WriteOp> = (seq..end).map(|i| record(i, true)).collect();
        journal.write(&batch).context("writing step records")?;
        seq = end;
    }
    journal
        .write(&[record(completed, false)])
        .context("writing the last step")?;
    drop(journal);
    // Given back on the store's thread; this call runs after it.
    store.check().context("giving the run back")?;
    Ok(id)
}

/// A new run of `engine-bench` with `steps` steps in `store`, held by this process.
fn new_run(store: &PostgresStore, steps: u64) -> Result<(Box<dyn RunJournal>, RunId)> {
    let now = Millis::now();
    let info = RunInfo {
        id: RunId::new(),
        workflow: "engine-bench".into(),
        workflow_version: 1,
        input: serde_json::json!({ "steps": steps }),
        foundry_version: env!("CARGO_PKG_VERSION").into(),
        created_at: now,
    };
    let meta = RunMeta {
        state: RunState::Running,
        updated_at: now,
        error: None,
    };
    let (journal, _) = store
        .create(&info, &meta, &foundry_core::lease::own_lease())
        .context("creating the run")?;
    Ok((journal, info.id))
}

/// The record of `engine-bench`'s step `seq`, started or (`done`) completed.
fn step_record(seq: u64, done: bool, now: Millis) -> WriteOp {
    let mut r = StepRecord::new_started(seq, format!("noop-{seq}#0"), "noop".into(), now);
    r.attempt = 1;
    if done {
        r.state = StepRecordState::Completed;
        r.output = Some(serde_json::json!({"n": seq}));
        r.finished_at = Some(now);
    }
    WriteOp::Step(r)
}

/// The journal's write of a sequential step, from a plain caller: the previous step's
/// completion and this one's start in one fenced commit, as the engine's writer sends them;
/// taken as often as asked.
pub struct JournalSteps {
    journal: Box<dyn RunJournal>,
    next: u64,
}

impl JournalSteps {
    /// On a new run in `cluster`'s journal.
    pub fn open(cluster: &Cluster) -> Result<JournalSteps> {
        let store = PostgresStore::new(&cluster.socket_url()).context("the journal store")?;
        let (journal, _) = new_run(&store, DURABLE_WRITES)?;
        Ok(JournalSteps { journal, next: 0 })
    }

    /// `n` more writes, each in µs.
    pub fn samples(&mut self, n: u64) -> Result<Vec<f64>> {
        let mut samples = Vec::with_capacity(n as usize);
        for _ in 0..n {
            let (seq, now) = (self.next, Millis::now());
            self.next += 1;
            let mut ops = vec![step_record(seq, false, now)];
            if let Some(previous) = seq.checked_sub(1) {
                ops.insert(0, step_record(previous, true, now));
            }
            let t = Instant::now();
            self.journal.write(&ops).context("writing step records")?;
            samples.push(micros(t.elapsed()));
        }
        Ok(samples)
    }
}

/// `runs` in-process reads of `run`'s status (what `workflow status` does once started),
/// in ms.
pub fn timed_views(
    rt: &tokio::runtime::Runtime,
    engine: &Engine,
    run: RunId,
    runs: usize,
) -> Result<Summary> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let view = rt.block_on(engine.view(run)).context("reading the run")?;
        samples.push(millis(t.elapsed()));
        anyhow::ensure!(view.snapshot.steps.len() > 1, "the run's steps are gone");
    }
    Summary::of(&samples)
}
