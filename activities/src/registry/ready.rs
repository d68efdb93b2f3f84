//! Waits, within a deadline, until a registry answers `GET /v2/` with 200: it serves the
//! distribution API and asks for no credentials.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::RegistryClient;
use crate::http::until_answered;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryReady {
    /// `http://<ip>:5000`.
    pub addr: String,
    pub timeout_s: u64,
}

/// A registry that answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryUp {
    /// Its `Docker-Distribution-Api-Version` header (`registry/2.0`), if it sent one.
    pub api_version: Option<String>,
}

impl Activity for RegistryReady {
    type Output = RegistryUp;

    fn kind(&self) -> &'static str {
        "registry-ready"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<RegistryUp>, ActivityError> {
        let client = RegistryClient::new(&self.addr)?;
        Ok(client
            .ping()
            .await
            .ok()
            .map(|api_version| RegistryUp { api_version }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<RegistryUp, ActivityError> {
        let client = RegistryClient::new(&self.addr)?;
        let what = format!("the registry at {}", client.addr());
        let api_version = until_answered(cx, &what, self.timeout_s, || client.ping()).await?;
        Ok(RegistryUp { api_version })
    }
}
