//! The checks that compare fields: names used twice, hosts referred to but not declared,
//! addresses outside the network. Each error names the field and, where the value came
//! from the file, its line and column: from the value itself (`At<T>`), or found in the
//! text by the field's path ([`Invalid::placed`]).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use std::str::FromStr;

use super::place::{self, Seg, field_path};
use super::value::{
    At, Cidr, DnsName, MAX_STRING, check_container_name, check_image, check_k3s_tag, check_tag,
    check_version,
};
use super::{HostEntry, NodeRole, StackConfig, Zone, check_host_name};

/// A check of one field's format.
type Check = fn(&str) -> Result<(), String>;

/// What a check refuses: the message, and the path of the value it is about when the
/// message does not say where that value stands.
#[derive(Debug)]
pub(super) struct Invalid {
    pub at: Vec<Seg>,
    pub message: String,
}

impl From<String> for Invalid {
    fn from(message: String) -> Invalid {
        Invalid {
            at: Vec::new(),
            message,
        }
    }
}

impl Invalid {
    /// The message, after the line and column of the value in `text` when it has a path
    /// and the text holds it.
    pub fn placed(self, text: &str) -> String {
        match place::locate(text, &self.at).filter(|_| !self.at.is_empty()) {
            Some((line, column)) => format!("line {line} column {column}: {}", self.message),
            None => self.message,
        }
    }
}

/// Turns a message into an [`Invalid`] about the value at `at`.
fn at(at: Vec<Seg>) -> impl FnOnce(String) -> Invalid {
    move |message| Invalid { at, message }
}

pub(super) fn stack(config: &StackConfig) -> Result<(), Invalid> {
    let tree = serde_json::to_value(config).map_err(|e| e.to_string())?;
    bounded(&mut Vec::new(), &tree)?;
    hosts(config)?;
    let subnet = match &config.network {
        Some(network) => Some(self::network(config, network)?),
        None => None,
    };
    if let Some(dns) = &config.dns {
        let mut seen = BTreeSet::new();
        let zones = dns
            .infrastructure_zones
            .iter()
            .enumerate()
            .map(|(i, z)| ("dns.infrastructure_zones", i, z))
            .chain(
                dns.kubernetes_zones
                    .iter()
                    .enumerate()
                    .map(|(i, z)| ("dns.kubernetes_zones", i, z)),
            );
        for (list, index, zone) in zones {
            self::zone(list, index, zone)?;
            if !seen.insert(zone.name.canonical()) {
                return Err(format!(
                    "{}{list}: the zone `{}` is declared twice",
                    zone.name.place(),
                    *zone.name
                )
                .into());
            }
        }
    }
    if let Some(cluster) = &config.cluster {
        DnsName::from_str(&cluster.name)
            .ok()
            .filter(|_| !cluster.name.contains('.'))
            .ok_or_else(|| {
                format!(
                    "cluster.name `{}` is not one DNS label: up to 63 letters, digits and `-`",
                    super::value::shown(&cluster.name)
                )
            })
            .map_err(at(field_path!["cluster", "name"]))?;
        let mut seen = BTreeSet::new();
        for (i, node) in cluster.nodes.iter().enumerate() {
            let field = format!("cluster.nodes[{i}].hostname");
            let host = host_of(config, &field, &node.hostname)?;
            once(&mut seen, host, &field, &node.hostname)?;
        }
        if !cluster.nodes.is_empty()
            && !cluster
                .nodes
                .iter()
                .any(|n| n.role == NodeRole::ControlPlane)
        {
            return Err(at(field_path!["cluster", "nodes"])(
                "cluster.nodes: no node has the role control-plane; a cluster needs at least one"
                    .into(),
            ));
        }
        let network_vip = config.network.as_ref().and_then(|n| n.k8s_vip.as_ref());
        if let (Some(vip), Some(other)) = (&cluster.k8s_vip, network_vip)
            && vip.value != other.value
        {
            return Err(format!(
                "{}cluster.k8s_vip {} differs from network.k8s_vip {} ({}): give one, or the same",
                vip.place(),
                vip.value,
                other.value,
                other.place().trim_end_matches(": ")
            )
            .into());
        }
        if let (Some(vip), Some(subnet)) = (&cluster.k8s_vip, subnet) {
            inside(subnet, "cluster.k8s_vip", vip)?;
        }
        if let Some(vip) = &cluster.k8s_vip {
            unused(config, "cluster.k8s_vip", vip)?;
        }
    }
    if let Some(components) = &config.components {
        for (name, service) in [
            ("openbao", &components.openbao),
            ("dns", &components.dns),
            ("zot", &components.zot),
        ] {
            if let Some(host) = &service.host {
                host_of(config, &format!("components.{name}.host"), host)?;
            }
            let checks: [(&str, &Option<String>, Check); 5] = [
                ("name", &service.name, check_container_name),
                ("image", &service.image, check_image),
                ("image_tag", &service.image_tag, check_tag),
                ("version", &service.version, check_version),
                (
                    "docker_network",
                    &service.docker_network,
                    check_container_name,
                ),
            ];
            for (field, value, check) in checks {
                if let Some(value) = value {
                    check(value)
                        .map_err(|e| format!("components.{name}.{field}: {e}"))
                        .map_err(at(field_path!["components", name, field]))?;
                }
            }
            if let Some(tls) = &service.tls {
                own_tls(name, tls)?;
            }
            if service.image_source == Some(foundry_activities::container::ImageSource::Load)
                && service.registry_mirror.is_some()
            {
                return Err(at(field_path!["components", name, "registry_mirror"])(
                    format!(
                        "components.{name}: a registry mirror is where the host's engine pulls from, and `image_source: load` pulls nothing: drop one of them"
                    ),
                ));
            }
            if service.image.is_some() && service.image_tag.is_some() {
                return Err(at(field_path!["components", name, "image"])(format!(
                    "components.{name}: give `image` (a whole image name) or `image_tag` (the default image's tag), not both"
                )));
            }
        }
    }
    if let Some(components) = &config.components {
        k3s(&components.k3s)?;
        for (name, file) in [
            ("contour", &components.contour.chart_file),
            ("cert_manager", &components.cert_manager.chart_file),
        ] {
            absolute(&format!("components.{name}.chart_file"), file.as_ref())?;
        }
    }
    Ok(())
}

/// A file on this machine, given by its whole path.
fn absolute(
    field: &str,
    path: Option<&super::value::At<std::path::PathBuf>>,
) -> Result<(), Invalid> {
    match path {
        Some(path) if !path.is_absolute() => Err(format!(
            "{}{field} `{}` is not an absolute path\nhint: give the file on this machine by its whole path",
            path.place(),
            super::value::shown(&path.display().to_string())
        )
        .into()),
        _ => Ok(()),
    }
}

/// `components.k3s`: every value here ends up in a node's config.yaml or an upload.
fn k3s(k3s: &super::schema::K3s) -> Result<(), Invalid> {
    if let Some(tag) = &k3s.tag {
        check_k3s_tag(tag)
            .map_err(|e| format!("components.k3s.tag: {e}"))
            .map_err(at(field_path!["components", "k3s", "tag"]))?;
    }
    for (field, path) in [("binary", &k3s.binary), ("installer", &k3s.installer)] {
        absolute(&format!("components.k3s.{field}"), path.as_ref())?;
    }
    for (i, name) in k3s.disable.iter().flatten().enumerate() {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(format!(
                "{}components.k3s.disable[{i}] `{}` is not a K3s component name like traefik or servicelb",
                name.place(),
                super::value::shown(name)
            )
            .into());
        }
    }
    for (i, name) in k3s.tls_san.iter().enumerate() {
        super::value::check_address(name)
            .map_err(|e| format!("{}components.k3s.tls_san[{i}]: {e}", name.place()))?;
    }
    if let Some(n) = &k3s.agents_at_once
        && n.value == 0
    {
        return Err(format!(
            "{}components.k3s.agents_at_once is 0: at least one agent must be able to join",
            n.place()
        )
        .into());
    }
    Ok(())
}

/// A certificate of the user's own: OpenBAO's only (the other services are reached
/// through SSH), its files by absolute path.
fn own_tls(component: &str, tls: &super::OwnTls) -> Result<(), Invalid> {
    if component != "openbao" {
        return Err(at(field_path!["components", component, "tls"])(format!(
            "components.{component}.tls: only OpenBAO serves a certificate of yours; {component} is reached through the SSH connection to its host"
        )));
    }
    let files = [
        ("cert", tls.cert.file()),
        ("key", tls.key.file()),
        ("ca", Some(tls.ca.as_path())),
    ];
    for (field, file) in files {
        if let Some(file) = file.filter(|f| !f.is_absolute()) {
            return Err(at(field_path!["components", component, "tls", field])(
                format!(
                    "components.{component}.tls.{field}: `{}` is a relative path: give an absolute one, since Foundry may run from anywhere",
                    super::value::shown(&file.display().to_string())
                ),
            ));
        }
    }
    Ok(())
}

/// Every string of the config (a value or a key) holds at most [`MAX_STRING`] bytes.
/// `at` is the path to `value`.
fn bounded(at: &mut Vec<Seg>, value: &serde_json::Value) -> Result<(), Invalid> {
    let too_long = |at: &[Seg], len: usize, last: Option<String>| {
        let mut shown = String::new();
        for seg in at {
            match seg {
                Seg::Key(key) => shown.push_str(&format!(".{key}")),
                Seg::Index(i) => shown.push_str(&format!("[{i}]")),
            }
        }
        if let Some(key) = last {
            shown.push_str(&format!(".{key}…"));
        }
        Err(Invalid {
            at: at.to_vec(),
            message: format!(
                "{}: {len} bytes, more than the {MAX_STRING} a config string may hold",
                shown.trim_start_matches('.')
            ),
        })
    };
    match value {
        serde_json::Value::String(text) if text.len() > MAX_STRING => {
            too_long(at, text.len(), None)
        }
        serde_json::Value::Array(items) => items.iter().enumerate().try_for_each(|(i, item)| {
            at.push(Seg::Index(i));
            let checked = bounded(at, item);
            at.pop();
            checked
        }),
        serde_json::Value::Object(fields) => fields.iter().try_for_each(|(key, item)| {
            if key.len() > MAX_STRING {
                return too_long(at, key.len(), Some(super::value::shown(key)));
            }
            at.push(Seg::Key(key.clone()));
            let checked = bounded(at, item);
            at.pop();
            checked
        }),
        _ => Ok(()),
    }
}

/// A user name as `useradd` takes it: `[a-z_][a-z0-9_-]*`, at most 32 bytes.
fn check_user(user: &str) -> Result<(), String> {
    let valid = user.len() <= 32
        && user
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "user `{}` is not a user name: up to 32 lower-case letters, digits, `_` and `-`, starting with a letter or `_`",
            super::value::shown(user)
        ))
    }
}

/// Records that `field` names `host`; a second mention of the same host is an error.
fn once<'a>(
    seen: &mut BTreeSet<&'a str>,
    host: &'a HostEntry,
    field: &str,
    entry: &At<String>,
) -> Result<(), String> {
    if seen.insert(host.name.as_str()) {
        Ok(())
    } else {
        Err(format!(
            "{}{field}: `{}` is host `{}`, which this list names already",
            entry.place(),
            entry.value,
            host.name
        ))
    }
}

/// The VIP is no address in use: not the gateway, a host's or a service's.
fn unused(config: &StackConfig, field: &str, vip: &At<Ipv4Addr>) -> Result<(), String> {
    match taken_by(config, vip.value) {
        Some(what) => Err(format!(
            "{}{field} {} is {what}: the VIP must be an unused address",
            vip.place(),
            vip.value
        )),
        None => Ok(()),
    }
}

/// What the config gives `address` to already: the gateway, a host (`host `x`'s
/// address`) or a service (`components.dns.addresses.external`); none when nothing.
pub(crate) fn taken_by(config: &StackConfig, address: Ipv4Addr) -> Option<String> {
    if let Some(network) = &config.network
        && network.gateway.value == address
    {
        return Some("the gateway's address".into());
    }
    if let Some(host) = config
        .hosts
        .iter()
        .find(|h| h.address == address.to_string())
    {
        return Some(format!("host `{}`'s address", host.name));
    }
    service_addresses(config)
        .into_iter()
        .find(|(_, a)| *a == address)
        .map(|(what, _)| what)
}

/// Every address the config gives a service, with its field (`components.dns.address`).
pub(crate) fn service_addresses(config: &StackConfig) -> Vec<(String, Ipv4Addr)> {
    let Some(components) = &config.components else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for (name, service) in [
        ("openbao", &components.openbao),
        ("dns", &components.dns),
        ("zot", &components.zot),
    ] {
        let addresses = service
            .address
            .iter()
            .map(|a| ("address".to_string(), a))
            .chain(
                service
                    .addresses
                    .iter()
                    .map(|(role, a)| (format!("addresses.{role}"), a)),
            );
        for (what, address) in addresses {
            found.push((format!("components.{name}.{what}"), address.value));
        }
    }
    found
}

fn hosts(config: &StackConfig) -> Result<(), Invalid> {
    let mut names = BTreeSet::new();
    for (i, host) in config.hosts.iter().enumerate() {
        check_host_name(&host.name)
            .map_err(|e| format!("hosts[{i}]: {e}"))
            .map_err(at(field_path!["hosts", i, "name"]))?;
        if !names.insert(host.name.as_str()) {
            return Err(at(field_path!["hosts", i, "name"])(format!(
                "hosts[{i}]: the name `{}` is used twice",
                host.name
            )));
        }
        let of = |e: String| format!("hosts[{i}] ({}): {e}", host.name);
        super::value::check_address(&host.address)
            .map_err(of)
            .map_err(at(field_path!["hosts", i, "address"]))?;
        check_user(&host.user)
            .map_err(of)
            .map_err(at(field_path!["hosts", i, "user"]))?;
        if let Some(key) = &host.host_key {
            super::value::check_host_key(key)
                .map_err(of)
                .map_err(at(field_path!["hosts", i, "host_key"]))?;
        }
    }
    Ok(())
}

/// Checks the network and returns its subnet.
fn network(config: &StackConfig, network: &super::Network) -> Result<Cidr, String> {
    let gateway = &network.gateway;
    let subnet = match (&network.subnet, &network.netmask) {
        (Some(subnet), None) => subnet.value,
        (None, Some(mask)) => Cidr::from_netmask(gateway.value, mask.value)
            .map_err(|e| format!("{}network.netmask: {e}", mask.place()))?,
        (Some(subnet), Some(mask)) => {
            let from_mask = Cidr::from_netmask(gateway.value, mask.value)
                .map_err(|e| format!("{}network.netmask: {e}", mask.place()))?;
            if from_mask != subnet.value {
                return Err(format!(
                    "{}network.netmask {} says {from_mask}, but network.subnet is {}: give one of them",
                    mask.place(),
                    mask.value,
                    subnet.value
                ));
            }
            subnet.value
        }
        (None, None) => {
            return Err(format!(
                "{}network: give `subnet` (like 192.168.1.0/24) or `netmask`",
                gateway.place()
            ));
        }
    };
    inside(subnet, "network.gateway", gateway)?;
    if let Some(range) = &network.dhcp_range {
        inside(subnet, "network.dhcp_range.start", &range.start)?;
        inside(subnet, "network.dhcp_range.end", &range.end)?;
        if u32::from(range.start.value) > u32::from(range.end.value) {
            return Err(format!(
                "{}network.dhcp_range: start {} comes after end {}",
                range.start.place(),
                range.start.value,
                range.end.value
            ));
        }
        let in_range = |a: Ipv4Addr| {
            (u32::from(range.start.value)..=u32::from(range.end.value)).contains(&u32::from(a))
        };
        if let Some(vip) = &network.k8s_vip
            && in_range(vip.value)
        {
            return Err(format!(
                "{}network.k8s_vip {} lies in the DHCP range {}-{}: a DHCP client could take it",
                vip.place(),
                vip.value,
                range.start.value,
                range.end.value
            ));
        }
    }
    if let Some(vip) = &network.k8s_vip {
        inside(subnet, "network.k8s_vip", vip)?;
        unused(config, "network.k8s_vip", vip)?;
    }
    for (list, entries) in [
        ("openbao_hosts", &network.openbao_hosts),
        ("dns_hosts", &network.dns_hosts),
        ("zot_hosts", &network.zot_hosts),
        ("truenas_hosts", &network.truenas_hosts),
    ] {
        let mut seen = BTreeSet::new();
        for (i, entry) in entries.iter().enumerate() {
            let field = format!("network.{list}[{i}]");
            let host = host_of(config, &field, entry)?;
            once(&mut seen, host, &field, entry)?;
        }
    }
    Ok(subnet)
}

fn inside(subnet: Cidr, field: &str, addr: &At<Ipv4Addr>) -> Result<(), String> {
    if subnet.contains(addr.value) {
        Ok(())
    } else {
        Err(format!(
            "{}{field} {} is outside the network {subnet}",
            addr.place(),
            addr.value
        ))
    }
}

fn zone(list: &str, index: usize, zone: &Zone) -> Result<(), Invalid> {
    let at_zone = zone.name.place();
    let name = &*zone.name;
    if zone.public && name.is_local() {
        return Err(format!(
            "{at_zone}{list}: `{name}` is a .local zone, which stays private: it cannot be public"
        )
        .into());
    }
    if zone.public && zone.public_cname.is_none() {
        return Err(format!(
            "{at_zone}{list}: the public zone `{name}` needs `public_cname`, the name outside clients are sent to"
        ).into());
    }
    if !zone.public && zone.public_cname.is_some() {
        return Err(format!(
            "{at_zone}{list}: `{name}` has a public_cname but is not public: add `public: true` or drop it"
        ).into());
    }
    let (section, field) = list.split_once('.').unwrap_or((list, ""));
    let mut seen = BTreeSet::new();
    for (i, record) in zone.records.iter().enumerate() {
        let record_at = |key: &str| field_path![section, field, index, "records", i, key];
        let valid_name = record.name == "@"
            || (record.name.len() <= 253
                && record.name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
                }));
        if !valid_name {
            return Err(at(record_at("name"))(format!(
                "{list}[{index}].records[{i}]: record `{}` in `{name}` is not a name relative to the zone (or `@`): labels of at most 63 bytes, 253 in all",
                super::value::shown(&record.name)
            )));
        }
        if record.kind == super::RecordType::A && record.value.parse::<Ipv4Addr>().is_err() {
            return Err(at(record_at("value"))(format!(
                "{list}[{index}].records[{i}]: record `{}` in `{name}` is type A, but `{}` is not an IPv4 address",
                record.name,
                super::value::shown(&record.value)
            )));
        }
        if !seen.insert((
            record.name.to_ascii_lowercase(),
            record.kind as u8,
            record.value.clone(),
        )) {
            return Err(at(record_at("name"))(format!(
                "{list}[{index}].records[{i}]: record `{} {:?} {}` in `{name}` is given twice",
                record.name,
                record.kind,
                super::value::shown(&record.value)
            )));
        }
    }
    Ok(())
}

/// The host an entry names, by name or address.
pub(super) fn host_of<'a>(
    config: &'a StackConfig,
    field: &str,
    entry: &At<String>,
) -> Result<&'a HostEntry, String> {
    config.host_named_or_at(&entry.value).ok_or_else(|| {
        let known = if config.hosts.is_empty() {
            "there are no hosts under `hosts:` yet (add them with `foundry host add`)".to_string()
        } else {
            format!(
                "the hosts are {}",
                config
                    .hosts
                    .iter()
                    .map(|h| format!("{} ({})", h.name, h.address))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        format!(
            "{}{field}: `{}` is no host's name or address: {known}",
            entry.place(),
            entry.value
        )
    })
}
