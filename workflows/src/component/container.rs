//! The components that run as containers on an infrastructure host's container engine
//! (OpenBAO, DNS, the registry): where the stack config puts them, on which container
//! network, at which addresses, with which image.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use foundry_activities::container::Endpoint;
use serde::Serialize;

use super::{ComponentError, Placement};
use crate::config::schema::Service;
use crate::config::{At, StackConfig};

/// What a container component's own module says of it, for [`place`].
pub struct Site {
    pub component: &'static str,
    /// Its section of the config: `components.<component>`.
    pub service: Service,
    /// The hosts the network section names for it: `network.<component>_hosts`.
    pub hosts: Vec<At<String>>,
    /// The container's (DNS: its containers' prefix) name when the config gives none.
    pub default_name: &'static str,
    /// The image when the config names none (upstream's, pinned).
    pub default_image: &'static str,
    /// The lab's image, built on this machine when the config names it.
    pub lab_image: &'static str,
}

/// Where a container component runs and with what, as the stack config says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerPlacement {
    pub component: &'static str,
    /// The container's name (DNS: its containers' prefix).
    pub name: String,
    /// The host whose container engine runs it.
    pub host: String,
    #[serde(skip)]
    pub endpoint: Endpoint,
    /// The container network it joins, at `address` (and `addresses` by role).
    pub network: String,
    pub address: Ipv4Addr,
    pub addresses: BTreeMap<String, Ipv4Addr>,
    pub image: String,
    /// The image is the lab's, built on this machine when missing.
    pub build_image: bool,
    /// How the image reaches the host's Engine (`components.<c>.image_source`), and the
    /// registry mirror a pull goes through.
    pub image_source: Option<foundry_activities::container::ImageSource>,
    pub registry_mirror: Option<String>,
    /// The version `status` expects to find running, when the config names one.
    pub version: Option<String>,
}

/// Where `site` runs: `components.<c>.host`, else the first of `network.<c>_hosts`, on
/// `components.<c>.docker_network` at `components.<c>.address`.
pub fn place(stack: &StackConfig, site: Site) -> Result<ContainerPlacement, ComponentError> {
    let c = site.component;
    let service = site.service;
    let named = service
        .host
        .clone()
        .or_else(|| site.hosts.into_iter().next())
        .ok_or_else(|| {
            ComponentError::unplaced(format!("the stack config places {c} on no host")).hint(
                format!("name its host in network.{c}_hosts (or components.{c}.host)"),
            )
        })?;
    let host = stack.host_named_or_at(&named.value).ok_or_else(|| {
        ComponentError::new(format!(
            "{}{c} is placed on `{}`, which is not under hosts:",
            named.place(),
            named.value
        ))
        .hint("add it with `foundry host add`")
    })?;
    let target = stack.ssh_target(host).map_err(|e| {
        ComponentError::new(format!("{c} runs on {}: {}", host.name, e.message)).hint(e.hint)
    })?;
    let needs = |what: &str| {
        ComponentError::new(format!(
            "components.{c}.{what} is not set: {c} needs a container network and its address on it"
        ))
        .hint(format!(
            "set components.{c}.docker_network and components.{c}.address (the lab's config has them)"
        ))
    };
    let network = service
        .docker_network
        .clone()
        .ok_or_else(|| needs("docker_network"))?;
    let address = service
        .address
        .as_ref()
        .map(|a| a.value)
        .ok_or_else(|| needs("address"))?;
    let default = site.default_image;
    let image = match (&service.image, &service.image_tag) {
        (Some(image), _) => image.clone(),
        (None, Some(tag)) => format!(
            "{}:{tag}",
            default.rsplit_once(':').map_or(default, |(name, _)| name)
        ),
        (None, None) => default.to_string(),
    };
    let build_image = image == site.lab_image;
    Ok(ContainerPlacement {
        component: c,
        name: service
            .name
            .clone()
            .unwrap_or_else(|| site.default_name.to_string()),
        host: host.name.clone(),
        endpoint: Endpoint::ssh(target),
        network,
        address,
        addresses: service
            .addresses
            .iter()
            .map(|(role, a)| (role.clone(), a.value))
            .collect(),
        image,
        build_image,
        image_source: service.image_source,
        registry_mirror: service.registry_mirror.clone(),
        version: service.version.clone(),
    })
}

impl ContainerPlacement {
    /// The address of `role` (`external`, `recursor`), which the config must give.
    pub(crate) fn role(&self, role: &str) -> Result<Ipv4Addr, ComponentError> {
        self.addresses.get(role).copied().ok_or_else(|| {
            ComponentError::new(format!(
                "components.{}.addresses.{role} is not set",
                self.component
            ))
            .hint(format!(
                "give each of {}'s containers an address on {}: addresses: {{ external: …, recursor: … }}",
                self.component, self.network
            ))
        })
    }

    /// Where it runs, as every component says it.
    pub fn placement(&self) -> Placement {
        Placement {
            component: self.component,
            host: self.host.clone(),
            address: Some(self.address),
            runs: format!("container {}", self.name),
            version: self.version.clone(),
        }
    }

    /// Its status: what the service said (`detail`), `healthy` and in a line (`summary`),
    /// the version it reports, and each of its containers (by name) with its state.
    pub(crate) fn status(
        &self,
        healthy: bool,
        summary: String,
        version: Option<String>,
        detail: &impl Serialize,
        containers: impl IntoIterator<Item = (String, String)>,
    ) -> Result<super::ComponentStatus, ComponentError> {
        Ok(super::ComponentStatus {
            component: self.component.into(),
            host: self.host.clone(),
            address: Some(self.address),
            healthy,
            summary,
            version,
            expected_version: self.version.clone(),
            detail: serde_json::to_value(detail).map_err(|e| ComponentError::new(e.to_string()))?,
            parts: containers
                .into_iter()
                .map(|(name, state)| (format!("container {name}"), state))
                .collect(),
            more: serde_json::Map::new(),
        })
    }

    /// The image its container `name` was created from, asked of its Engine now; none
    /// when there is no such container.
    pub(crate) async fn running_image(&self, name: &str) -> Result<Option<String>, ComponentError> {
        foundry_activities::container::container_image(&self.endpoint, name)
            .await
            .map_err(|e| self.failed(e))
    }

    /// An error of the engine or the service where it runs, said as this component's.
    pub(crate) fn failed(&self, e: foundry_core::ActivityError) -> ComponentError {
        ComponentError::new(format!(
            "{} on {}: {}",
            self.component, self.host, e.message
        ))
    }
}

/// The data volume of a one-container component named `name`.
pub fn single_volume(name: &str) -> String {
    format!("{name}-data")
}

/// The stack config's section of every component: `components:`, defaulted.
pub(crate) fn components(stack: &StackConfig) -> crate::config::schema::Components {
    stack.components.clone().unwrap_or_default()
}

/// The hosts `network.<c>_hosts` names, through `pick`.
pub(crate) fn hosts(
    stack: &StackConfig,
    pick: impl FnOnce(&crate::config::schema::Network) -> &Vec<At<String>>,
) -> Vec<At<String>> {
    stack
        .network
        .as_ref()
        .map(pick)
        .cloned()
        .unwrap_or_default()
}
