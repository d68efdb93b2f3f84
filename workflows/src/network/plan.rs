//! The config's `network:` section proposed from what the hosts report: the gateway and
//! subnet most of them are on, a DHCP range that holds no static address, a VIP outside it
//! that nothing uses (probed from a host), and the infrastructure hosts. What the config
//! says already is kept wherever it still holds, so planning twice changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{HostNetwork, NetworkError};
use crate::config::{self, At, Cidr, DhcpRange, Network, StackConfig};

/// The proposed section, what it changes in the config, and why it is so.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Proposal {
    pub network: Network,
    pub changes: Vec<FieldChange>,
    pub notes: Vec<String>,
}

/// One field of `network:` the proposal sets to another value than the config's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

impl Proposal {
    /// The section as it would stand in the config.
    pub fn yaml(&self) -> Result<String, NetworkError> {
        #[derive(Serialize)]
        struct Section<'a> {
            network: &'a Network,
        }
        serde_saphyr::to_string(&Section {
            network: &self.network,
        })
        .map_err(|e| NetworkError::new(format!("rendering the network section: {e}")))
    }
}

/// How many VIPs are tried when the probe finds the proposed one in use.
const VIP_TRIES: usize = 8;

/// What a plan keeps of the config's own section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Keep {
    /// Each value that still holds (`network plan`): a DHCP range holding a static
    /// address, or a VIP something answers at, is planned anew.
    WhatHolds,
    /// Every value it sets, as it is (setup plans only what is missing, around what is
    /// there; validation then names what does not hold).
    Set,
}

/// The proposal for `config` from what its hosts reported (`detected`). The VIP is probed
/// from the first host that answered; one in use is replaced by the next free address.
pub async fn plan(
    config: &StackConfig,
    detected: &[HostNetwork],
) -> Result<Proposal, NetworkError> {
    plan_keeping(config, detected, Keep::WhatHolds).await
}

/// As [`plan`], keeping what `keep` says of the config's section. A VIP the config sets
/// and `Keep::Set` keeps is not probed here.
pub(super) async fn plan_keeping(
    config: &StackConfig,
    detected: &[HostNetwork],
    keep: Keep,
) -> Result<Proposal, NetworkError> {
    let vip_set = config.network.as_ref().is_some_and(|n| n.k8s_vip.is_some());
    if keep == Keep::Set && vip_set {
        return propose(config, detected, &BTreeMap::new(), keep);
    }
    let prober = detected.iter().filter(|d| d.error.is_none()).find_map(|d| {
        let entry = config.host(&d.host)?;
        Some((d.host.clone(), config.ssh_target(entry).ok()?))
    });
    let mut busy = BTreeMap::new();
    for _ in 0..VIP_TRIES {
        let mut proposal = propose(config, detected, &busy, keep)?;
        let Some(vip) = proposal.network.k8s_vip.as_ref().map(|v| v.value) else {
            return Ok(proposal);
        };
        let Some((host, target)) = &prober else {
            proposal
                .notes
                .push(format!("the VIP {vip} was not probed: no host answered"));
            return Ok(proposal);
        };
        match super::probe::answers(host, target, vip).await {
            Ok(None) => {
                proposal.notes.push(format!(
                    "nothing answers at the VIP {vip} (probed from {host})"
                ));
                return Ok(proposal);
            }
            Ok(Some(said)) => {
                busy.insert(vip, said);
            }
            Err(e) => {
                proposal
                    .notes
                    .push(format!("the VIP {vip} could not be probed: {e}"));
                return Ok(proposal);
            }
        }
    }
    Err(NetworkError::new(format!(
        "{VIP_TRIES} addresses in a row answered when probed for the VIP: {}",
        busy.values().cloned().collect::<Vec<_>>().join("; ")
    ))
    .hint("set network.k8s_vip to a free address yourself"))
}

/// Writes the proposal's section into the config at `path`, the rest of the file as it
/// was; whether its layout and comments were kept (else it was written out whole).
pub fn write(path: &Path, proposal: &Proposal) -> Result<bool, NetworkError> {
    write_network(
        path,
        &proposal.network,
        "Foundry's stack config; `foundry network plan --write` wrote its network section.",
    )
}

/// Writes `network` as the config's `network:` section at `path`, the rest of the file as
/// it was; whether its layout and comments were kept (else it was written out whole, with
/// `comment` on top).
pub(super) fn write_network(
    path: &Path,
    network: &Network,
    comment: &str,
) -> Result<bool, NetworkError> {
    let text = config::read_text(path)?;
    let (mut stack, _) = config::parse_unchecked(path, &text)?;
    stack.network = Some(network.clone());
    Ok(config::write_section(
        path, &text, &stack, "network", comment,
    )?)
}

/// The hosts' consensus: the gateway most of them route through, and the network most of
/// those are on.
fn consensus(detected: &[HostNetwork]) -> Result<(Ipv4Addr, Cidr, String), NetworkError> {
    let reported: Vec<(&HostNetwork, Ipv4Addr, u8, Ipv4Addr)> = detected
        .iter()
        .filter_map(|d| Some((d, d.address?, d.prefix_len?, d.gateway?)))
        .collect();
    if reported.is_empty() {
        return Err(NetworkError::new(
            "no host reported its address and default gateway: nothing to plan from",
        )
        .hint("`foundry network detect-macs` shows what each host answers"));
    }
    let none = || NetworkError::new("the hosts reported no network to plan from");
    let gateway = most_common(reported.iter().map(|r| r.3)).ok_or_else(none)?;
    let subnets: Vec<Cidr> = reported
        .iter()
        .filter(|r| r.3 == gateway)
        .map(|r| network_of(r.1, r.2))
        .collect::<Result<_, _>>()?;
    let subnet = most_common(subnets.iter().copied()).ok_or_else(none)?;
    if !subnet.contains(gateway) {
        return Err(NetworkError::new(format!(
            "the hosts route through {gateway}, which lies outside their network {subnet}"
        )));
    }
    let on = reported
        .iter()
        .filter(|r| r.3 == gateway && network_of(r.1, r.2).ok() == Some(subnet))
        .count();
    let note = format!(
        "{on} of {} hosts report the gateway {gateway} on {subnet}",
        detected.len()
    );
    Ok((gateway, subnet, note))
}

/// The value seen most often; the first seen among equals. None when there is none.
fn most_common<T: PartialEq + Copy>(values: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for v in values {
        match counts.iter_mut().find(|(seen, _)| *seen == v) {
            Some((_, n)) => *n += 1,
            None => counts.push((v, 1)),
        }
    }
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(v, _)| v)
}

fn network_of(address: Ipv4Addr, prefix_len: u8) -> Result<Cidr, NetworkError> {
    let net = ipnet::Ipv4Net::new(address, prefix_len)
        .map_err(|e| NetworkError::new(format!("{address}/{prefix_len}: {e}")))?;
    net.trunc().to_string().parse().map_err(NetworkError::new)
}

/// The section for `config` from `detected`, no address of `busy` (found in use, and by
/// what) given out, the config's own values kept as `keep` says.
pub(super) fn propose(
    config: &StackConfig,
    detected: &[HostNetwork],
    busy: &BTreeMap<Ipv4Addr, String>,
    keep: Keep,
) -> Result<Proposal, NetworkError> {
    let kept = |holds: bool| keep == Keep::Set || holds;
    let (gateway, subnet, mut notes) = consensus(detected).map(|(g, s, n)| (g, s, vec![n]))?;
    for d in detected {
        if let Some(e) = &d.error {
            notes.push(format!("{} was not asked: {e}", d.host));
        }
    }
    let old = config.network.as_ref();
    if subnet.prefix_len() > 29 {
        return Err(NetworkError::new(format!(
            "the hosts' network {subnet} is too small for a DHCP range and a VIP"
        )));
    }
    let first = u32::from(subnet.network()) + 1;
    let last = u32::from(subnet.network()) + (u32::MAX >> subnet.prefix_len()) - 1;
    // Every address something has: the gateway, the hosts (as the config gives them and as
    // they are now), the services, and what the probe found.
    let mut statics: BTreeSet<u32> = BTreeSet::from([u32::from(gateway)]);
    statics.extend(
        config
            .hosts
            .iter()
            .filter_map(|h| h.address.parse::<Ipv4Addr>().ok())
            .chain(detected.iter().filter_map(|d| d.address))
            .chain(config::service_addresses(config).into_iter().map(|s| s.1))
            .chain(busy.keys().copied())
            .filter(|a| subnet.contains(*a))
            .map(u32::from),
    );
    let free_vip = |vip: Ipv4Addr| {
        subnet.contains(vip)
            && !statics.contains(&u32::from(vip))
            && config::taken_by(config, vip).is_none()
    };
    let kept_vip = old
        .and_then(|n| n.k8s_vip.as_ref())
        .map(|v| v.value)
        .filter(|v| kept(free_vip(*v)));
    let mut taken = statics.clone();
    taken.extend(kept_vip.map(u32::from));

    let holds_static = |start: u32, end: u32| taken.range(start..=end).next().is_some();
    let kept_range = old.and_then(|n| n.dhcp_range.as_ref()).filter(|r| {
        let (start, end) = (u32::from(r.start.value), u32::from(r.end.value));
        kept(
            subnet.contains(r.start.value)
                && subnet.contains(r.end.value)
                && start <= end
                && !holds_static(start, end),
        )
    });
    let (start, end) = match kept_range {
        Some(r) => {
            notes.push(
                match keep {
                    Keep::WhatHolds => "the DHCP range is the config's: it holds no static address",
                    Keep::Set => "the DHCP range is the config's",
                }
                .into(),
            );
            (u32::from(r.start.value), u32::from(r.end.value))
        }
        None => {
            let (run_start, run_end) = longest_free_run(first, last, &taken).ok_or_else(|| {
                NetworkError::new(format!(
                    "every address of {subnet} is taken: no room for a DHCP range"
                ))
            })?;
            let len = run_end - run_start + 1;
            if len < 4 {
                return Err(NetworkError::new(format!(
                    "{subnet} has no 4 free addresses in a row for a DHCP range"
                )));
            }
            let start = run_start + len / 2;
            notes.push(format!(
                "the DHCP range is the upper half of the longest run of addresses nothing uses ({}-{})",
                Ipv4Addr::from(run_start),
                Ipv4Addr::from(run_end)
            ));
            (start, run_end)
        }
    };
    let outside = |a: u32| !(start..=end).contains(&a);
    let vip = match kept_vip.filter(|v| kept(outside(u32::from(*v)))) {
        Some(vip) => {
            notes.push(format!("the VIP {vip} is the config's"));
            vip
        }
        None => {
            let below = (first..start).rev().find(|a| !taken.contains(a));
            let above = (end.saturating_add(1)..=last).find(|a| !taken.contains(a));
            let vip = below.or(above).map(Ipv4Addr::from).ok_or_else(|| {
                NetworkError::new(format!(
                    "no address of {subnet} outside the DHCP range is free for the VIP"
                ))
            })?;
            notes.push(format!(
                "the VIP {vip} is the free address nearest below the DHCP range"
            ));
            vip
        }
    };
    for (address, what) in busy {
        notes.push(format!("{address} is in use ({what})"));
    }
    let first_host = config.hosts.first().map(|h| At::new(h.name.clone()));
    let hosts_of = |list: Option<&Vec<At<String>>>| match list.filter(|l| !l.is_empty()) {
        Some(kept) => kept.clone(),
        None => first_host.iter().cloned().collect(),
    };
    let netmask = old
        .and_then(|n| n.netmask.clone())
        .filter(|m| Cidr::from_netmask(gateway, m.value).ok() == Some(subnet));
    let network = Network {
        subnet: Some(At::new(subnet)),
        netmask,
        gateway: At::new(gateway),
        dhcp_range: Some(DhcpRange {
            start: At::new(Ipv4Addr::from(start)),
            end: At::new(Ipv4Addr::from(end)),
        }),
        openbao_hosts: hosts_of(old.map(|n| &n.openbao_hosts)),
        dns_hosts: hosts_of(old.map(|n| &n.dns_hosts)),
        zot_hosts: hosts_of(old.map(|n| &n.zot_hosts)),
        truenas_hosts: old.map(|n| n.truenas_hosts.clone()).unwrap_or_default(),
        k8s_vip: Some(At::new(vip)),
    };
    let changes = changes(old, &network);
    Ok(Proposal {
        network,
        changes,
        notes,
    })
}

/// The longest run of addresses from `first` to `last` that `taken` holds none of; the
/// highest among equals.
fn longest_free_run(first: u32, last: u32, taken: &BTreeSet<u32>) -> Option<(u32, u32)> {
    let mut best: Option<(u32, u32)> = None;
    let mut start = first;
    let bounds = taken
        .range(first..=last)
        .copied()
        .chain(std::iter::once(last.saturating_add(1)));
    for t in bounds {
        if t > start {
            let run = (start, t - 1);
            if best.is_none_or(|(s, e)| run.1 - run.0 >= e - s) {
                best = Some(run);
            }
        }
        start = t.saturating_add(1);
    }
    best
}

/// Each field of the section, as the config has it and as proposed, where they differ.
pub(super) fn changes(old: Option<&Network>, new: &Network) -> Vec<FieldChange> {
    let show = |n: &Network| -> Vec<(&'static str, Option<String>)> {
        let list = |l: &Vec<At<String>>| {
            (!l.is_empty()).then(|| {
                l.iter()
                    .map(|e| e.value.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            })
        };
        vec![
            ("gateway", Some(n.gateway.value.to_string())),
            ("subnet", n.cidr().map(|c| c.to_string())),
            (
                "dhcp_range",
                n.dhcp_range
                    .as_ref()
                    .map(|r| format!("{}-{}", r.start.value, r.end.value)),
            ),
            ("k8s_vip", n.k8s_vip.as_ref().map(|v| v.value.to_string())),
            ("openbao_hosts", list(&n.openbao_hosts)),
            ("dns_hosts", list(&n.dns_hosts)),
            ("zot_hosts", list(&n.zot_hosts)),
        ]
    };
    let before = old.map(show);
    show(new)
        .into_iter()
        .enumerate()
        .filter_map(|(i, (field, to))| {
            let from = before.as_ref().and_then(|b| b[i].1.clone());
            (from != to).then(|| FieldChange {
                field: format!("network.{field}"),
                from,
                to,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported(host: &str, address: [u8; 4], gateway: [u8; 4]) -> HostNetwork {
        HostNetwork {
            host: host.into(),
            interface: Some("eth0".into()),
            mac: Some("02:00:00:00:00:01".into()),
            address: Some(address.into()),
            prefix_len: Some(24),
            gateway: Some(gateway.into()),
            desired_address: Ipv4Addr::from(address).to_string(),
            error: None,
        }
    }

    fn stack(text: &str) -> StackConfig {
        // Read as `plan` reads it: a config its own checks refuse is planned anew.
        config::parse_unchecked(Path::new("t.yaml"), text)
            .expect("a config")
            .0
    }

    const HOSTS: &str =
        "hosts:\n  - {name: a, address: 192.168.1.10}\n  - {name: b, address: 192.168.1.11}\n";

    #[test]
    fn a_fresh_network_from_what_the_hosts_report() {
        let detected = [
            reported("a", [192, 168, 1, 10], [192, 168, 1, 1]),
            reported("b", [192, 168, 1, 11], [192, 168, 1, 1]),
        ];
        let p =
            propose(&stack(HOSTS), &detected, &BTreeMap::new(), Keep::WhatHolds).expect("a plan");
        let n = &p.network;
        assert_eq!(n.gateway.value, Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(
            n.cidr().map(|c| c.to_string()).as_deref(),
            Some("192.168.1.0/24")
        );
        let range = n.dhcp_range.as_ref().expect("a range");
        // The longest free run is .12-.254: its upper half.
        assert_eq!(range.start.value, Ipv4Addr::new(192, 168, 1, 133));
        assert_eq!(range.end.value, Ipv4Addr::new(192, 168, 1, 254));
        assert_eq!(
            n.k8s_vip.as_ref().map(|v| v.value),
            Some(Ipv4Addr::new(192, 168, 1, 132))
        );
        assert_eq!(n.openbao_hosts, vec![At::new("a".to_string())]);
        assert_eq!(p.changes.len(), 7, "{:?}", p.changes);
        assert!(p.changes.iter().all(|c| c.from.is_none()));
        // Written and read back, the same proposal changes nothing.
        let mut again = stack(HOSTS);
        again.network = Some(p.network.clone());
        let text = config::render(&again, "t").expect("render");
        let q =
            propose(&stack(&text), &detected, &BTreeMap::new(), Keep::WhatHolds).expect("again");
        assert_eq!(q.network, p.network);
        assert!(q.changes.is_empty(), "{:?}", q.changes);
    }

    #[test]
    fn what_the_config_says_is_kept_where_it_holds() {
        let text = format!(
            "{HOSTS}network:\n  subnet: 192.168.1.0/24\n  gateway: 192.168.1.1\n  dhcp_range: {{start: 192.168.1.100, end: 192.168.1.200}}\n  k8s_vip: 192.168.1.50\n  dns_hosts: [b]\n"
        );
        let detected = [reported("a", [192, 168, 1, 10], [192, 168, 1, 1])];
        let p =
            propose(&stack(&text), &detected, &BTreeMap::new(), Keep::WhatHolds).expect("a plan");
        let range = p.network.dhcp_range.as_ref().expect("a range");
        assert_eq!(range.start.value, Ipv4Addr::new(192, 168, 1, 100));
        assert_eq!(
            p.network.k8s_vip.as_ref().map(|v| v.value),
            Some(Ipv4Addr::new(192, 168, 1, 50))
        );
        assert_eq!(p.network.dns_hosts, vec![At::new("b".to_string())]);
        let fields: Vec<&str> = p.changes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["network.openbao_hosts", "network.zot_hosts"]);
        // A VIP in use moves; a range that holds a host's address is planned again.
        let busy = BTreeMap::from([(Ipv4Addr::new(192, 168, 1, 50), "answered ARP".into())]);
        let p = propose(&stack(&text), &detected, &busy, Keep::WhatHolds).expect("a plan");
        assert_ne!(
            p.network.k8s_vip.as_ref().map(|v| v.value),
            Some(Ipv4Addr::new(192, 168, 1, 50))
        );
        let moved = text.replace("start: 192.168.1.100", "start: 192.168.1.5");
        let p =
            propose(&stack(&moved), &detected, &BTreeMap::new(), Keep::WhatHolds).expect("a plan");
        let range = p.network.dhcp_range.as_ref().expect("a range");
        assert!(range.start.value > Ipv4Addr::new(192, 168, 1, 11));
    }

    #[test]
    fn setup_keeps_what_the_config_sets_and_plans_the_rest_around_it() {
        // A DHCP range that holds host a's address, and no VIP.
        let text = format!(
            "{HOSTS}network:\n  subnet: 192.168.1.0/24\n  gateway: 192.168.1.1\n  dhcp_range: {{start: 192.168.1.10, end: 192.168.1.200}}\n"
        );
        let detected = [reported("a", [192, 168, 1, 10], [192, 168, 1, 1])];
        let start = |p: &Proposal| p.network.dhcp_range.as_ref().map(|r| r.start.value);
        let replanned =
            propose(&stack(&text), &detected, &BTreeMap::new(), Keep::WhatHolds).expect("a plan");
        assert_ne!(start(&replanned), Some(Ipv4Addr::new(192, 168, 1, 10)));
        let p = propose(&stack(&text), &detected, &BTreeMap::new(), Keep::Set).expect("a plan");
        assert_eq!(start(&p), Some(Ipv4Addr::new(192, 168, 1, 10)));
        // The VIP is planned outside the range kept, on no address in use.
        let vip = p.network.k8s_vip.as_ref().map(|v| v.value).expect("a VIP");
        assert_eq!(vip, Ipv4Addr::new(192, 168, 1, 9));
    }

    #[test]
    fn the_gateway_most_hosts_use_and_nothing_to_plan_without_answers() {
        let detected = [
            reported("a", [10, 0, 0, 5], [10, 0, 0, 1]),
            reported("b", [10, 0, 0, 6], [10, 0, 0, 1]),
            reported("c", [172, 16, 0, 5], [172, 16, 0, 1]),
        ];
        let (gateway, subnet, note) = consensus(&detected).expect("consensus");
        assert_eq!(gateway, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(subnet.to_string(), "10.0.0.0/24");
        assert!(note.starts_with("2 of 3 hosts"), "{note}");
        let mut failed = reported("a", [10, 0, 0, 5], [10, 0, 0, 1]);
        failed.address = None;
        failed.error = Some("no route to host".into());
        assert!(consensus(&[failed]).is_err_and(|e| e.hint.is_some()));
    }

    #[test]
    fn runs_of_free_addresses() {
        let taken = BTreeSet::from([1, 2, 5, 9]);
        assert_eq!(longest_free_run(1, 10, &taken), Some((6, 8)));
        assert_eq!(longest_free_run(1, 4, &BTreeSet::from([1, 2, 3, 4])), None);
        assert_eq!(longest_free_run(1, 4, &BTreeSet::new()), Some((1, 4)));
    }
}
