//! `network validate`: each address the stack needs is set, the VIP is unique and nothing
//! answers at it (probed from a host), no static address lies in the DHCP range, every host
//! answers over SSH, and the DNS server answers for the infrastructure zones once it runs.
//! One check per line, each saying what it looked at and where. [`before_stack`] is every
//! check but DNS's: what `foundry setup` asks before it installs anything.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{self, StackConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Not checked, and why is in the detail (DNS before PowerDNS runs).
    Skip,
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// `required`, `config`, `vip-unique`, `static-outside-dhcp`, `reachable`,
    /// `vip-unused` or `dns`.
    pub check: String,
    /// What was checked: a field, a host, an address, a zone.
    pub subject: String,
    pub status: Status,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Check {
    fn new(
        check: &'static str,
        subject: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
    ) -> Check {
        Check {
            check: check.into(),
            subject: subject.into(),
            status,
            detail: detail.into(),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Check {
        self.hint = Some(hint.into());
        self
    }
}

const PLAN_HINT: &str =
    "`foundry network plan --write` proposes the network section from what the hosts report";

/// Every check of `config`; `refused` is what the config's own checks refuse in it, if
/// anything. Each host is given `timeout` to answer.
pub async fn validate(
    config: &StackConfig,
    refused: Option<&str>,
    timeout: Duration,
) -> Vec<Check> {
    let (mut checks, dns) =
        tokio::join!(before_stack(config, refused, timeout), dns(config, false));
    checks.extend(dns);
    checks
}

/// Every check but DNS's (which needs PowerDNS running): the config, the addresses, every
/// host reachable and nothing answering at the VIP. The hosts and the VIP are asked at
/// once (the VIP from the first host, and from the first that answered when that one did
/// not), over the process's pooled SSH connections, so the cost is about one probe's.
pub async fn before_stack(
    config: &StackConfig,
    refused: Option<&str>,
    timeout: Duration,
) -> Vec<Check> {
    let mut checks = Vec::new();
    checks.push(match refused {
        None => Check::new(
            "config",
            "stack config",
            Status::Pass,
            "its own checks pass",
        ),
        Some(e) => Check::new("config", "stack config", Status::Fail, e),
    });
    checks.extend(required(config));
    checks.extend(vip_unique(config));
    checks.extend(outside_dhcp(config));
    let (hosts, first_probe) = tokio::join!(
        reach(config, timeout),
        vip_unused(config, first_prober(config))
    );
    // The first host could not probe: the first host that answered does, if any did.
    let probed = match first_probe {
        Ok(check) => check,
        Err(failed) => {
            let up = hosts
                .iter()
                .filter(|h| h.status == Status::Pass)
                .find_map(|h| config.host(&h.subject))
                .and_then(|h| Some((h.name.clone(), config.ssh_target(h).ok()?)));
            match up {
                Some(prober) => vip_unused(config, Some(prober)).await.unwrap_or_else(|e| e),
                None => Check::new(
                    "vip-unused",
                    failed.subject,
                    Status::Skip,
                    "no host answered to probe it from",
                ),
            }
        }
    };
    checks.extend(hosts);
    checks.push(probed);
    checks
}

/// The host the VIP is probed from: the first the config can reach.
fn first_prober(config: &StackConfig) -> Option<(String, foundry_activities::ssh::SshTarget)> {
    config.hosts.iter().find_map(|h| {
        let target = config.ssh_target(h).ok()?;
        Some((h.name.clone(), target))
    })
}

/// Starts the probe of the VIP that [`before_stack`] makes, from the host it makes it
/// from, in the background now: setup starts it while its hosts phase runs, so that the
/// network phase after it takes the answer rather than waiting for it.
pub fn probe_vip_ahead(config: &StackConfig) {
    if let (Some(vip), Some((host, target))) = (vip(config), first_prober(config)) {
        super::probe::ahead(&host, &target, vip);
    }
}

/// Each host answers a command over SSH (through the process's pooled connection, made
/// when there is none yet), within `timeout`.
async fn reach(config: &StackConfig, timeout: Duration) -> Vec<Check> {
    let found = crate::host::each_host(config, move |entry, target| async move {
        let login = format!("{}@{}:{}", entry.user, entry.address, entry.port);
        let asked = async {
            let target = target.map_err(|e| e.message)?;
            let start = std::time::Instant::now();
            super::run_on(&target, &["true"]).await?;
            Ok::<_, String>(start.elapsed())
        };
        let said = match tokio::time::timeout(timeout, asked).await {
            Ok(said) => said,
            Err(_) => Err(format!("no answer within {}s", timeout.as_secs())),
        };
        match said {
            Ok(took) => Check::new(
                "reachable",
                &entry.name,
                Status::Pass,
                format!("{login}, answered in {} ms", took.as_millis()),
            ),
            Err(e) => Check::new(
                "reachable",
                &entry.name,
                Status::Fail,
                format!("{login}: {e}"),
            )
            .hint("`foundry host list` asks each host; `foundry host add NAME` records its key"),
        }
    })
    .await;
    found
        .into_iter()
        .zip(&config.hosts)
        .map(|(found, entry)| {
            found.unwrap_or_else(|| {
                Check::new("reachable", &entry.name, Status::Fail, "the check stopped")
            })
        })
        .collect()
}

fn vip(config: &StackConfig) -> Option<Ipv4Addr> {
    config.network.as_ref()?.k8s_vip.as_ref().map(|v| v.value)
}

/// Each address the stack needs, set: the gateway, the subnet, the DHCP range, the VIP,
/// and a host for each infrastructure service.
pub(super) fn required(config: &StackConfig) -> Vec<Check> {
    let check = |field: &str, value: Option<String>| match value {
        Some(v) => Check::new("required", format!("network.{field}"), Status::Pass, v),
        None => Check::new(
            "required",
            format!("network.{field}"),
            Status::Fail,
            "not set",
        )
        .hint(PLAN_HINT),
    };
    let n = config.network.as_ref();
    let mut checks = vec![
        check("gateway", n.map(|n| n.gateway.value.to_string())),
        check("subnet", n.and_then(|n| n.cidr()).map(|c| c.to_string())),
        check(
            "dhcp_range",
            n.and_then(|n| n.dhcp_range.as_ref())
                .map(|r| format!("{}-{}", r.start.value, r.end.value)),
        ),
        check("k8s_vip", vip(config).map(|v| v.to_string())),
    ];
    for (list, entries) in [
        ("openbao_hosts", n.map(|n| &n.openbao_hosts)),
        ("dns_hosts", n.map(|n| &n.dns_hosts)),
        ("zot_hosts", n.map(|n| &n.zot_hosts)),
    ] {
        let placed: Vec<String> = entries
            .into_iter()
            .flatten()
            .map(|e| match config.host_named_or_at(&e.value) {
                Some(h) => format!("{} ({})", h.name, h.address),
                None => format!("{} (not under hosts:)", e.value),
            })
            .collect();
        checks.push(check(list, (!placed.is_empty()).then(|| placed.join(", "))));
    }
    checks
}

/// The VIP is no address the config gives anything else.
fn vip_unique(config: &StackConfig) -> Option<Check> {
    let vip = vip(config)?;
    Some(match config::taken_by(config, vip) {
        Some(what) => Check::new(
            "vip-unique",
            vip.to_string(),
            Status::Fail,
            format!("it is {what}"),
        )
        .hint("the VIP must be an address nothing else has: `foundry network plan` proposes one"),
        None => Check::new(
            "vip-unique",
            vip.to_string(),
            Status::Pass,
            "no host, service or the gateway has it",
        ),
    })
}

/// No static address (the gateway, a host's, a service's, the VIP) lies in the DHCP range:
/// a DHCP client could be given it.
fn outside_dhcp(config: &StackConfig) -> Vec<Check> {
    let Some(range) = config.network.as_ref().and_then(|n| n.dhcp_range.as_ref()) else {
        return Vec::new();
    };
    let (start, end) = (range.start.value, range.end.value);
    let shown = format!("{start}-{end}");
    let mut statics: Vec<(String, Ipv4Addr)> = Vec::new();
    if let Some(n) = &config.network {
        statics.push(("network.gateway".into(), n.gateway.value));
    }
    statics.extend(
        config
            .hosts
            .iter()
            .filter_map(|h| Some((format!("host {}", h.name), h.address.parse().ok()?))),
    );
    statics.extend(config::service_addresses(config));
    statics.extend(vip(config).map(|v| ("network.k8s_vip".to_string(), v)));
    let inside: Vec<Check> = statics
        .iter()
        .filter(|(_, a)| (start..=end).contains(a))
        .map(|(what, a)| {
            Check::new(
                "static-outside-dhcp",
                format!("{what} {a}"),
                Status::Fail,
                format!("lies in the DHCP range {shown}: a DHCP client could be given it"),
            )
            .hint("move the DHCP range, or the address: `foundry network plan` proposes a range that holds none")
        })
        .collect();
    if inside.is_empty() {
        vec![Check::new(
            "static-outside-dhcp",
            shown,
            Status::Pass,
            format!("none of {} static addresses lies in it", statics.len()),
        )]
    } else {
        inside
    }
}

/// Nothing answers at the VIP, asked from `prober`; the failed check as an error when the
/// probe itself could not be made there.
///
/// The rule, on the first setup and on every later one alike (a setup run again is a new
/// run, and probes again): nothing may answer at the VIP, since nothing of the stack holds
/// it yet. Once the cluster exists, kube-vip holds it on a server: the VIP on a
/// control-plane node's own interface is the stack's own, and passes.
async fn vip_unused(
    config: &StackConfig,
    prober: Option<(String, foundry_activities::ssh::SshTarget)>,
) -> Result<Check, Check> {
    let Some(vip) = vip(config) else {
        return Ok(Check::new(
            "vip-unused",
            "network.k8s_vip",
            Status::Skip,
            "no VIP to probe",
        ));
    };
    let Some((host, target)) = prober else {
        return Ok(Check::new(
            "vip-unused",
            vip.to_string(),
            Status::Skip,
            "no host answered to probe it from",
        ));
    };
    match super::probe::answers(&host, &target, vip).await {
        Ok(None) => Ok(Check::new(
            "vip-unused",
            vip.to_string(),
            Status::Pass,
            format!("nothing answers at it (probed from {host})"),
        )),
        Ok(Some(said)) => match cluster_holder(config, vip).await {
            Some(server) => Ok(Check::new(
                "vip-unused",
                vip.to_string(),
                Status::Pass,
                format!("the cluster's own: kube-vip holds it on server {server}"),
            )),
            None => Ok(
                Check::new("vip-unused", vip.to_string(), Status::Fail, said).hint(
                    "something holds that address: `foundry network plan` proposes a free one",
                ),
            ),
        },
        Err(e) => Err(Check::new("vip-unused", vip.to_string(), Status::Fail, e)),
    }
}

/// The control-plane node of the config's cluster that holds `vip` on its own interface
/// (kube-vip's holder, once the cluster exists), asked of each in turn.
async fn cluster_holder(config: &StackConfig, vip: std::net::Ipv4Addr) -> Option<String> {
    let servers = config
        .cluster
        .iter()
        .flat_map(|c| c.nodes.iter())
        .filter(|n| n.role == crate::config::NodeRole::ControlPlane);
    for node in servers {
        let Some(host) = config.host_named_or_at(&node.hostname) else {
            continue;
        };
        let Ok(target) = config.ssh_target(host) else {
            continue;
        };
        let itself = format!("{} holds {vip} itself", host.name);
        if let Ok(Some(said)) = super::probe::answers(&host.name, &target, vip).await
            && said == itself
        {
            return Some(host.name.clone());
        }
    }
    None
}

/// How long one try waits for the DNS server, and how many tries.
const DNS_WAIT: Duration = Duration::from_secs(1);
const DNS_TRIES: u32 = 2;

/// The DNS server the config places answers each infrastructure zone's SOA. While nothing
/// answers DNS there, skipped with a note (PowerDNS not installed yet), unless `installed`
/// says it must be there by now (setup's last look): then that is a failure.
pub(super) async fn dns(config: &StackConfig, installed: bool) -> Vec<Check> {
    let address = config
        .components
        .as_ref()
        .and_then(|c| c.dns.address.as_ref())
        .map(|a| a.value);
    let Some(address) = address else {
        return vec![Check::new(
            "dns",
            "components.dns.address",
            Status::Skip,
            "the config places no DNS server",
        )];
    };
    let zones: Vec<String> = config
        .dns
        .iter()
        .flat_map(|d| d.infrastructure_zones.iter().map(|z| z.name.canonical()))
        .collect();
    if zones.is_empty() {
        return vec![Check::new(
            "dns",
            address.to_string(),
            Status::Skip,
            "the config declares no infrastructure zone to ask for",
        )];
    }
    let server = SocketAddr::from((address, 53));
    let soa = foundry_activities::dns::type_code("SOA").unwrap_or(6);
    let mut checks = Vec::new();
    for zone in zones {
        let subject = format!("{zone} at {address}");
        let asked = foundry_activities::dns::ask(server, &zone, soa, DNS_WAIT, DNS_TRIES).await;
        checks.push(match asked {
            Err(e) if e.transient && checks.is_empty() => {
                return vec![silent(config, address, &zone, e.message, installed).await];
            }
            Err(e) => Check::new("dns", subject, Status::Fail, e.message),
            Ok(reply) => match reply.answers.iter().find(|r| r.rtype == "SOA") {
                Some(record) if reply.rcode == "NOERROR" => Check::new(
                    "dns",
                    subject,
                    Status::Pass,
                    format!("SOA {}", record.value),
                ),
                _ => Check::new(
                    "dns",
                    subject,
                    Status::Fail,
                    format!("answered {} with no SOA for the zone", reply.rcode),
                )
                .hint("`foundry component install dns` makes the zones the config declares"),
            },
        });
    }
    checks
}

/// The verdict when the internal server gives no answer: PowerDNS is down when another of
/// its servers (external, recursor) answers, else not installed yet.
async fn silent(
    config: &StackConfig,
    address: Ipv4Addr,
    zone: &str,
    why: String,
    installed: bool,
) -> Check {
    let soa = foundry_activities::dns::type_code("SOA").unwrap_or(6);
    let others: Vec<(String, Ipv4Addr)> = config
        .components
        .iter()
        .flat_map(|c| c.dns.addresses.iter())
        .map(|(role, a)| (role.clone(), a.value))
        .collect();
    for (role, other) in others {
        let server = SocketAddr::from((other, 53));
        if foundry_activities::dns::ask(server, zone, soa, DNS_WAIT, 1)
            .await
            .is_ok()
        {
            return Check::new(
                "dns",
                address.to_string(),
                Status::Fail,
                format!("the internal server gives no answer, but the {role} server at {other} does: {why}"),
            )
            .hint("`foundry component status dns` shows its containers");
        }
    }
    if installed {
        return Check::new(
            "dns",
            address.to_string(),
            Status::Fail,
            format!("nothing answers DNS there or at its other addresses: {why}"),
        )
        .hint("`foundry component status dns` shows its containers");
    }
    Check::new(
        "dns",
        address.to_string(),
        Status::Skip,
        format!("nothing answers DNS there or at its other addresses: PowerDNS is not installed yet ({why})"),
    )
    .hint("`foundry component install dns` installs it")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stack(text: &str) -> (StackConfig, Option<String>) {
        config::parse_unchecked(std::path::Path::new("t.yaml"), text).expect("a config")
    }

    const HOSTS: &str =
        "hosts:\n  - {name: a, address: 10.0.0.5}\n  - {name: b, address: 10.0.0.6}\n";

    fn failing(checks: &[Check]) -> Vec<String> {
        checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| format!("{} {}", c.check, c.subject))
            .collect()
    }

    #[test]
    fn every_required_address_is_named_when_missing() {
        let (config, refused) = stack(HOSTS);
        assert_eq!(refused, None);
        assert_eq!(
            failing(&required(&config)),
            [
                "required network.gateway",
                "required network.subnet",
                "required network.dhcp_range",
                "required network.k8s_vip",
                "required network.openbao_hosts",
                "required network.dns_hosts",
                "required network.zot_hosts",
            ]
        );
        assert!(vip_unique(&config).is_none() && outside_dhcp(&config).is_empty());
    }

    #[test]
    fn a_vip_in_use_and_statics_in_the_dhcp_range_fail_by_name() {
        let text = format!(
            "{HOSTS}network:\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n  dhcp_range: {{start: 10.0.0.6, end: 10.0.0.100}}\n  k8s_vip: 10.0.0.5\n  openbao_hosts: [a]\n  dns_hosts: [a]\n  zot_hosts: [zz]\n"
        );
        let (config, refused) = stack(&text);
        assert!(refused.is_some(), "the config's own checks refuse it");
        let unique = vip_unique(&config).expect("a VIP");
        assert_eq!(unique.status, Status::Fail);
        assert!(unique.detail.contains("host `a`"), "{}", unique.detail);
        assert_eq!(
            failing(&outside_dhcp(&config)),
            ["static-outside-dhcp host b 10.0.0.6"]
        );
        let zot = required(&config)
            .into_iter()
            .find(|c| c.subject == "network.zot_hosts");
        assert!(zot.is_some_and(|c| c.detail.contains("not under hosts:")));
        let fine = text
            .replace("start: 10.0.0.6", "start: 10.0.0.50")
            .replace("k8s_vip: 10.0.0.5", "k8s_vip: 10.0.0.40");
        let (config, _) = stack(&fine);
        assert_eq!(vip_unique(&config).map(|c| c.status), Some(Status::Pass));
        let outside = outside_dhcp(&config);
        assert_eq!((outside.len(), outside[0].status), (1, Status::Pass));
    }
}
