//! Each host's primary interface, asked over SSH: the interface of its default route (the
//! lowest metric), that interface's MAC and first IPv4 address, and the gateway. Read with
//! iproute2's JSON output (`ip -j`), a base package `foundry host configure` installs.

use std::net::Ipv4Addr;
use std::time::Duration;

use foundry_activities::ssh::SshTarget;
use serde::{Deserialize, Serialize};

use crate::config::{HostEntry, StackConfig, TargetError};

/// What one host reported, beside the address the config gives it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostNetwork {
    pub host: String,
    /// The interface of the default route (`eth0`).
    pub interface: Option<String>,
    /// Its hardware address (`02:42:0a:4d:03:0b`), for a DHCP reservation.
    pub mac: Option<String>,
    /// Its IPv4 address now, and the prefix length of its network.
    pub address: Option<Ipv4Addr>,
    pub prefix_len: Option<u8>,
    /// The default route's gateway.
    pub gateway: Option<Ipv4Addr>,
    /// The address the stack config gives the host (`hosts[].address`).
    pub desired_address: String,
    /// Why the host could not be asked, or did not say.
    pub error: Option<String>,
}

impl HostNetwork {
    fn failed(entry: &HostEntry, error: String) -> HostNetwork {
        HostNetwork {
            host: entry.name.clone(),
            interface: None,
            mac: None,
            address: None,
            prefix_len: None,
            gateway: None,
            desired_address: entry.address.clone(),
            error: Some(error),
        }
    }

    /// `10.77.3.11/24`, when the host said.
    pub fn current(&self) -> Option<String> {
        Some(format!("{}/{}", self.address?, self.prefix_len?))
    }
}

/// Every host of `config`, in its order, at most so many at once, each within `timeout`.
/// A host that cannot be asked is a row with its error, never an abort of the others.
pub async fn detect(config: &StackConfig, timeout: Duration) -> Vec<HostNetwork> {
    let found =
        crate::host::each_host(config, move |entry, target| one(entry, target, timeout)).await;
    found
        .into_iter()
        .zip(&config.hosts)
        .map(|(found, entry)| {
            found.unwrap_or_else(|| HostNetwork::failed(entry, "the check stopped".into()))
        })
        .collect()
}

async fn one(
    entry: HostEntry,
    target: Result<SshTarget, TargetError>,
    timeout: Duration,
) -> HostNetwork {
    let target = match target {
        Ok(t) => t,
        Err(e) => return HostNetwork::failed(&entry, e.message),
    };
    match tokio::time::timeout(timeout, ask(&target)).await {
        Ok(Ok(primary)) => HostNetwork {
            interface: Some(primary.interface),
            mac: primary.mac,
            address: primary.address.map(|a| a.0),
            prefix_len: primary.address.map(|a| a.1),
            gateway: primary.gateway,
            error: None,
            ..HostNetwork::failed(&entry, String::new())
        },
        Ok(Err(e)) => HostNetwork::failed(&entry, e),
        Err(_) => HostNetwork::failed(
            &entry,
            format!("{target}: no answer within {}s", timeout.as_secs()),
        ),
    }
}

/// A host's primary interface as iproute2 shows it.
#[derive(Debug, PartialEq, Eq)]
struct Primary {
    interface: String,
    gateway: Option<Ipv4Addr>,
    mac: Option<String>,
    address: Option<(Ipv4Addr, u8)>,
}

async fn ask(target: &SshTarget) -> Result<Primary, String> {
    let routes = super::run_on(target, &["ip", "-j", "-4", "route", "show", "default"])
        .await
        .map_err(|e| hint_iproute(target, e))?;
    let (interface, gateway) = default_route(&routes)?;
    let link = super::run_on(target, &["ip", "-j", "addr", "show", "dev", &interface])
        .await
        .map_err(|e| hint_iproute(target, e))?;
    let (mac, address) = interface_address(&link)?;
    Ok(Primary {
        interface,
        gateway,
        mac,
        address,
    })
}

fn hint_iproute(target: &SshTarget, e: String) -> String {
    if e.contains("is not installed") {
        format!("{target}: {e} (iproute2; `foundry host configure` installs it)")
    } else {
        format!("{target}: {e}")
    }
}

#[derive(Deserialize)]
struct Route {
    #[serde(default)]
    dev: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default)]
    metric: Option<u64>,
}

/// The interface and gateway of the default route with the lowest metric, from
/// `ip -j -4 route show default`.
fn default_route(json: &[u8]) -> Result<(String, Option<Ipv4Addr>), String> {
    let routes: Vec<Route> = serde_json::from_slice(json)
        .map_err(|e| format!("`ip -j route` printed what is not its JSON: {e}"))?;
    let best = routes
        .into_iter()
        .filter(|r| r.dev.is_some())
        .min_by_key(|r| r.metric.unwrap_or(0))
        .ok_or(
            "the host has no IPv4 default route: its primary interface is the one that has it",
        )?;
    let gateway = best.gateway.as_deref().and_then(|g| g.parse().ok());
    Ok((best.dev.unwrap_or_default(), gateway))
}

#[derive(Deserialize)]
struct Link {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    addr_info: Vec<AddrInfo>,
}

#[derive(Deserialize)]
struct AddrInfo {
    #[serde(default)]
    family: Option<String>,
    #[serde(default)]
    local: Option<String>,
    #[serde(default)]
    prefixlen: Option<u8>,
    #[serde(default)]
    secondary: Option<bool>,
}

/// The MAC and first primary IPv4 address (with its prefix length) of the interface, from
/// `ip -j addr show dev X` (with `-4`, iproute2 leaves the MAC out).
#[allow(clippy::type_complexity)]
fn interface_address(json: &[u8]) -> Result<(Option<String>, Option<(Ipv4Addr, u8)>), String> {
    let links: Vec<Link> = serde_json::from_slice(json)
        .map_err(|e| format!("`ip -j addr` printed what is not its JSON: {e}"))?;
    let link = links
        .into_iter()
        .next()
        .ok_or("the interface of the default route is gone")?;
    let address = link
        .addr_info
        .iter()
        .filter(|a| a.family.as_deref() == Some("inet") && a.secondary != Some(true))
        .find_map(|a| Some((a.local.as_deref()?.parse().ok()?, a.prefixlen?)));
    let mac = link
        .address
        .filter(|m| m.len() == 17 && m.split(':').all(|b| b.len() == 2));
    Ok((mac, address))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_route_with_the_lowest_metric() {
        let json = br#"[{"dst":"default","gateway":"192.168.1.254","dev":"wlan0","metric":600},
            {"dst":"default","gateway":"192.168.1.1","dev":"eth0","protocol":"dhcp","metric":100}]"#;
        assert_eq!(
            default_route(json),
            Ok(("eth0".into(), Some(Ipv4Addr::new(192, 168, 1, 1))))
        );
        let docker = br#"[{"dst":"default","gateway":"10.77.3.1","dev":"eth0","flags":[]}]"#;
        assert_eq!(
            default_route(docker),
            Ok(("eth0".into(), Some(Ipv4Addr::new(10, 77, 3, 1))))
        );
        assert!(default_route(b"[]").is_err_and(|e| e.contains("no IPv4 default route")));
        assert!(default_route(b"Usage: ip").is_err());
    }

    #[test]
    fn the_mac_and_the_first_primary_address() {
        let json = br#"[{"ifindex":2,"ifname":"eth0","link_type":"ether","address":"02:42:0a:4d:03:0b",
            "addr_info":[{"family":"inet","local":"10.77.3.99","prefixlen":24,"secondary":true},
                         {"family":"inet","local":"10.77.3.11","prefixlen":24,"scope":"global"}]}]"#;
        assert_eq!(
            interface_address(json),
            Ok((
                Some("02:42:0a:4d:03:0b".into()),
                Some((Ipv4Addr::new(10, 77, 3, 11), 24))
            ))
        );
        let bare = br#"[{"ifname":"tun0","addr_info":[]}]"#;
        assert_eq!(interface_address(bare), Ok((None, None)));
        assert!(interface_address(b"[]").is_err());
    }
}
