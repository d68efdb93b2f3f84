//! `host-configure`: brings hosts to the state Foundry needs (a `foundry` user with sudo,
//! its login key, base packages, the hostname), one journaled step per concern and host.
//! `host add`, `host list` and `host ssh` live beside it (`host/`).

mod add;
mod list;
mod scripts;
mod ssh;

use std::path::Path;

use foundry_activities::ssh::{ExistingUser, SshChange, SshExec, SshTarget, public_of};
use foundry_core::{Ctx, FailurePolicy, RetryPolicy, RunError, Workflow};
use serde::{Deserialize, Serialize};

pub use add::{
    AddHost, AddRequest, Added, FirstLogin, HostKeyCheck, add, check_host_key, check_key_path,
    recorded,
};
/// How `host add` logs in the first time.
pub use foundry_activities::ssh::Login;
pub(crate) use list::each_host;
pub use list::{HostStatus, status};
pub use ssh::{SshCommand, ssh_command};

use crate::config::{HostEntry, StackConfig};

/// A failure of a `host` command: what went wrong, and what the user can do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub message: String,
    pub hint: Option<String>,
}

impl HostError {
    pub fn new(message: impl Into<String>) -> Self {
        HostError {
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<crate::config::ConfigError> for HostError {
    fn from(e: crate::config::ConfigError) -> Self {
        HostError {
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

impl From<foundry_core::ActivityError> for HostError {
    fn from(e: foundry_core::ActivityError) -> Self {
        // Activities put a hint after `; hint: ` where they have one.
        match e.message.split_once("; hint: ") {
            Some((message, hint)) => HostError::new(message).hint(hint),
            None => HostError::new(e.message),
        }
    }
}

impl From<crate::config::TargetError> for HostError {
    fn from(e: crate::config::TargetError) -> Self {
        HostError::new(e.message).hint(e.hint)
    }
}

impl From<crate::keys::KeyStoreError> for HostError {
    fn from(e: crate::keys::KeyStoreError) -> Self {
        HostError::new(e.to_string())
    }
}

/// The user Foundry manages hosts as, and what it needs.
pub const FOUNDRY_USER: &str = "foundry";
pub const FOUNDRY_HOME_DIR: &str = "/home/foundry";
pub const FOUNDRY_SHELL: &str = "/bin/bash";
pub const SUDO_GROUP: &str = "sudo";
pub const SUDOERS_PATH: &str = "/etc/sudoers.d/foundry";
pub const SUDOERS_LINE: &str = "foundry ALL=(ALL:ALL) NOPASSWD: ALL\n";
pub const PACKAGES: [&str; 5] = ["sudo", "openssh-server", "python3", "procps", "iproute2"];
/// The concerns, in the order they are applied.
pub const CONCERNS: [&str; 5] = ["user", "sudoers", "ssh-key", "packages", "hostname"];
/// How many hosts are configured at once unless told.
pub const DEFAULT_PARALLEL: usize = 50;

/// One host to configure: how to reach it and the public key `foundry` logs in with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureHost {
    pub name: String,
    pub target: SshTarget,
    /// The public half of the host's login key (`ssh-ed25519 AAAA…`).
    pub public_key: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureInput {
    pub hosts: Vec<ConfigureHost>,
    pub parallel: usize,
    /// Accept a `foundry` user that exists already with keys or a password Foundry did
    /// not put there, instead of refusing it.
    #[serde(default)]
    pub adopt: bool,
}

/// What a run changed on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostChanges {
    pub host: String,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// What an existing `foundry` user had that Foundry accepted as it was (`--adopt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adopted: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigureOutput {
    pub hosts: Vec<HostChanges>,
}

impl ConfigureOutput {
    /// "10 hosts, nothing changed" or "10 hosts, 3 changed".
    pub fn summary(&self) -> String {
        let n = self.hosts.len();
        let hosts = if n == 1 { "host" } else { "hosts" };
        let changed = self.hosts.iter().filter(|h| !h.changed.is_empty()).count();
        if changed == 0 {
            format!("{n} {hosts}, nothing changed")
        } else {
            format!("{n} {hosts}, {changed} changed")
        }
    }
}

/// Reads a host's private key (from its file, or from OpenBAO) and gives its public half.
async fn public_key_of(host: &str, target: &SshTarget) -> Result<String, HostError> {
    let private = target.key.private_key().await.map_err(|e| {
        HostError::new(format!("host {host}: {}", e.message)).hint(format!(
            "fix `key:` of {host} in the config, or `foundry host add {host}` again"
        ))
    })?;
    public_of(&private)
        .map_err(|e| HostError::new(format!("host {host}: the key {}: {e}", target.key)))
}

/// The input of a `host-configure` run: the named hosts of `config` (or all of them).
pub async fn configure_input(
    config: &StackConfig,
    config_path: &Path,
    names: &[String],
    all: bool,
    parallel: usize,
    adopt: bool,
) -> Result<ConfigureInput, HostError> {
    let entries: Vec<&HostEntry> = if all {
        config.hosts.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                config.host(n).ok_or_else(|| {
                    HostError::new(format!("no host `{n}` in {}", config_path.display()))
                        .hint("`foundry host list` shows the hosts; `foundry host add` adds one")
                })
            })
            .collect::<Result<_, _>>()?
    };
    if entries.is_empty() {
        return Err(
            HostError::new(format!("no hosts in {}", config_path.display()))
                .hint("`foundry host add NAME --address A` adds one"),
        );
    }
    if parallel == 0 {
        return Err(HostError::new(
            "--parallel 0: configure at least one host at a time",
        ));
    }
    let mut hosts = Vec::with_capacity(entries.len());
    for entry in entries {
        let target = config.ssh_target(entry)?;
        let public_key = public_key_of(&entry.name, &target).await?;
        hosts.push(ConfigureHost {
            name: entry.name.clone(),
            target,
            public_key,
        });
    }
    Ok(ConfigureInput {
        hosts,
        parallel,
        adopt,
    })
}

#[derive(Default)]
pub struct HostConfigure;

impl Workflow for HostConfigure {
    const NAME: &'static str = "host-configure";
    const VERSION: u32 = 1;
    type Input = ConfigureInput;
    type Output = ConfigureOutput;

    fn check(&self, input: &ConfigureInput) -> Result<(), String> {
        if input.parallel == 0 {
            return Err("parallel: at least 1".into());
        }
        for host in &input.hosts {
            crate::config::check_host_name(&host.name)?;
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: ConfigureInput) -> Result<ConfigureOutput, RunError> {
        let adopt = input.adopt;
        let items: Vec<(String, ConfigureHost)> = input
            .hosts
            .into_iter()
            .map(|h| (h.name.clone(), h))
            .collect();
        let hosts = ctx
            .fan_out_ok(
                items,
                input.parallel,
                FailurePolicy::CollectAll,
                move |child, host| async move { configure_host(&child, &host, adopt).await },
            )
            .await?;
        Ok(ConfigureOutput { hosts })
    }
}

fn script(target: &SshTarget, script: &str, args: &[&str]) -> SshChange {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().map(|a| a.to_string()));
    let mut exec = SshExec::new(target.clone(), argv);
    exec.sudo = true;
    exec.policy = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    SshChange { exec }
}

/// Every concern on one host, each one step that checks and changes in one round trip,
/// after a look at a `foundry` user that may exist already: one with keys or a password
/// Foundry did not put there is refused (nothing changed) unless `adopt`.
async fn configure_host(
    ctx: &Ctx,
    host: &ConfigureHost,
    adopt: bool,
) -> Result<HostChanges, RunError> {
    let t = &host.target;
    let existing = ExistingUser {
        target: t.clone(),
        host: host.name.clone(),
        user: FOUNDRY_USER.into(),
        foundry_key: host.public_key.clone(),
        sudoers_path: SUDOERS_PATH.into(),
        sudoers_line: SUDOERS_LINE.into(),
        adopt,
    };
    let adopted = ctx.step("existing-user", &existing).await?.adopted;
    let steps = [
        (
            "user",
            script(
                t,
                scripts::USER,
                &[FOUNDRY_USER, FOUNDRY_HOME_DIR, FOUNDRY_SHELL, SUDO_GROUP],
            ),
        ),
        (
            "sudoers",
            script(t, scripts::SUDOERS, &[SUDOERS_LINE, SUDOERS_PATH]),
        ),
        (
            "ssh-key",
            script(t, scripts::SSH_KEY, &[FOUNDRY_USER, &host.public_key]),
        ),
        ("packages", script(t, scripts::PACKAGES, &PACKAGES)),
        ("hostname", script(t, scripts::HOSTNAME, &[&host.name])),
    ];
    let mut changes = HostChanges {
        host: host.name.clone(),
        changed: Vec::new(),
        unchanged: Vec::new(),
        adopted,
    };
    for (concern, activity) in &steps {
        let change = ctx.step(concern, activity).await?;
        let list = if change.changed {
            &mut changes.changed
        } else {
            &mut changes.unchanged
        };
        list.push(concern.to_string());
    }
    Ok(changes)
}
