//! `engine --journal postgres`: the engine on a PostgreSQL journal, beside the server's own
//! durable single-row commit, on a throwaway cluster made in the measured directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use foundry_core::journal::pg_cluster::Cluster;
use foundry_core::journal::{JournalStore, PostgresStore, WriteOp};
use foundry_core::model::{RunInfo, RunMeta, StepRecord, StepRecordState};
use foundry_core::{Engine, Home, Millis, NoInput, RunId, RunState};

use crate::stats::{Summary, micros, millis};

const WARMUP: u64 = 50;
const OPS: u64 = 1000;

/// A cluster on the disk under `dir`.
pub fn cluster(dir: &Path) -> Result<Cluster> {
    Cluster::start_in(Some(dir)).map_err(|e| anyhow!("starting a PostgreSQL cluster: {e}"))
}

/// PostgreSQL's own durable commit: one INSERT of a `value_len`-byte row per transaction
/// (autocommit, `synchronous_commit = on`), on the socket the journal uses, in us.
pub fn baseline_commit(cluster: &Cluster, value_len: usize) -> Result<Summary> {
    let url = cluster.socket_url();
    let mut client =
        postgres::Client::connect(&url, postgres::NoTls).context("connecting for the baseline")?;
    client
        .batch_execute(
            "SET synchronous_commit TO on;
             CREATE TABLE bench_baseline (k text PRIMARY KEY, v text NOT NULL)",
        )
        .context("making the baseline table")?;
    let value = "x".repeat(value_len);
    let mut samples = Vec::with_capacity(OPS as usize);
    for i in 0..WARMUP + OPS {
        let key = format!("noop-{i}#0");
        let t = Instant::now();
        client
            .execute(
                "INSERT INTO bench_baseline (k, v) VALUES ($1, $2)",
                &[&key, &value],
            )
            .context("inserting a baseline row")?;
        if i >= WARMUP {
            samples.push(micros(t.elapsed()));
        }
    }
    Summary::of(&samples)
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
    let now = Millis::now();
    let info = RunInfo {
        id: RunId::new(),
        workflow: "engine-bench".into(),
        workflow_version: 1,
        input: serde_json::json!({"steps": completed + 1}),
        foundry_version: env!("CARGO_PKG_VERSION").into(),
        created_at: now,
    };
    let meta = RunMeta {
        state: RunState::Running,
        updated_at: now,
        error: None,
    };
    let lease = foundry_core::lease::own_lease();
    let (mut journal, _) = store
        .create(&info, &meta, &lease)
        .context("creating the run")?;
    let record = |seq: u64, done: bool| {
        let mut r = StepRecord::new_started(seq, format!("noop-{seq}#0"), "noop".into(), now);
        r.attempt = 1;
        if done {
            r.state = StepRecordState::Completed;
            r.output = Some(serde_json::json!({"n": seq}));
            r.finished_at = Some(now);
        }
        WriteOp::Step(r)
    };
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
    Ok(info.id)
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
