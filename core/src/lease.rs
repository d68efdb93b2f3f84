//! Who drives a run: this process's identity, and whether another one is still alive.

use rustix::process::{Pid, test_kill_process};

use crate::model::Lease;
use crate::time::Millis;

/// How often the driving process renews its lease.
pub const HEARTBEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A lease held from another host is considered abandoned after this long without a
/// heartbeat (a journal on a shared file system).
pub const FOREIGN_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(60);

pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
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
        lease.heartbeat_at.until(Millis::now()) < FOREIGN_LEASE_TTL
    }
}
