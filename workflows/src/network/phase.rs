//! Setup's `network/` phase, after the hosts are configured and before anything of the
//! stack is installed. `network/plan`: when the config's `network:` section lacks an
//! address the stack needs (gateway, subnet, DHCP range, VIP, the infrastructure hosts),
//! those fields are planned from what the hosts report, as `network plan` plans them, and
//! written into the config (the rest of the file as it was); a field the config sets is
//! never changed here. A config that has them all is only read: no host is asked.
//! `network/validate`: every check of `network validate` but DNS's (PowerDNS runs only
//! after the stack phase; setup's last look asks it). A failed check stops the setup
//! before the stack phase, naming each failure; `foundry setup` again resumes the run and
//! validates the config as it is then.
//!
//! Run again after a complete setup, the phase is a new run's: the config is read (nothing
//! to plan), the hosts answer through the connections the hosts phase opened, and the VIP
//! is probed again, at once with them. Nothing of the stack holds the VIP before the
//! cluster, so it must still answer nobody (see `validate::vip_unused` for the rule once
//! kube-vip holds it).

use std::path::{Path, PathBuf};
use std::time::Duration;

use foundry_core::{Activity, ActivityCx, ActivityError, Ctx, InDoubt, RunError, Stream};
use serde::{Deserialize, Serialize};

use super::plan::Keep;
use super::validate::{Check, Status};
use super::{FieldChange, NetworkError};
use crate::config::Network;

/// How long a host may take to answer, planning or validating.
const HOST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the phase did: the fields it wrote, and the checks that passed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkOutput {
    pub plan: Planned,
    pub checks: Vec<Check>,
}

/// What `network/plan` wrote into the config: nothing when it had every address.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Planned {
    /// Each field written, from its old value (none) to the planned one.
    pub written: Vec<FieldChange>,
    /// Why the plan is so (the hosts' gateway, the VIP probed).
    pub notes: Vec<String>,
    /// The file's layout and comments kept around the section (else written whole).
    pub layout_kept: bool,
}

/// The phase: plan what is missing, then validate. Steps `network/plan` and
/// `network/validate`.
pub async fn run(ctx: &Ctx, config: &Path) -> Result<NetworkOutput, RunError> {
    let config = config.to_path_buf();
    let plan = ctx
        .step(
            "network/plan",
            &PlanMissing {
                config: config.clone(),
            },
        )
        .await?;
    let checks = ctx
        .step("network/validate", &ValidateBeforeStack { config })
        .await?;
    Ok(NetworkOutput { plan, checks })
}

/// A `network` error as a step's permanent error, with its hint.
fn permanent(e: NetworkError) -> ActivityError {
    ActivityError::permanent(match e.hint {
        Some(hint) => format!("{}\nhint: {hint}", e.message),
        None => e.message,
    })
}

/// Setup's last look at DNS, once the stack is installed: the DNS server the config places
/// answers each infrastructure zone's SOA (nothing to ask when it places none, or declares
/// no zone). A failure is transient: a server just started may take a moment to answer.
pub async fn dns_answers(config: &crate::config::StackConfig) -> Result<(), ActivityError> {
    let failed: Vec<String> = super::validate::dns(config, true)
        .await
        .into_iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| {
            let hint = c.hint.map(|h| format!("\nhint: {h}")).unwrap_or_default();
            format!("DNS {}: {}{hint}", c.subject, c.detail)
        })
        .collect();
    if failed.is_empty() {
        Ok(())
    } else {
        Err(ActivityError::transient(failed.join("\n")))
    }
}

/// The network fields the stack needs that the config does not set (`network.k8s_vip`).
pub fn missing(config: &crate::config::StackConfig) -> Vec<String> {
    super::validate::required(config)
        .into_iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.subject)
        .collect()
}

/// The config's section with each field it lacks taken from `planned`; what it sets stays.
fn fill(old: Option<&Network>, planned: &Network) -> Network {
    let Some(old) = old else {
        return planned.clone();
    };
    let mut network = old.clone();
    if network.cidr().is_none() {
        network.subnet = planned.subnet.clone();
    }
    if network.dhcp_range.is_none() {
        network.dhcp_range = planned.dhcp_range.clone();
    }
    if network.k8s_vip.is_none() {
        network.k8s_vip = planned.k8s_vip.clone();
    }
    for (mine, theirs) in [
        (&mut network.openbao_hosts, &planned.openbao_hosts),
        (&mut network.dns_hosts, &planned.dns_hosts),
        (&mut network.zot_hosts, &planned.zot_hosts),
    ] {
        if mine.is_empty() {
            mine.clone_from(theirs);
        }
    }
    network
}

/// Plans the network fields the config lacks and writes them into it. In doubt it runs
/// again: a section written before the crash has every field, so nothing is written twice.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PlanMissing {
    pub config: PathBuf,
}

impl Activity for PlanMissing {
    type Output = Planned;

    fn kind(&self) -> &'static str {
        "network-plan"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Planned>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Planned, ActivityError> {
        let (stack, _) = super::load(&self.config).map_err(permanent)?;
        let missing = missing(&stack);
        if missing.is_empty() {
            return Ok(Planned::default());
        }
        cx.output(
            Stream::Stdout,
            format!(
                "{} lacks {}: planning it from what the hosts report",
                self.config.display(),
                missing.join(", ")
            ),
        );
        let detected = super::detect(&stack, HOST_TIMEOUT).await;
        let proposal = super::plan::plan_keeping(&stack, &detected, Keep::Set)
            .await
            .map_err(permanent)?;
        let old = stack.network.as_ref();
        let network = fill(old, &proposal.network);
        let written = super::plan::changes(old, &network);
        let layout_kept = super::plan::write_network(
            &self.config,
            &network,
            "Foundry's stack config; `foundry setup` wrote its network section.",
        )
        .map_err(permanent)?;
        for change in &written {
            cx.output(
                Stream::Stdout,
                format!(
                    "wrote {}: {}",
                    change.field,
                    change.to.as_deref().unwrap_or("(not set)")
                ),
            );
        }
        Ok(Planned {
            written,
            notes: proposal.notes,
            layout_kept,
        })
    }
}

/// Every check before the stack; a failure stops the setup, naming each. Read-only: in
/// doubt it runs again.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ValidateBeforeStack {
    pub config: PathBuf,
}

impl Activity for ValidateBeforeStack {
    type Output = Vec<Check>;

    fn kind(&self) -> &'static str {
        "network-validate"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Vec<Check>>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<Vec<Check>, ActivityError> {
        let (stack, refused) = super::load(&self.config).map_err(permanent)?;
        let checks = super::validate::before_stack(&stack, refused.as_deref(), HOST_TIMEOUT).await;
        match verdict(&self.config, &checks) {
            None => Ok(checks),
            Some(e) => Err(e),
        }
    }
}

/// The error that stops the setup when a check failed: each failure on a line of its own,
/// then what to do. Only unreachable hosts is a transient error (retried: a host may be
/// rebooting); anything else needs the config or the network changed.
fn verdict(config: &Path, checks: &[Check]) -> Option<ActivityError> {
    let failed: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Fail).collect();
    if failed.is_empty() {
        return None;
    }
    let mut message = format!(
        "the network does not validate: {} of {} checks failed",
        failed.len(),
        checks.len()
    );
    for c in &failed {
        message.push_str(&format!("\n  {} {}: {}", c.check, c.subject, c.detail));
    }
    let mut hints: Vec<&str> = failed.iter().filter_map(|c| c.hint.as_deref()).collect();
    hints.dedup();
    let then = format!(
        "fix {} (or the network), then `foundry setup` resumes and validates again",
        config.display()
    );
    let hint = if hints.is_empty() {
        then
    } else {
        format!("{}; {then}", hints.join("; "))
    };
    message.push_str(&format!("\nhint: {hint}"));
    Some(if failed.iter().all(|c| c.check == "reachable") {
        ActivityError::transient(message)
    } else {
        ActivityError::permanent(message)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, At};

    fn stack(text: &str) -> config::StackConfig {
        config::parse_unchecked(Path::new("t.yaml"), text)
            .expect("a config")
            .0
    }

    const HOSTS: &str =
        "hosts:\n  - {name: a, address: 10.0.0.5}\n  - {name: b, address: 10.0.0.6}\n";

    fn planned() -> Network {
        stack(&format!(
            "{HOSTS}network:\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n  dhcp_range: {{start: 10.0.0.100, end: 10.0.0.200}}\n  k8s_vip: 10.0.0.99\n  openbao_hosts: [a]\n  dns_hosts: [a]\n  zot_hosts: [a]\n"
        ))
        .network
        .expect("a network")
    }

    #[test]
    fn only_what_the_config_lacks_is_planned_and_what_it_sets_stays() {
        assert_eq!(
            missing(&stack(HOSTS)).len(),
            7,
            "{:?}",
            missing(&stack(HOSTS))
        );
        assert_eq!(fill(None, &planned()), planned());
        let partial = stack(&format!(
            "{HOSTS}network:\n  netmask: 255.255.255.0\n  gateway: 10.0.0.254\n  dhcp_range: {{start: 10.0.0.6, end: 10.0.0.50}}\n  dns_hosts: [b]\n"
        ));
        assert_eq!(
            missing(&partial),
            [
                "network.k8s_vip",
                "network.openbao_hosts",
                "network.zot_hosts"
            ]
        );
        let filled = fill(partial.network.as_ref(), &planned());
        // Kept: the gateway, the netmask (no subnet added), the range (even one that holds
        // a host: validation names it), the DNS hosts.
        assert_eq!(filled.gateway.value.to_string(), "10.0.0.254");
        assert!(filled.subnet.is_none() && filled.netmask.is_some());
        let range = filled.dhcp_range.as_ref().expect("a range");
        assert_eq!(range.start.value.to_string(), "10.0.0.6");
        assert_eq!(filled.dns_hosts, vec![At::new("b".to_string())]);
        // Planned: the rest.
        assert_eq!(
            filled.k8s_vip.map(|v| v.value.to_string()).as_deref(),
            Some("10.0.0.99")
        );
        assert_eq!(filled.openbao_hosts, vec![At::new("a".to_string())]);
        let complete = stack(&format!(
            "{HOSTS}network:\n  subnet: 10.0.0.0/24\n  gateway: 10.0.0.1\n  dhcp_range: {{start: 10.0.0.100, end: 10.0.0.200}}\n  k8s_vip: 10.0.0.99\n  openbao_hosts: [a]\n  dns_hosts: [a]\n  zot_hosts: [a]\n"
        ));
        assert!(missing(&complete).is_empty());
    }

    fn check(name: &str, status: Status, hint: Option<&str>) -> Check {
        Check {
            check: name.into(),
            subject: "s".into(),
            status,
            detail: "d".into(),
            hint: hint.map(str::to_string),
        }
    }

    #[test]
    fn a_failed_check_stops_the_setup_naming_it_and_only_unreachable_hosts_are_retried() {
        let path = Path::new("/x/stack.yaml");
        assert!(verdict(path, &[check("required", Status::Pass, None)]).is_none());
        assert!(verdict(path, &[check("vip-unused", Status::Skip, None)]).is_none());
        let e = verdict(
            path,
            &[
                check("required", Status::Pass, None),
                check("static-outside-dhcp", Status::Fail, Some("move the range")),
                check("reachable", Status::Fail, None),
            ],
        )
        .expect("a failure");
        assert!(!e.transient, "{e:?}");
        assert!(
            e.message
                .starts_with("the network does not validate: 2 of 3 checks failed\n"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("\n  static-outside-dhcp s: d\n"),
            "{}",
            e.message
        );
        assert!(
            e.message.ends_with(
                "hint: move the range; fix /x/stack.yaml (or the network), then `foundry setup` resumes and validates again"
            ),
            "{}",
            e.message
        );
        let e = verdict(path, &[check("reachable", Status::Fail, None)]).expect("a failure");
        assert!(e.transient, "{e:?}");
    }
}
