//! Who drives a run: this process's identity, and whether another one is still alive.

use std::sync::OnceLock;
use std::time::Duration;

use rustix::process::{Pid, test_kill_process};

use crate::model::Lease;
use crate::time::Millis;

/// How often the driving process renews its lease, at most.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// A lease held from another host is considered abandoned after this long without a
/// heartbeat, unless `FOUNDRY_LEASE_TTL` says otherwise.
pub const FOREIGN_LEASE_TTL: Duration = Duration::from_secs(60);

/// The shortest TTL taken: a heartbeat must fit in it three times over.
const TTL_MIN: Duration = Duration::from_secs(1);

/// The name this machine's leases carry: `FOUNDRY_HOSTNAME`, else the system's host name.
/// Machines that share a host name (containers, cloned CI runners) set it, so that each
/// is told apart from the others by a shared journal.
pub fn hostname() -> String {
    match std::env::var("FOUNDRY_HOSTNAME") {
        Ok(name) if !name.trim().is_empty() => name.trim().to_string(),
        _ => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    }
}

/// How long a lease from another host stands without a heartbeat: `FOUNDRY_LEASE_TTL`
/// (a duration such as `30s`; at least 1 s), else [`FOREIGN_LEASE_TTL`]. A team sets one
/// value everywhere: it is how long a dead machine's run stays locked.
pub fn ttl() -> Duration {
    static TTL: OnceLock<Duration> = OnceLock::new();
    *TTL.get_or_init(|| {
        let Ok(text) = std::env::var("FOUNDRY_LEASE_TTL") else {
            return FOREIGN_LEASE_TTL;
        };
        match humantime::parse_duration(text.trim()) {
            Ok(ttl) => ttl.max(TTL_MIN),
            Err(e) => {
                tracing::warn!(value = %text, error = %e, "FOUNDRY_LEASE_TTL is not a duration (such as 30s); the lease lasts 60 s");
                FOREIGN_LEASE_TTL
            }
        }
    })
}

/// How often the driver renews its lease: every [`HEARTBEAT_EVERY`], or thrice per TTL
/// when that is shorter, so one late heartbeat does not lose the run.
pub fn heartbeat_every() -> Duration {
    HEARTBEAT_EVERY.min(ttl() / 3)
}

/// A lease for this process, starting now.
pub fn own_lease() -> Lease {
    let now = Millis::now();
    Lease {
        pid: std::process::id(),
        host: hostname(),
        started_at: now,
        heartbeat_at: now,
    }
}

/// Whether a lease's owner may still be driving: on this host, its process exists; on
/// another host, its heartbeat is recent.
pub fn owner_alive(lease: &Lease) -> bool {
    if lease.host == hostname() {
        if lease.pid == std::process::id() {
            return true;
        }
        let Some(pid) = i32::try_from(lease.pid).ok().and_then(Pid::from_raw) else {
            return false;
        };
        test_kill_process(pid).is_ok()
    } else {
        lease.heartbeat_at.until(Millis::now()) < ttl()
    }
}
