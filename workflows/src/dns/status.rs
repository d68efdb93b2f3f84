//! What a DNS install is now, asked of the Engine and the servers' APIs (nothing
//! remembered): the containers' states, each API's reachability, version and zone counts.

use std::sync::Arc;

use foundry_activities::container::list_labelled;
use foundry_core::secret::SecretStore;
use foundry_core::{ActivityCx, ActivityError, SecretRef};
use serde::{Deserialize, Serialize};

use super::{DNS_LABEL, DnsInput, ROLE_LABEL, is_private};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStatus {
    /// Each container by role (`internal`, `external`, `recursor`) with its state
    /// (`running`, `exited`, … or `missing`).
    pub containers: Vec<(String, String)>,
    pub internal: InstanceStatus,
    pub external: InstanceStatus,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub reachable: bool,
    pub version: Option<String>,
    pub zones: usize,
    /// Zones ending in `.local`: the external server must have none.
    pub private_zones: usize,
    /// Why the API could not be asked, when it could not.
    pub error: Option<String>,
}

async fn instance(
    cx: &ActivityCx,
    input: &DnsInput,
    role: &str,
    key: &SecretRef,
) -> InstanceStatus {
    let asked = async {
        let client = input.api(role, key).client(cx)?;
        let version = client.version().await?;
        let zones = client.zones().await?;
        Ok::<_, ActivityError>((version, zones))
    };
    match asked.await {
        Ok((version, zones)) => InstanceStatus {
            reachable: true,
            version: Some(version),
            private_zones: zones.iter().filter(|z| is_private(&z.name)).count(),
            zones: zones.len(),
            error: None,
        },
        Err(e) => InstanceStatus {
            reachable: false,
            version: None,
            zones: 0,
            private_zones: 0,
            error: Some(e.message),
        },
    }
}

/// The install's live status; `key` is the API key's reference (the install's output
/// names it), revealed from `secrets`.
pub async fn status(
    input: &DnsInput,
    key: &SecretRef,
    secrets: Arc<dyn SecretStore>,
) -> Result<DnsStatus, ActivityError> {
    let listed = list_labelled(&input.endpoint, DNS_LABEL, Some(&input.name)).await?;
    let containers = ["internal", "external", "recursor"]
        .into_iter()
        .map(|role| {
            let state = listed
                .iter()
                .find(|c| c.labels.get(ROLE_LABEL).map(String::as_str) == Some(role))
                .map(|c| c.state.clone())
                .unwrap_or_else(|| "missing".into());
            (role.to_string(), state)
        })
        .collect();
    let cx = ActivityCx::standalone("dns-status").with_secrets(secrets);
    // The two servers are asked side by side: each request starts a relay in a container.
    let (internal, external) = tokio::join!(
        instance(&cx, input, "internal", key),
        instance(&cx, input, "external", key)
    );
    Ok(DnsStatus {
        containers,
        internal,
        external,
    })
}
