//! `foundry host list`: every host of the config, reachability and SSH latency asked live.

use std::sync::Arc;
use std::time::{Duration, Instant};

use foundry_activities::ssh::{SshSession, SshTarget};
use foundry_core::ActivityCx;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::{HostEntry, StackConfig, TargetError};

/// At most this many hosts are asked at once.
const CONCURRENCY: usize = 50;

/// A host as it answers now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    pub host: String,
    pub address: String,
    pub port: u16,
    pub user: String,
    /// Where its login key lives: `file PATH`, `openbao PATH`, or `none`.
    pub key: String,
    pub reachable: bool,
    /// Connect and log in, in milliseconds.
    pub connect_ms: Option<u64>,
    /// One command's round trip on the open session, in milliseconds.
    pub latency_ms: Option<u64>,
    pub error: Option<String>,
}

/// Each host of `config`, in order, each given at most `timeout`.
pub async fn status(config: &StackConfig, timeout: Duration) -> Vec<HostStatus> {
    let found = each_host(config, move |entry, target| one(entry, target, timeout)).await;
    found
        .into_iter()
        .zip(&config.hosts)
        .map(|(s, entry)| {
            s.unwrap_or_else(|| unreachable_status(entry, "the check stopped".into()))
        })
        .collect()
}

/// `ask` of each host of `config` (its entry, and how to reach it over SSH), every host at
/// once but at most [`CONCURRENCY`] at a time; the answers in the config's order, none
/// where the task stopped.
pub(crate) async fn each_host<T, F, Fut>(config: &StackConfig, ask: F) -> Vec<Option<T>>
where
    F: Fn(HostEntry, Result<SshTarget, TargetError>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let gate = Arc::new(Semaphore::new(CONCURRENCY));
    let mut set = JoinSet::new();
    for (i, entry) in config.hosts.iter().cloned().enumerate() {
        let gate = gate.clone();
        let target = config.ssh_target(&entry);
        let asked = ask(entry, target);
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            (i, asked.await)
        });
    }
    let mut found: Vec<Option<T>> = std::iter::repeat_with(|| None)
        .take(config.hosts.len())
        .collect();
    while let Some(joined) = set.join_next().await {
        if let Ok((i, answer)) = joined
            && let Some(slot) = found.get_mut(i)
        {
            *slot = Some(answer);
        }
    }
    found
}

fn unreachable_status(entry: &HostEntry, error: String) -> HostStatus {
    HostStatus {
        host: entry.name.clone(),
        address: entry.address.clone(),
        port: entry.port,
        user: entry.user.clone(),
        key: entry
            .key
            .as_ref()
            .map_or_else(|| "none".into(), |k| k.place()),
        reachable: false,
        connect_ms: None,
        latency_ms: None,
        error: Some(error),
    }
}

async fn one(
    entry: HostEntry,
    target: Result<SshTarget, TargetError>,
    timeout: Duration,
) -> HostStatus {
    let target = match target {
        Ok(t) => t,
        Err(e) => return unreachable_status(&entry, e.message),
    };
    let asked = async {
        let start = Instant::now();
        let session = SshSession::connect(&target).await?;
        let connected = start.elapsed();
        let start = Instant::now();
        let (code, _) = session
            .run("true", &ActivityCx::standalone("host-list"))
            .await?;
        if code != 0 {
            return Err(foundry_core::ActivityError::transient(format!(
                "{target}: `true` exited with status {code}"
            )));
        }
        Ok((connected, start.elapsed()))
    };
    match tokio::time::timeout(timeout, asked).await {
        Ok(Ok((connected, rtt))) => HostStatus {
            reachable: true,
            connect_ms: Some(millis(connected)),
            latency_ms: Some(millis(rtt)),
            error: None,
            ..unreachable_status(&entry, String::new())
        },
        Ok(Err(e)) => unreachable_status(&entry, e.message),
        Err(_) => unreachable_status(&entry, format!("no answer within {}s", timeout.as_secs())),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
