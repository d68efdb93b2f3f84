//! Containers and networks found by a label: live queries (nothing is remembered), and
//! their removal.

use std::collections::{BTreeMap, HashMap};

use bollard::query_parameters::{ListContainersOptionsBuilder, ListNetworksOptionsBuilder};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use serde::{Deserialize, Serialize};

use super::{Endpoint, not_found};

/// A container as the Engine lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labelled {
    pub name: String,
    pub state: String,
    pub labels: BTreeMap<String, String>,
    /// Its addresses, by network.
    pub addresses: BTreeMap<String, String>,
}

fn filter(key: &str, value: Option<&str>) -> HashMap<&'static str, Vec<String>> {
    let label = match value {
        Some(v) => format!("{key}={v}"),
        None => key.to_string(),
    };
    HashMap::from([("label", vec![label])])
}

/// The state (`running`, `exited`, …) of the container `name` labelled `key=name`; none
/// when there is no such container.
pub async fn labelled_state(
    endpoint: &Endpoint,
    key: &str,
    name: &str,
) -> Result<Option<String>, ActivityError> {
    Ok(list_labelled(endpoint, key, Some(name))
        .await?
        .into_iter()
        .find(|c| c.name == name)
        .map(|c| c.state))
}

/// The containers carrying label `key` (with `value`, if given), running or not, by name.
pub async fn list_labelled(
    endpoint: &Endpoint,
    key: &str,
    value: Option<&str>,
) -> Result<Vec<Labelled>, ActivityError> {
    let docker = endpoint.connect().await?;
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filter(key, value))
        .build();
    let containers = docker
        .list_containers(Some(options))
        .await
        .map_err(|e| endpoint.error("listing containers", &e))?;
    let mut found: Vec<Labelled> = containers
        .into_iter()
        .map(|c| Labelled {
            name: c
                .names
                .and_then(|n| n.into_iter().next())
                .map(|n| n.trim_start_matches('/').to_string())
                .unwrap_or_default(),
            state: c.state.map(|s| s.to_string()).unwrap_or_default(),
            labels: c.labels.unwrap_or_default().into_iter().collect(),
            addresses: c
                .network_settings
                .and_then(|n| n.networks)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|(net, settings)| {
                    Some((net, settings.ip_address.filter(|ip| !ip.is_empty())?))
                })
                .collect(),
        })
        .collect();
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// Removes every container, then every network, labelled `key=value`; a network goes with
/// every container still attached to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveLabelled {
    pub endpoint: Endpoint,
    pub key: String,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    pub containers: usize,
    pub networks: usize,
}

impl Activity for RemoveLabelled {
    type Output = Removed;

    fn kind(&self) -> &'static str {
        "remove-labelled"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Removed>, ActivityError> {
        let left = list_labelled(&self.endpoint, &self.key, Some(&self.value)).await?;
        Ok(left.is_empty().then_some(Removed {
            containers: 0,
            networks: 0,
        }))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<Removed, ActivityError> {
        let containers = list_labelled(&self.endpoint, &self.key, Some(&self.value)).await?;
        let docker = self.endpoint.connect().await?;
        for c in &containers {
            super::ensure::remove(&docker, &self.endpoint, &c.name).await?;
        }
        let options = ListNetworksOptionsBuilder::new()
            .filters(&filter(&self.key, Some(&self.value)))
            .build();
        let networks = docker
            .list_networks(Some(options))
            .await
            .map_err(|e| self.endpoint.error("listing networks", &e))?;
        let mut removed_networks = 0;
        let mut removed_containers = containers.len();
        for id in networks.into_iter().filter_map(|n| n.id) {
            let attached = match docker
                .inspect_network(
                    &id,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(network) => network.containers.unwrap_or_default(),
                Err(e) if not_found(&e) => continue,
                Err(e) => {
                    return Err(self.endpoint.error(&format!("inspecting network {id}"), &e));
                }
            };
            for name in attached.into_values().filter_map(|c| c.name) {
                super::ensure::remove(&docker, &self.endpoint, &name).await?;
                removed_containers += 1;
            }
            match docker.remove_network(&id).await {
                Ok(()) => removed_networks += 1,
                Err(e) if not_found(&e) => {}
                Err(e) => return Err(self.endpoint.error(&format!("removing network {id}"), &e)),
            }
        }
        Ok(Removed {
            containers: removed_containers,
            networks: removed_networks,
        })
    }
}
