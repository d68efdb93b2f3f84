//! The checks that compare fields: names used twice, hosts referred to but not declared,
//! addresses outside the network. Each error names the field and, where the value came
//! from the file, its line and column.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::value::{At, Cidr};
use super::{HostEntry, NodeRole, StackConfig, Zone, check_host_name};

pub(super) fn stack(config: &StackConfig) -> Result<(), String> {
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
            .map(|z| ("dns.infrastructure_zones", z))
            .chain(
                dns.kubernetes_zones
                    .iter()
                    .map(|z| ("dns.kubernetes_zones", z)),
            );
        for (list, zone) in zones {
            self::zone(list, zone)?;
            if !seen.insert(zone.name.canonical()) {
                return Err(format!(
                    "{}{list}: the zone `{}` is declared twice",
                    zone.name.place(),
                    *zone.name
                ));
            }
        }
    }
    if let Some(cluster) = &config.cluster {
        for (i, node) in cluster.nodes.iter().enumerate() {
            host_of(
                config,
                &format!("cluster.nodes[{i}].hostname"),
                &node.hostname,
            )?;
        }
        if !cluster.nodes.is_empty()
            && !cluster
                .nodes
                .iter()
                .any(|n| n.role == NodeRole::ControlPlane)
        {
            return Err(
                "cluster.nodes: no node has the role control-plane; a cluster needs at least one"
                    .into(),
            );
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
            ));
        }
        if let (Some(vip), Some(subnet)) = (&cluster.k8s_vip, subnet) {
            inside(subnet, "cluster.k8s_vip", vip)?;
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
            if service.image.is_some() && service.image_tag.is_some() {
                return Err(format!(
                    "components.{name}: give `image` (a whole image name) or `image_tag` (the default image's tag), not both"
                ));
            }
        }
    }
    Ok(())
}

fn hosts(config: &StackConfig) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for (i, host) in config.hosts.iter().enumerate() {
        check_host_name(&host.name).map_err(|e| format!("hosts[{i}]: {e}"))?;
        if !names.insert(host.name.as_str()) {
            return Err(format!(
                "hosts[{i}]: the name `{}` is used twice",
                host.name
            ));
        }
        super::value::check_address(&host.address)
            .map_err(|e| format!("hosts[{i}] ({}): {e}", host.name))?;
        if let Some(key) = &host.host_key {
            super::value::check_host_key(key)
                .map_err(|e| format!("hosts[{i}] ({}): {e}", host.name))?;
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
        if let Some(host) = config
            .hosts
            .iter()
            .find(|h| h.address == vip.value.to_string())
        {
            return Err(format!(
                "{}network.k8s_vip {} is host `{}`'s address: the VIP must be unused",
                vip.place(),
                vip.value,
                host.name
            ));
        }
    }
    for (list, entries) in [
        ("openbao_hosts", &network.openbao_hosts),
        ("dns_hosts", &network.dns_hosts),
        ("zot_hosts", &network.zot_hosts),
        ("truenas_hosts", &network.truenas_hosts),
    ] {
        for (i, entry) in entries.iter().enumerate() {
            host_of(config, &format!("network.{list}[{i}]"), entry)?;
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

fn zone(list: &str, zone: &Zone) -> Result<(), String> {
    let at = zone.name.place();
    let name = &*zone.name;
    if zone.public && name.is_local() {
        return Err(format!(
            "{at}{list}: `{name}` is a .local zone, which stays private: it cannot be public"
        ));
    }
    if zone.public && zone.public_cname.is_none() {
        return Err(format!(
            "{at}{list}: the public zone `{name}` needs `public_cname`, the name outside clients are sent to"
        ));
    }
    if !zone.public && zone.public_cname.is_some() {
        return Err(format!(
            "{at}{list}: `{name}` has a public_cname but is not public: add `public: true` or drop it"
        ));
    }
    let mut seen = BTreeSet::new();
    for record in &zone.records {
        let valid_name = record.name == "@"
            || record.name.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
            });
        if !valid_name {
            return Err(format!(
                "{at}{list}: record `{}` in `{name}` is not a name relative to the zone (or `@`)",
                record.name
            ));
        }
        if record.kind == super::RecordType::A && record.value.parse::<Ipv4Addr>().is_err() {
            return Err(format!(
                "{at}{list}: record `{}` in `{name}` is type A, but `{}` is not an IPv4 address",
                record.name, record.value
            ));
        }
        if !seen.insert((
            record.name.to_ascii_lowercase(),
            record.kind as u8,
            record.value.clone(),
        )) {
            return Err(format!(
                "{at}{list}: record `{} {:?} {}` in `{name}` is given twice",
                record.name, record.kind, record.value
            ));
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
