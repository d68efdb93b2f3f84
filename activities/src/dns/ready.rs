//! Waits, bounded, until a PowerDNS API answers with its key.

use std::time::{Duration, Instant};

use foundry_core::{Activity, ActivityCx, ActivityError};
use serde::{Deserialize, Serialize};

use super::api::PdnsApi;

const PAUSE: Duration = Duration::from_millis(250);

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
        let deadline = Instant::now() + Duration::from_secs(self.timeout_s);
        loop {
            match client.version().await {
                Ok(version) => return Ok(ServerInfo { version }),
                // A refused key or a wrong path will not get better by waiting.
                Err(e) if !e.transient => return Err(e),
                Err(e) if Instant::now() >= deadline => {
                    return Err(ActivityError::transient(format!(
                        "the API at {} did not answer within {} s: {}",
                        self.api.url, self.timeout_s, e.message
                    )));
                }
                Err(_) => {}
            }
            tokio::select! {
                () = tokio::time::sleep(PAUSE) => {}
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::transient("cancelled while waiting for the API"));
                }
            }
        }
    }
}
