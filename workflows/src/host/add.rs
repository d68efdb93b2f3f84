//! `foundry host add`: the first login (password or agent), then a key of the host's own,
//! installed, proven, stored, and the host recorded in the stack config.

use std::path::PathBuf;

use foundry_activities::ssh::{
    Login, SshSession, SshTarget, command_line, fingerprint_of, generate_ed25519, public_of,
    scan_host_key,
};
use foundry_core::ActivityCx;
use serde::Serialize;

use super::HostError;
use crate::config::{self, HostEntry, KeyField, Selected, StackConfig};
use crate::keys::KeyStore;

/// Adds `$1` to the login user's `authorized_keys` once; runs as that user.
const INSTALL_KEY: &str = r#"set -eu
key="$1"
umask 077
mkdir -p "$HOME/.ssh"
f="$HOME/.ssh/authorized_keys"
if ! grep -qxF -- "$key" "$f" 2>/dev/null; then
  if [ -s "$f" ] && [ -n "$(tail -c1 "$f")" ]; then echo >> "$f"; fi
  printf '%s\n' "$key" >> "$f"
fi
chmod 0700 "$HOME/.ssh"; chmod 0600 "$f"
"#;

/// The host key to trust for a host: the one the config knows, or the one it offers now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostKeyCheck {
    pub host_key: String,
    pub fingerprint: String,
    /// Already in the config for this name, address and port: no question to ask.
    pub known: bool,
}

/// The host key of `name` at `address:port`: known from `config`, else scanned.
pub async fn check_host_key(
    config: &StackConfig,
    name: &str,
    address: &str,
    port: u16,
) -> Result<HostKeyCheck, HostError> {
    let known = config
        .host(name)
        .filter(|h| h.address == address && h.port == port)
        .and_then(|h| h.host_key.clone());
    let (host_key, known) = match known {
        Some(key) => (key, true),
        None => (scan_host_key(address, port).await?, false),
    };
    let fingerprint = fingerprint_of(&host_key)?;
    Ok(HostKeyCheck {
        host_key,
        fingerprint,
        known,
    })
}

/// What `host add` is asked to do. `host_key` is the one the user trusts.
#[derive(Clone, Debug)]
pub struct AddRequest {
    pub name: String,
    pub address: String,
    pub user: String,
    pub port: u16,
    pub login: Login,
    pub host_key: String,
}

/// What `host add` did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Added {
    pub host: String,
    pub address: String,
    pub user: String,
    pub port: u16,
    /// Where the host's login key is kept: its file, or its reference in OpenBAO.
    pub key: KeyField,
    pub key_fingerprint: String,
    pub host_key_fingerprint: String,
    pub config: PathBuf,
    /// A key was made now (otherwise the stored one was installed again).
    pub new_key: bool,
    /// The config changed (otherwise it already said all this).
    pub config_changed: bool,
}

/// Logs in as `request.login` says, installs the host's own key (made once, then reused),
/// proves a key login works, stores the key, and records the host in the config.
pub async fn add(
    selected: &Selected,
    request: &AddRequest,
    store: &dyn KeyStore,
) -> Result<Added, HostError> {
    config::check_host_name(&request.name).map_err(HostError::new)?;
    let mut stack = selected.load_or_default()?;
    let target = SshTarget {
        address: request.address.clone(),
        port: request.port,
        user: request.user.clone(),
        key: PathBuf::new().into(),
        host_key: request.host_key.clone(),
    };
    let first = SshSession::connect_with(&target, &request.login).await?;
    // The host's key: the one in the store, else the one the config keeps in OpenBAO (a
    // key that moved there), else a new one.
    let in_openbao = stack
        .host(&request.name)
        .filter(|h| matches!(h.key, Some(KeyField::Secret(_))));
    let (private, new_key, kept) = match (store.get(&request.name)?, in_openbao) {
        (Some(key), _) => (key, false, None),
        (None, Some(entry)) => {
            let source = stack.ssh_target(entry)?.key;
            (source.private_key().await?, false, entry.key.clone())
        }
        (None, None) => (generate_ed25519(&comment(&request.name))?.0, true, None),
    };
    let public = public_of(&private)?;
    let line = command_line(
        &[
            "sh".into(),
            "-c".into(),
            INSTALL_KEY.into(),
            "sh".into(),
            format!("{public} {}", comment(&request.name)),
        ],
        false,
    )?;
    let cx = ActivityCx::standalone("host-add");
    let (code, last_err) = first.run(&line, &cx).await?;
    if code != 0 {
        return Err(HostError::new(format!(
            "{target}: installing the key in ~/.ssh/authorized_keys failed with status {code}{}",
            last_err.map(|l| format!(": {l}")).unwrap_or_default()
        )));
    }
    let proof = SshSession::connect_with(&target, &Login::KeyData(private.clone()))
        .await
        .map_err(|e| {
            HostError::new(format!("the new key does not log in: {}", e.message))
                .hint("the host's sshd may not accept keys for this user (`PubkeyAuthentication`, `AuthorizedKeysFile`)")
        })?;
    let (code, _) = proof.run("true", &cx).await?;
    if code != 0 {
        return Err(HostError::new(format!(
            "{target}: a command over the new key's login exited with status {code}"
        )));
    }
    let key = match kept {
        Some(key) => key,
        None => store.put(&request.name, &private)?.into(),
    };
    let entry = HostEntry {
        name: request.name.clone(),
        address: request.address.clone(),
        user: request.user.clone(),
        port: request.port,
        key: Some(key.clone()),
        host_key: Some(request.host_key.clone()),
    };
    let config_changed = !selected.exists || stack.host(&request.name) != Some(&entry);
    if config_changed {
        stack.upsert_host(entry);
        config::save(
            &selected.path,
            &stack,
            "Foundry's stack config; `foundry host add` records hosts here.",
        )?;
    }
    Ok(Added {
        host: request.name.clone(),
        address: request.address.clone(),
        user: request.user.clone(),
        port: request.port,
        key,
        key_fingerprint: fingerprint_of(&public)?,
        host_key_fingerprint: fingerprint_of(&request.host_key)?,
        config: selected.path.clone(),
        new_key,
        config_changed,
    })
}

fn comment(host: &str) -> String {
    format!("foundry@{host}")
}
