//! Wall-clock instants as journaled: milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A wall-clock instant in milliseconds since the Unix epoch.
///
/// Journals outlive processes, so instants are wall-clock, not monotonic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn saturating_add(self, d: Duration) -> Self {
        Millis(
            self.0
                .saturating_add(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    pub fn saturating_sub(self, d: Duration) -> Self {
        Millis(
            self.0
                .saturating_sub(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        )
    }

    /// Time from `self` until `later`, zero if `later` is not later.
    pub fn until(self, later: Millis) -> Duration {
        Duration::from_millis(later.0.saturating_sub(self.0))
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0)
    }

    /// RFC 3339 with seconds precision, in UTC.
    pub fn rfc3339(self) -> String {
        humantime::format_rfc3339_seconds(self.to_system_time()).to_string()
    }
}
