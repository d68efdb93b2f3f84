//! The stack's infrastructure components as the stack config places them: on which host's
//! container engine each runs, on which container network and at which addresses, with
//! which image. From that come the inputs of their install workflows, and their status,
//! asked live of the containers and the services (nothing is remembered between runs).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;

use foundry_activities::container::Endpoint;
use foundry_core::Workflow;
use serde::Serialize;
use serde_json::Value;

use crate::config::schema::Service;
use crate::config::{At, StackConfig};

/// A component Foundry installs as containers on an infrastructure host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    Openbao,
    Dns,
    Zot,
}

impl Component {
    /// Every component, in the order an install needs them: DNS keeps its API key in
    /// OpenBAO.
    pub const ALL: [Component; 3] = [Component::Openbao, Component::Dns, Component::Zot];

    pub fn name(self) -> &'static str {
        match self {
            Component::Openbao => "openbao",
            Component::Dns => "dns",
            Component::Zot => "zot",
        }
    }

    /// The workflow that installs it.
    pub fn workflow(self) -> &'static str {
        match self {
            Component::Openbao => crate::openbao::OpenbaoInstall::NAME,
            Component::Dns => crate::dns::DnsInstall::NAME,
            Component::Zot => crate::registry::RegistryInstall::NAME,
        }
    }

    /// The container's (or containers' prefix) name when the config gives none.
    pub fn default_name(self) -> &'static str {
        match self {
            Component::Openbao => "foundry-openbao",
            Component::Dns => "foundry-dns",
            Component::Zot => "foundry-registry",
        }
    }

    /// The data volumes of the component's containers named `name`.
    pub fn volumes(self, name: &str) -> Vec<String> {
        match self {
            Component::Openbao | Component::Zot => vec![single_volume(name)],
            Component::Dns => ["internal", "external"]
                .into_iter()
                .map(|role| crate::dns::volume(name, role))
                .collect(),
        }
    }

    fn service(self, stack: &StackConfig) -> Service {
        let components = stack.components.clone().unwrap_or_default();
        match self {
            Component::Openbao => components.openbao,
            Component::Dns => components.dns,
            Component::Zot => components.zot,
        }
    }

    fn hosts(self, stack: &StackConfig) -> Vec<At<String>> {
        let Some(network) = &stack.network else {
            return Vec::new();
        };
        match self {
            Component::Openbao => network.openbao_hosts.clone(),
            Component::Dns => network.dns_hosts.clone(),
            Component::Zot => network.zot_hosts.clone(),
        }
    }

    /// The lab's image, built on this machine when missing.
    fn lab_image(self) -> &'static str {
        match self {
            Component::Openbao => crate::openbao::OPENBAO_IMAGE,
            Component::Dns => crate::dns::PDNS_IMAGE,
            Component::Zot => crate::registry::REGISTRY_IMAGE,
        }
    }
}

impl std::str::FromStr for Component {
    type Err = ComponentError;
    fn from_str(text: &str) -> Result<Component, ComponentError> {
        match text {
            "openbao" => Ok(Component::Openbao),
            "dns" | "powerdns" => Ok(Component::Dns),
            "zot" | "registry" => Ok(Component::Zot),
            other => Err(ComponentError::new(format!(
                "no component `{other}`: expected openbao, dns or zot"
            ))),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    pub message: String,
    pub hint: Option<String>,
}

impl ComponentError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ComponentError {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Where a component runs and with what, as the stack config says.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
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

/// Where `component` runs: `components.<c>.host`, else the first of `network.<c>_hosts`,
/// on `components.<c>.docker_network` at `components.<c>.address`.
pub fn placement(stack: &StackConfig, component: Component) -> Result<Placement, ComponentError> {
    let c = component.name();
    let service = component.service(stack);
    let named = service
        .host
        .clone()
        .or_else(|| component.hosts(stack).into_iter().next())
        .ok_or_else(|| {
            ComponentError::new(format!("the stack config places {c} on no host")).hint(format!(
                "name its host in network.{c}_hosts (or components.{c}.host)"
            ))
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
    let default = component.lab_image();
    let image = match (&service.image, &service.image_tag) {
        (Some(image), _) => image.clone(),
        (None, Some(tag)) => format!(
            "{}:{tag}",
            default.rsplit_once(':').map_or(default, |(name, _)| name)
        ),
        (None, None) => default.to_string(),
    };
    let build_image = service.image.is_none() && service.image_tag.is_none();
    let name = service
        .name
        .clone()
        .unwrap_or_else(|| component.default_name().to_string());
    Ok(Placement {
        component: c,
        name,
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

impl Placement {
    /// The address of `role` (`external`, `recursor`), which the config must give.
    fn role(&self, role: &str) -> Result<Ipv4Addr, ComponentError> {
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
}

/// The data volume of a one-container component named `name`.
fn single_volume(name: &str) -> String {
    format!("{name}-data")
}

/// Where OpenBAO (the container `name`) hands the unseal keys and root token over, once.
pub fn handover_path(home: &Path, name: &str) -> std::path::PathBuf {
    home.join("openbao").join(format!("{name}-handover.txt"))
}

/// The input of `component`'s install workflow.
pub fn install_input(
    stack: &StackConfig,
    home: &Path,
    component: Component,
) -> Result<Value, ComponentError> {
    let place = placement(stack, component)?;
    let name = place.name.as_str();
    let input = match component {
        Component::Openbao => serde_json::to_value(crate::openbao::OpenbaoInput {
            endpoint: place.endpoint.clone(),
            name: name.into(),
            image: place.image.clone(),
            build_image: place.build_image,
            image_source: place.image_source,
            registry_mirror: place.registry_mirror.clone(),
            base_image: crate::lab::LAB_IMAGE.into(),
            network: place.network.clone(),
            ipv4: place.address.to_string(),
            volume: single_volume(name),
            shares: 3,
            threshold: 2,
            handover: handover_path(home, name),
            token_file: None,
            names: Vec::new(),
            keep_root_token: false,
            tls: stack
                .components
                .as_ref()
                .and_then(|c| c.openbao.tls.clone()),
        }),
        Component::Dns => serde_json::to_value(dns_input(stack, &place)?),
        Component::Zot => serde_json::to_value(crate::registry::RegistryInput {
            endpoint: place.endpoint.clone(),
            name: name.into(),
            image: place.image.clone(),
            build_image: place.build_image,
            image_source: place.image_source,
            registry_mirror: place.registry_mirror.clone(),
            base_image: crate::lab::LAB_IMAGE.into(),
            network: place.network.clone(),
            ipv4: place.address.to_string(),
            volume: single_volume(name),
            publish: None,
        }),
    };
    input.map_err(|e| ComponentError::new(format!("{}: {e}", component.name())))
}

/// The reference the PowerDNS API key is kept under when the config gives none.
pub const DNS_KEY_PATH: &str = "foundry-core/dns";
pub const DNS_KEY_KEY: &str = "api_key";

/// Where the PowerDNS API key is: the config's `dns.api_key` reference, else the default
/// place in OpenBAO, where the install generates it.
pub fn dns_key(stack: &StackConfig) -> crate::secrets::EnsureStackSecret {
    let named = stack
        .dns
        .as_ref()
        .and_then(|d| d.api_key.as_ref())
        .map(|field| field.0.clone());
    let (path, key, generate) = match named {
        Some(r) => (r.path, r.key, true),
        None => (DNS_KEY_PATH.into(), DNS_KEY_KEY.into(), true),
    };
    crate::secrets::EnsureStackSecret {
        path,
        key,
        purpose: "PowerDNS API key".into(),
        openbao: stack.openbao_url(),
        generate,
        holder: None,
    }
}

/// The input `dns-install` gets from the stack config, for the DNS placed at `place`.
pub(crate) fn dns_input(
    stack: &StackConfig,
    place: &Placement,
) -> Result<crate::dns::DnsInput, ComponentError> {
    use crate::dns::{RecordInput, ZoneInput};
    let dns = stack.dns.clone().unwrap_or_default();
    let zones = dns
        .infrastructure_zones
        .iter()
        .chain(&dns.kubernetes_zones)
        .map(|z| ZoneInput {
            name: z.name.value.as_str().to_string(),
            public: z.public,
            public_cname: z.public_cname.as_ref().map(|n| n.as_str().to_string()),
            nameservers: Vec::new(),
            records: z
                .records
                .iter()
                .map(|r| RecordInput {
                    name: r.name.clone(),
                    rtype: format!("{:?}", r.kind),
                    content: r.value.clone(),
                    ttl: r.ttl,
                })
                .collect(),
        })
        .collect();
    let mut allow_from = vec!["127.0.0.0/8".to_string()];
    if let Some(subnet) = stack.network.as_ref().and_then(|n| n.cidr()) {
        allow_from.push(subnet.to_string());
    }
    Ok(crate::dns::DnsInput {
        endpoint: place.endpoint.clone(),
        name: place.name.clone(),
        image: place.image.clone(),
        build_image: place.build_image,
        image_source: place.image_source,
        registry_mirror: place.registry_mirror.clone(),
        mirror: crate::dns::DEFAULT_MIRROR.into(),
        network: place.network.clone(),
        internal_ipv4: place.address.to_string(),
        external_ipv4: place.role("external")?.to_string(),
        recursor_ipv4: place.role("recursor")?.to_string(),
        allow_from,
        forwarders: dns.forwarders.iter().map(|f| f.value.to_string()).collect(),
        api_key: None,
        api_key_from: Some(dns_key(stack)),
        ttl: 300,
        wait_s: 60,
        zones,
    })
}

/// The PowerDNS API key as the stack resolves it now (environment, `~/.foundryvars`,
/// OpenBAO), kept in a store of this process only, and its reference there: the servers'
/// clients reveal it from there, and it is never printed.
pub(crate) async fn dns_key_kept(
    stack: &StackConfig,
    place: &Placement,
) -> Result<
    (
        foundry_core::SecretRef,
        std::sync::Arc<dyn foundry_core::secret::SecretStore>,
    ),
    ComponentError,
> {
    let key = dns_key(stack);
    let (value, _) = key
        .current()
        .await
        .map_err(|e| ComponentError::new(format!("dns on {}: {}", place.host, e.message)))?
        .ok_or_else(|| {
            ComponentError::new(format!(
                "the PowerDNS API key (${{secret:{}:{}}}) is set nowhere",
                key.path, key.key
            ))
            .hint("install DNS with `foundry component install dns`, which makes one")
        })?;
    let secrets = std::sync::Arc::new(foundry_core::secret::MemorySecretStore::default());
    let reference = foundry_core::secret::SecretStore::put(secrets.as_ref(), &value)
        .map_err(|e| ComponentError::new(e.to_string()))?;
    Ok((reference, secrets))
}

/// A component as it is now.
#[derive(Clone, Debug, Serialize)]
pub struct ComponentStatus {
    pub component: &'static str,
    pub host: String,
    pub address: Ipv4Addr,
    /// Every container runs and the service answers, ready to serve.
    pub healthy: bool,
    /// One line for people: what runs and what the service says.
    pub summary: String,
    /// The version the service reports.
    pub version: Option<String>,
    /// The version the config expects, when it names one.
    pub expected_version: Option<String>,
    /// What the containers and the service said, in full.
    pub detail: Value,
    /// OpenBAO only: the life left to Foundry's token (renewed by this look when half
    /// spent), or why it is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<TokenStatus>,
}

/// Foundry's OpenBAO token as `component status` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct TokenStatus {
    /// Seconds left (0: it never expires); none when it could not be asked.
    pub ttl_s: Option<u64>,
    /// Less than half its time left, and not renewable any further.
    pub low: bool,
    pub renewed: bool,
    pub error: Option<String>,
}

/// Foundry's token's life, asked of OpenBAO with the token itself.
async fn token_status(stack: &StackConfig) -> TokenStatus {
    let asked = async {
        let home = foundry_core::Home::from_env().map_err(|e| e.to_string())?;
        let vault =
            crate::secrets::Vault::of_stack(stack, home.root()).map_err(|e| e.message.clone())?;
        vault
            .token_life()
            .await
            .cloned()
            .map_err(|e| e.message.clone())
    };
    match asked.await {
        Ok(life) => TokenStatus {
            ttl_s: Some(life.ttl_s),
            low: life.low,
            renewed: life.renewed,
            error: None,
        },
        Err(error) => TokenStatus {
            ttl_s: None,
            low: false,
            renewed: false,
            error: Some(error),
        },
    }
}

impl TokenStatus {
    /// For the status line: `Foundry's token: 31d 23h left`.
    fn said(&self) -> String {
        match (&self.error, self.ttl_s) {
            (Some(e), _) => format!("Foundry's token: {e}"),
            (None, Some(ttl)) => {
                let left = foundry_activities::openbao::TokenLife {
                    ttl_s: ttl,
                    creation_ttl_s: 0,
                    renewed: self.renewed,
                    low: self.low,
                }
                .left();
                let low = if self.low {
                    " (LOW: not renewable; see `foundry secret recover-token`)"
                } else {
                    ""
                };
                match ttl {
                    0 => format!("Foundry's token never expires{low}"),
                    _ => format!("Foundry's token: {left} left{low}"),
                }
            }
            (None, None) => "Foundry's token: unknown".into(),
        }
    }
}

/// `component` as it is now, asked of its containers and its service.
pub async fn status(
    stack: &StackConfig,
    component: Component,
) -> Result<ComponentStatus, ComponentError> {
    let place = placement(stack, component)?;
    let name = place.name.as_str();
    let failed = |e: foundry_core::ActivityError| {
        ComponentError::new(format!(
            "{} on {}: {}",
            component.name(),
            place.host,
            e.message
        ))
    };
    let mut token = None;
    let (healthy, summary, version, detail) = match component {
        Component::Openbao => {
            let addr = format!("https://{}:{}", place.address, crate::openbao::PORT);
            let found = crate::openbao::status(&place.endpoint, name, &addr)
                .await
                .map_err(failed)?;
            let container = found.container.clone().unwrap_or_else(|| "missing".into());
            let (healthy, said) = match &found.health {
                Some(h) if !h.initialized => (false, "not initialized".to_string()),
                Some(h) if h.sealed => (false, "sealed".to_string()),
                Some(h) if h.standby => (false, "standby".to_string()),
                Some(_) => (true, "unsealed".to_string()),
                None => (
                    false,
                    format!("not answering: {}", found.error.clone().unwrap_or_default()),
                ),
            };
            let version = found.health.as_ref().map(|h| h.version.clone());
            let mut summary = format!("container {container}, {said}");
            if healthy {
                let life = token_status(stack).await;
                summary = format!("{summary}; {}", life.said());
                token = Some(life);
            }
            (
                healthy && container == "running",
                summary,
                version,
                serde_json::to_value(&found),
            )
        }
        Component::Dns => {
            let input = dns_input(stack, &place)?;
            let (reference, secrets) = dns_key_kept(stack, &place).await?;
            let found = crate::dns::status(&input, &reference, secrets)
                .await
                .map_err(failed)?;
            let running = found.containers.iter().all(|(_, state)| state == "running");
            let containers: Vec<String> = found
                .containers
                .iter()
                .map(|(role, state)| format!("{role} {state}"))
                .collect();
            let zones = |i: &crate::dns::InstanceStatus| match (&i.error, i.reachable) {
                (_, true) => format!("{} zones", i.zones),
                (Some(e), false) => format!("not answering: {e}"),
                (None, false) => "not answering".into(),
            };
            let summary = format!(
                "{}; internal: {}, external: {}",
                containers.join(", "),
                zones(&found.internal),
                zones(&found.external)
            );
            (
                running && found.internal.reachable && found.external.reachable,
                summary,
                found.internal.version.clone(),
                serde_json::to_value(&found),
            )
        }
        Component::Zot => {
            let addr = format!("http://{}:{}", place.address, crate::registry::PORT);
            let found = crate::registry::status(&place.endpoint, name, &addr)
                .await
                .map_err(failed)?;
            let container = found.container.clone().unwrap_or_else(|| "missing".into());
            let said = match (&found.error, found.api) {
                (_, true) => format!(
                    "API answers, {} repositories{}",
                    found.repositories.len(),
                    if place.build_image {
                        " (the lab's stand-in for Zot)"
                    } else {
                        ""
                    }
                ),
                (Some(e), false) => format!("not answering: {e}"),
                (None, false) => "not answering".into(),
            };
            (
                found.api && container == "running",
                format!("container {container}, {said}"),
                found.api_version.clone(),
                serde_json::to_value(&found),
            )
        }
    };
    Ok(ComponentStatus {
        component: component.name(),
        host: place.host.clone(),
        address: place.address,
        healthy,
        summary,
        version,
        expected_version: place.version.clone(),
        detail: detail.map_err(|e| ComponentError::new(e.to_string()))?,
        token,
    })
}

/// What an install run of `component` changed, from its output; empty when nothing did.
pub fn changes(component: Component, output: Value) -> Result<Vec<String>, ComponentError> {
    let bad = |e: serde_json::Error| {
        ComponentError::new(format!(
            "{}: unexpected install output: {e}",
            component.name()
        ))
    };
    Ok(match component {
        Component::Openbao => serde_json::from_value::<crate::openbao::OpenbaoOutput>(output)
            .map_err(bad)?
            .changes(),
        Component::Dns => serde_json::from_value::<crate::dns::DnsOutput>(output)
            .map_err(bad)?
            .changes(),
        Component::Zot => serde_json::from_value::<crate::registry::RegistryOutput>(output)
            .map_err(bad)?
            .changes(),
    })
}
