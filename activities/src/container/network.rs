//! A named network. Engine 20.10 creates a second network with the same name if asked
//! twice, so the name is looked up first, and again after a create. Callers in one
//! process take turns per Engine and name; callers in different processes can still race,
//! and the oldest network of the name wins (its duplicates are removed by their makers).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use bollard::query_parameters::ListNetworksOptionsBuilder;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::Endpoint;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureNetwork {
    pub endpoint: Endpoint,
    pub name: String,
    /// For example `10.77.0.0/24`.
    pub subnet: Option<String>,
    pub labels: HashMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOutput {
    pub id: String,
    pub created: bool,
}

impl EnsureNetwork {
    /// The ids of the networks named exactly `name` (the Engine's filter matches parts),
    /// oldest first: every caller agrees on the oldest, whatever it saw when.
    async fn lookup(&self, docker: &bollard::Docker) -> Result<Vec<String>, ActivityError> {
        let filters = HashMap::from([("name", vec![self.name.as_str()])]);
        let options = ListNetworksOptionsBuilder::new().filters(&filters).build();
        let networks = docker.list_networks(Some(options)).await.map_err(|e| {
            self.endpoint
                .error(&format!("listing networks named {}", self.name), &e)
        })?;
        let mut found: Vec<(String, String)> = networks
            .into_iter()
            .filter(|n| n.name.as_deref() == Some(self.name.as_str()))
            .filter_map(|n| Some((n.created.map(|c| c.to_string()).unwrap_or_default(), n.id?)))
            .collect();
        found.sort();
        Ok(found.into_iter().map(|(_, id)| id).collect())
    }
}

impl Activity for EnsureNetwork {
    type Output = NetworkOutput;

    fn kind(&self) -> &'static str {
        "network"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<NetworkOutput>, ActivityError> {
        let docker = self.endpoint.connect().await?;
        Ok(self
            .lookup(&docker)
            .await?
            .into_iter()
            .next()
            .map(|id| NetworkOutput { id, created: false }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<NetworkOutput, ActivityError> {
        // A create is only seen by a lookup once the Engine has stored it, so two creates in
        // flight at once can each see only their own network; one at a time, they cannot.
        let turn = turn(&format!("{}\n{}", self.endpoint, self.name));
        let _turn = turn.lock().await;
        if let Some(found) = self.probe(cx).await? {
            return Ok(found);
        }
        let docker = self.endpoint.connect().await?;
        if let Some(subnet) = &self.subnet
            && let Some((name, theirs)) = overlapping(&subnets(&self.endpoint).await?, subnet)
        {
            return Err(ActivityError::permanent(format!(
                "subnet {subnet} overlaps Docker network `{name}` ({theirs}) on {}; \
                 hint: choose a subnet no network uses (`docker network ls`)",
                self.endpoint
            )));
        }
        let ipam = self.subnet.as_ref().map(|subnet| Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(subnet.clone()),
                ..IpamConfig::default()
            }]),
            ..Ipam::default()
        });
        let request = NetworkCreateRequest {
            name: self.name.clone(),
            driver: Some("bridge".into()),
            ipam,
            labels: Some(self.labels.clone()),
            ..NetworkCreateRequest::default()
        };
        let created = docker.create_network(request).await;
        // Whatever the answer, the name now decides: the oldest network of that name wins,
        // and a duplicate this call made (Engine 20.10 makes them under a race) goes.
        let ids = self.lookup(&docker).await?;
        match (created, ids.first()) {
            (Ok(response), Some(first)) => {
                if response.id != *first
                    && let Err(e) = docker.remove_network(&response.id).await
                {
                    tracing::warn!(network = %self.name, error = %e, "could not remove a duplicate network");
                }
                Ok(NetworkOutput {
                    created: response.id == *first,
                    id: first.clone(),
                })
            }
            (Err(_), Some(first)) => Ok(NetworkOutput {
                id: first.clone(),
                created: false,
            }),
            (Err(e), None) => Err(self
                .endpoint
                .error(&format!("creating network {}", self.name), &e)),
            (Ok(_), None) => Err(ActivityError::transient(format!(
                "network {} was created but {} does not list it",
                self.name, self.endpoint
            ))),
        }
    }
}

/// The lock that callers creating one network (named by Engine and name) take in turn.
fn turn(key: &str) -> Arc<tokio::sync::Mutex<()>> {
    static TURNS: LazyLock<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Mutex::default);
    let mut turns = TURNS
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    turns.entry(key.to_string()).or_default().clone()
}

/// Every network on the Engine with each subnet its IPAM gives it: `(name, subnet)`.
pub async fn subnets(endpoint: &Endpoint) -> Result<Vec<(String, String)>, ActivityError> {
    let docker = endpoint.connect().await?;
    let networks = docker
        .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
        .await
        .map_err(|e| endpoint.error("listing networks", &e))?;
    Ok(networks
        .into_iter()
        .flat_map(|n| {
            let name = n.name.unwrap_or_default();
            n.ipam
                .and_then(|ipam| ipam.config)
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |c| Some((name.clone(), c.subnet?)))
        })
        .collect())
}

/// The first of `networks` whose subnet shares an address with `subnet`; subnets that do
/// not parse share none.
pub fn overlapping<'a>(
    networks: &'a [(String, String)],
    subnet: &str,
) -> Option<&'a (String, String)> {
    let ours: ipnet::IpNet = subnet.parse().ok()?;
    networks.iter().find(|(_, theirs)| {
        theirs.parse::<ipnet::IpNet>().is_ok_and(|theirs| {
            theirs.contains(&ours.network()) || ours.contains(&theirs.network())
        })
    })
}

/// Takes `container` off `network` (a cable pulled); already off is fine.
pub async fn disconnect(
    endpoint: &Endpoint,
    network: &str,
    container: &str,
) -> Result<(), ActivityError> {
    let docker = endpoint.connect().await?;
    let request = bollard::models::NetworkDisconnectRequest {
        container: container.to_string(),
        force: Some(true),
    };
    match docker.disconnect_network(network, request).await {
        Ok(()) => Ok(()),
        // The Engine answers 500 "is not connected" when it is already off.
        Err(e) if e.to_string().contains("is not connected") => Ok(()),
        Err(e) => Err(endpoint.error(&format!("disconnecting {container} from {network}"), &e)),
    }
}

/// Puts `container` back on `network` at `ipv4`; already on is fine.
pub async fn connect(
    endpoint: &Endpoint,
    network: &str,
    container: &str,
    ipv4: &str,
) -> Result<(), ActivityError> {
    let docker = endpoint.connect().await?;
    let request = bollard::models::NetworkConnectRequest {
        container: container.to_string(),
        endpoint_config: Some(bollard::models::EndpointSettings {
            ipam_config: Some(bollard::models::EndpointIpamConfig {
                ipv4_address: Some(ipv4.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    match docker.connect_network(network, request).await {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().contains("already exists") => Ok(()),
        Err(e) => Err(endpoint.error(&format!("connecting {container} to {network}"), &e)),
    }
}

#[cfg(test)]
mod tests {
    use super::overlapping;

    #[test]
    fn subnets_overlap_when_they_share_an_address() {
        let networks = [
            ("bridge".to_string(), "172.17.0.0/16".to_string()),
            ("lab".to_string(), "10.77.5.0/24".to_string()),
            ("v6".to_string(), "fd00::/64".to_string()),
            ("odd".to_string(), "not a subnet".to_string()),
        ];
        let named = |s: &str| overlapping(&networks, s).map(|(n, _)| n.as_str());
        assert_eq!(named("10.77.5.0/24"), Some("lab"));
        assert_eq!(named("10.77.0.0/16"), Some("lab"));
        assert_eq!(named("10.77.5.128/25"), Some("lab"));
        assert_eq!(named("172.17.3.0/24"), Some("bridge"));
        assert_eq!(named("10.77.6.0/24"), None);
        assert_eq!(named("fd00::/48"), Some("v6"));
        assert_eq!(named("garbage"), None);
    }
}
