//! The stack's schema beyond its hosts: network, DNS, cluster, components, observability
//! and storage. Every struct refuses unknown fields, so a typo is an error at its line.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Deserializer, Serialize};

use super::value::{self, At, Cidr, DnsName, HttpUrl, KeyField, Retention, SecretField};

/// A mapping whose value may be left empty (`openbao:` with only comments under it),
/// which means the defaults.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The hosts' network.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The network, `192.168.1.0/24`; or give `netmask` and it follows from the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<At<Cidr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netmask: Option<At<Ipv4Addr>>,
    pub gateway: At<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dhcp_range: Option<DhcpRange>,
    /// Where each infrastructure service runs: host names or addresses from `hosts:`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub openbao_hosts: Vec<At<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_hosts: Vec<At<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub zot_hosts: Vec<At<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub truenas_hosts: Vec<At<String>>,
    /// The Kubernetes API's virtual address: unique in the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_vip: Option<At<Ipv4Addr>>,
}

impl Network {
    /// The subnet, given or following from the gateway and netmask; none when neither is
    /// given or the netmask is malformed (the config's check reports those).
    pub fn cidr(&self) -> Option<Cidr> {
        match (&self.subnet, &self.netmask) {
            (Some(subnet), _) => Some(subnet.value),
            (None, Some(mask)) => Cidr::from_netmask(self.gateway.value, mask.value).ok(),
            (None, None) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DhcpRange {
    pub start: At<Ipv4Addr>,
    pub end: At<Ipv4Addr>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dns {
    /// Zones for the infrastructure's own names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub infrastructure_zones: Vec<Zone>,
    /// Zones for the cluster's services.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kubernetes_zones: Vec<Zone>,
    /// Where names outside Foundry's zones are resolved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwarders: Vec<At<IpAddr>>,
    #[serde(default)]
    pub backend: DnsBackend,
    /// The PowerDNS API key (generated and kept in OpenBAO when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretField>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DnsBackend {
    #[default]
    Sqlite,
}

/// A DNS zone. A public zone is split: inside the network its names answer with the
/// hosts' addresses; outside, with a CNAME to `public_cname`. A `.local` zone is private.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub name: At<DnsName>,
    #[serde(default)]
    pub public: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_cname: Option<DnsName>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub records: Vec<Record>,
}

/// A record in a zone: `name` is relative to the zone (`@` for the zone itself).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: RecordType,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
    TXT,
    MX,
    NS,
    SRV,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<DnsName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k8s_vip: Option<At<Ipv4Addr>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Node>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// A host from `hosts:`, by name or address.
    pub hostname: At<String>,
    pub role: NodeRole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeRole {
    ControlPlane,
    Worker,
}

/// The components Foundry installs, each with its image and version.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Components {
    #[serde(default, deserialize_with = "null_is_default")]
    pub openbao: Service,
    #[serde(default, deserialize_with = "null_is_default")]
    pub dns: Service,
    #[serde(default, deserialize_with = "null_is_default")]
    pub zot: Service,
    #[serde(default, deserialize_with = "null_is_default")]
    pub k3s: K3s,
    #[serde(default, deserialize_with = "null_is_default")]
    pub grafana: Grafana,
    #[serde(default, deserialize_with = "null_is_default")]
    pub contour: super::charts::ChartConfig,
    #[serde(default, deserialize_with = "null_is_default")]
    pub cert_manager: super::charts::CertManagerConfig,
}

/// A service run as a container on an infrastructure host.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The container's name (its prefix, for DNS's three); `foundry-<component>` when not
    /// given.
    #[serde(
        default,
        deserialize_with = "value::container_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
    /// The image, `name:tag`; the component's default when not given.
    #[serde(
        default,
        deserialize_with = "value::image",
        skip_serializing_if = "Option::is_none"
    )]
    pub image: Option<String>,
    /// Only the tag of the default image.
    #[serde(
        default,
        deserialize_with = "value::tag",
        skip_serializing_if = "Option::is_none"
    )]
    pub image_tag: Option<String>,
    /// How the image reaches the host's container engine: `pull` (the engine pulls it
    /// from its registry) or `load` (Foundry carries it from this machine's engine, for
    /// an air-gapped host); by default `load` for the lab's images, built here, and `pull`
    /// for any image the config names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_source: Option<foundry_activities::container::ImageSource>,
    /// A registry (`host[:port][/prefix]`) the engine pulls the image through instead of
    /// the image's own registry: the image's path is put after it
    /// (`openbao/openbao:2.1` through `mirror.lan:5000` is
    /// `mirror.lan:5000/openbao/openbao:2.1`).
    #[serde(
        default,
        deserialize_with = "value::registry_mirror",
        skip_serializing_if = "Option::is_none"
    )]
    pub registry_mirror: Option<String>,
    /// The version `status` expects to find running.
    #[serde(
        default,
        deserialize_with = "value::version",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
    /// The host whose container engine runs it, instead of the first of `network.*_hosts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<At<String>>,
    /// A container network to join, with `address` on it, instead of the host's network.
    #[serde(
        default,
        deserialize_with = "value::container_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub docker_network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<At<Ipv4Addr>>,
    /// More addresses on that network, by role (`external`, `recursor` for DNS).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub addresses: BTreeMap<String, At<Ipv4Addr>>,
    /// OpenBAO only: a certificate of the user's own, served instead of one issued from
    /// the stack's CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<OwnTls>,
}

/// A certificate the user brings for OpenBAO: the certificate (its chain may follow it in
/// the same PEM), its private key, and the CA that issued it, which every client then pins
/// instead of the stack's CA. `cert` and `key` are files or `${secret:…}` references (the
/// key, a secret, is best a reference), `ca` a file; files by absolute path. A reference
/// resolves from the environment or `~/.foundryvars`: OpenBAO cannot hold the key it needs
/// to start.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnTls {
    pub cert: KeyField,
    pub key: KeyField,
    pub ca: std::path::PathBuf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct K3s {
    /// The K3s release, `v1.28.5+k3s1`.
    #[serde(
        default,
        deserialize_with = "value::k3s_tag",
        skip_serializing_if = "Option::is_none"
    )]
    pub tag: Option<String>,
    /// Where each node gets K3s's binary and install.sh: `path` (the default: uploaded
    /// from `binary` and `installer` on this machine) or `registry` (fetched by each node
    /// from the stack's registry, the artifact `foundry/k3s:<tag>` that `foundry registry
    /// push-k3s` puts there; the nodes' images come through it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<K3sSource>,
    /// The k3s binary on this machine that Foundry uploads to each node's
    /// `/usr/local/bin/k3s` (hosts download nothing: air-gapped servers work).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<At<std::path::PathBuf>>,
    /// K3s's `install.sh` on this machine, uploaded and run with
    /// `INSTALL_K3S_SKIP_DOWNLOAD=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<At<std::path::PathBuf>>,
    /// K3s's packaged components left out (`disable:` in its config.yaml); by default
    /// `traefik` (Contour replaces it) and `servicelb` (kube-vip does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable: Option<Vec<At<String>>>,
    /// More names and addresses the API's certificate carries; the VIP and
    /// `api.<cluster.domain>` always are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_san: Vec<At<String>>,
    /// How many agents join at once (servers join one at a time); 5 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents_at_once: Option<At<u32>>,
    /// How long one node may take to join and be Ready (`10m` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_timeout: Option<Retention>,
}

/// Where the nodes get K3s from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum K3sSource {
    /// Uploaded from this machine over SSH.
    #[default]
    Path,
    /// Fetched by each node from the stack's registry.
    Registry,
}

impl K3s {
    /// What K3s leaves out when the config does not say: traefik and servicelb.
    pub const DEFAULT_DISABLE: [&'static str; 2] = ["traefik", "servicelb"];
    pub const DEFAULT_AGENTS_AT_ONCE: u32 = 5;
    pub const DEFAULT_JOIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

    /// The packaged components left out.
    pub fn disabled(&self) -> Vec<String> {
        match &self.disable {
            Some(list) => list.iter().map(|d| d.value.clone()).collect(),
            None => Self::DEFAULT_DISABLE.map(String::from).to_vec(),
        }
    }

    pub fn agents_at_once(&self) -> u32 {
        self.agents_at_once
            .as_ref()
            .map_or(Self::DEFAULT_AGENTS_AT_ONCE, |n| n.value)
    }

    pub fn join_timeout(&self) -> std::time::Duration {
        self.join_timeout
            .as_ref()
            .map_or(Self::DEFAULT_JOIN_TIMEOUT, Retention::duration)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grafana {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_password: Option<SecretField>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observability {
    #[serde(default, deserialize_with = "null_is_default")]
    pub prometheus: Keep,
    #[serde(default, deserialize_with = "null_is_default")]
    pub loki: Keep,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keep {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truenas: Option<Truenas>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truenas {
    pub api_url: HttpUrl,
    pub api_key: SecretField,
}
