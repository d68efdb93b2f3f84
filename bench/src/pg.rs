//! `engine --journal postgres`: the engine on a PostgreSQL journal, beside the server's own
//! durable single-row commit, on a throwaway cluster made in the measured directory.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use foundry_core::journal::PostgresStore;
use foundry_core::journal::pg_cluster::Cluster;
use foundry_core::{Engine, Home, NoInput};

use crate::stats::{Summary, micros};

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
