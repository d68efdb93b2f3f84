//! The first part of a setup: every host the config names under `hosts:` without what
//! `foundry host add` records (its login `key` and its `host_key`) is asked for and added
//! as `host add` adds one. Per host: its address and user (the config's as the default
//! answers), a key file or else a password, the host key it offers (scanned, a step) and
//! whether to trust it, then the add itself (a step). Each answer is journaled as it is
//! given, the password by reference only, so a resumed setup never asks twice.

use std::path::{Path, PathBuf};

use foundry_core::{Activity, ActivityCx, ActivityError, Answer, Ctx, InDoubt, Question, RunError};
use serde::{Deserialize, Serialize};

use crate::host::{AddHost, Added, FirstLogin, HostKeyCheck, check_host_key, check_key_path};

/// A host of the config that `host add` has not added yet, as the config names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewHost {
    pub name: String,
    pub address: String,
    pub user: String,
    pub port: u16,
}

/// The config's hosts that lack a login key or a host key. Reading twice is harmless.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadNewHosts {
    pub config: PathBuf,
}

impl Activity for ReadNewHosts {
    type Output = Vec<NewHost>;

    fn kind(&self) -> &'static str {
        "read-config"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Vec<NewHost>>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<Vec<NewHost>, ActivityError> {
        let stack = crate::config::load(&self.config)
            .map_err(|e| ActivityError::permanent(e.to_string()))?;
        Ok(stack
            .hosts
            .iter()
            .filter(|h| h.key.is_none() || h.host_key.is_none())
            .map(|h| NewHost {
                name: h.name.clone(),
                address: h.address.clone(),
                user: h.user.clone(),
                port: h.port,
            })
            .collect())
    }
}

/// The host key a host offers now, or the one the config knows for it. Scanning again is
/// harmless; its output (journaled) is the key the person is asked to trust.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ScanHostKey {
    pub config: PathBuf,
    pub name: String,
    pub address: String,
    pub port: u16,
}

impl Activity for ScanHostKey {
    type Output = HostKeyCheck;

    fn kind(&self) -> &'static str {
        "scan-host-key"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<HostKeyCheck>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<HostKeyCheck, ActivityError> {
        let stack = crate::config::load(&self.config)
            .map_err(|e| ActivityError::permanent(e.to_string()))?;
        check_host_key(&stack, &self.name, &self.address, self.port)
            .await
            .map_err(|e| ActivityError::transient(e.message))
    }
}

fn text(answer: Answer, key: &str) -> Result<String, RunError> {
    match answer {
        Answer::Text(text) => Ok(text.trim().to_string()),
        Answer::Secret(_) => Err(RunError::workflow(format!(
            "the answer to {key} was kept as a secret; a text was expected"
        ))),
    }
}

fn question(prompt: String, default: Option<&str>) -> Question {
    Question {
        prompt,
        secret: false,
        default: default.map(str::to_string),
    }
}

/// Asks for and adds every host of the config that `host add` has not added; what each
/// add did, in the config's order.
pub async fn add_new_hosts(ctx: &Ctx, config: &Path) -> Result<Vec<Added>, RunError> {
    let read = ReadNewHosts {
        config: config.to_path_buf(),
    };
    // Steps `add/…`; each question's key is `<host>/<what>`, so its answer may come from
    // `FOUNDRY_INPUT_<HOST>_<WHAT>`.
    let ctx = ctx.scope("add");
    let hosts = ctx.step("read", &read).await?;
    let mut added = Vec::with_capacity(hosts.len());
    for host in hosts {
        added.push(add_one(&ctx, config, &host).await?);
    }
    Ok(added)
}

async fn add_one(ctx: &Ctx, config: &Path, host: &NewHost) -> Result<Added, RunError> {
    let name = &host.name;
    let key = |what: &str| format!("{name}/{what}");
    let address = ctx
        .ask(
            &key("address"),
            question(
                format!("address of host {name}"),
                Some(host.address.as_str()),
            ),
        )
        .await?;
    let address = text(address, &key("address"))?;
    crate::config::value::check_address(&address)
        .map_err(|e| RunError::workflow(format!("host {name}: {e}")))?;
    let user = ctx
        .ask(
            &key("user"),
            question(
                format!("user to log in to {name} as (it needs sudo)"),
                Some(host.user.as_str()),
            ),
        )
        .await?;
    let user = text(user, &key("user"))?;
    let place = format!("{user}@{address}");
    let key_file = ctx
        .ask(
            &key("key"),
            question(
                format!("a private key file that logs in as {place} (empty: log in by password)"),
                Some(""),
            ),
        )
        .await?;
    let key_file = text(key_file, &key("key"))?;
    let login = if key_file.is_empty() {
        let password = ctx
            .ask(
                &key("password"),
                Question {
                    prompt: format!("password of {place}"),
                    secret: true,
                    default: None,
                },
            )
            .await?;
        match password {
            Answer::Secret(reference) => FirstLogin::Password(reference),
            Answer::Text(_) => {
                return Err(RunError::workflow(format!(
                    "the password of {place} was not kept as a secret"
                )));
            }
        }
    } else {
        let path = PathBuf::from(&key_file);
        check_key_path(&path).map_err(|e| RunError::workflow(format!("host {name}: {e}")))?;
        FirstLogin::KeyFile(path)
    };
    let scan = ScanHostKey {
        config: config.to_path_buf(),
        name: name.clone(),
        address: address.clone(),
        port: host.port,
    };
    let offered = ctx.step(&key("host-key"), &scan).await?;
    if !offered.known {
        let at = format!("{address}:{}", host.port);
        let trust = ctx
            .ask(
                &key("trust"),
                question(
                    format!(
                        "{at} is new; its host key is {}. Trust it? (yes, or the fingerprint)",
                        offered.fingerprint
                    ),
                    None,
                ),
            )
            .await?;
        let trust = text(trust, &key("trust"))?;
        let accepted = matches!(trust.to_ascii_lowercase().as_str(), "y" | "yes")
            || trust == offered.fingerprint;
        if !accepted {
            return Err(RunError::workflow(format!(
                "host {name}: the host key {} of {at} was not trusted (answered `{}`); nothing was changed on it\nhint: compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host; `foundry setup --reset` asks again, or `foundry host add {name}` adds it by hand",
                offered.fingerprint,
                crate::config::value::shown(&trust),
            )));
        }
    }
    let add = AddHost {
        config: config.to_path_buf(),
        name: name.clone(),
        address,
        user,
        port: host.port,
        login,
        host_key: offered.host_key,
    };
    ctx.step(&key("add"), &add).await
}
