//! Waits, bounded, until a PowerDNS API answers with its key.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::api::PdnsApi;
use crate::http::until_answered;

/// The API answers `servers/localhost` within `timeout_s` seconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReady {
    pub api: PdnsApi,
    pub timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerInfo {
    pub version: String,
}

impl Activity for ApiReady {
    type Output = ServerInfo;

    fn kind(&self) -> &'static str {
        "dns-api-ready"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ServerInfo>, ActivityError> {
        let client = self.api.client(cx)?;
        match client.version().await {
            Ok(version) => Ok(Some(ServerInfo { version })),
            Err(e) if e.transient => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ServerInfo, ActivityError> {
        let client = self.api.client(cx)?;
        let what = self.api.describe();
        // A refused key or a wrong path is permanent: it will not get better by waiting.
        let version = until_answered(cx, &what, self.timeout_s, || client.version()).await?;
        Ok(ServerInfo { version })
    }
}
