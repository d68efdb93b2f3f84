//! Waits, within a deadline, until OpenBAO answers `sys/health` (in any state: not yet
//! initialized and sealed are answers too).

use std::time::{Duration, Instant};

use foundry_core::{Activity, ActivityCx, ActivityError};
use serde::{Deserialize, Serialize};

use super::{BaoClient, Health};

/// How long to wait between two tries.
const PAUSE: Duration = Duration::from_millis(250);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoReady {
    /// `http://<ip>:8200`.
    pub addr: String,
    pub timeout_s: u64,
}

impl Activity for BaoReady {
    type Output = Health;

    fn kind(&self) -> &'static str {
        "openbao-ready"
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Health>, ActivityError> {
        Ok(BaoClient::new(&self.addr)?.health().await.ok())
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Health, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        let end = Instant::now() + Duration::from_secs(self.timeout_s);
        loop {
            let last = match client.health().await {
                Ok(health) => return Ok(health),
                Err(e) if !e.transient => return Err(e),
                Err(e) => e,
            };
            if Instant::now() >= end {
                return Err(ActivityError::transient(format!(
                    "OpenBAO did not answer within {} s: {}",
                    self.timeout_s, last.message
                )));
            }
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::permanent("cancelled while waiting for OpenBAO"));
                }
            }
        }
    }
}
