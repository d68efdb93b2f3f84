//! Waits, within a deadline, until OpenBAO answers `sys/health` (in any state: not yet
//! initialized and sealed are answers too).

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::{BaoClient, Health};
use crate::http::until_answered;

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

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Health>, ActivityError> {
        Ok(BaoClient::new(&self.addr)?.health().await.ok())
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Health, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        until_answered(cx, "OpenBAO", self.timeout_s, || client.health()).await
    }
}
