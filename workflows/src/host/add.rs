//! `foundry host add`: the first login (password or agent), then a key of the host's own,
//! installed, proven, stored, and the host recorded in the stack config. [`AddHost`] is
//! the same as a step of a run (setup's wizard), its password by reference only.

use std::path::{Path, PathBuf};

use foundry_activities::ssh::{
    KeySource, Login, SshSession, SshTarget, command_line, fingerprint_of, generate_ed25519,
    public_of, scan_host_key,
};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef};
use serde::{Deserialize, Serialize};

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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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

/// The host `name` as the config at `selected` records it, when it records this address,
/// user and port with a key and a host key, and that key logs in now: what an earlier
/// [`add`] did, found without changing anything.
pub async fn recorded(
    selected: &Selected,
    name: &str,
    address: &str,
    user: &str,
    port: u16,
) -> Result<Option<Added>, HostError> {
    if !selected.exists {
        return Ok(None);
    }
    let stack = selected.load()?;
    let Some(entry) = stack
        .host(name)
        .filter(|h| h.address == address && h.user == user && h.port == port)
    else {
        return Ok(None);
    };
    let (Some(key), Some(host_key)) = (entry.key.clone(), entry.host_key.clone()) else {
        return Ok(None);
    };
    let target = stack.ssh_target(entry)?;
    let Ok(private) = target.key.private_key().await else {
        return Ok(None);
    };
    let public = public_of(&private)?;
    let Ok(session) = SshSession::connect_with(&target, &Login::KeyData(private)).await else {
        return Ok(None);
    };
    match session
        .run("true", &ActivityCx::standalone("host-add"))
        .await
    {
        Ok((0, _)) => {}
        _ => return Ok(None),
    }
    Ok(Some(Added {
        host: name.to_string(),
        address: address.to_string(),
        user: user.to_string(),
        port,
        key,
        key_fingerprint: fingerprint_of(&public)?,
        host_key_fingerprint: fingerprint_of(&host_key)?,
        config: selected.path.clone(),
        new_key: false,
        config_changed: false,
    }))
}

/// How [`AddHost`] logs in the first time: a key file the person named, or a password
/// kept in the run's secret store (only its reference is journaled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FirstLogin {
    KeyFile(PathBuf),
    Password(SecretRef),
}

/// [`add`] as a step of a run: a host recorded already with a working key login is left as
/// it is (so a repeated or resumed step logs in with no password); otherwise it is added,
/// and its password forgotten from the run's store once it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AddHost {
    pub config: PathBuf,
    pub name: String,
    pub address: String,
    pub user: String,
    pub port: u16,
    pub login: FirstLogin,
    /// The host key the person accepted (or the config knew).
    pub host_key: String,
}

impl AddHost {
    fn selected(&self) -> Selected {
        Selected {
            path: self.config.clone(),
            exists: self.config.exists(),
        }
    }

    async fn recorded(&self) -> Result<Option<Added>, ActivityError> {
        recorded(
            &self.selected(),
            &self.name,
            &self.address,
            &self.user,
            self.port,
        )
        .await
        .map_err(refused)
    }
}

/// A `host add` failure as a step's permanent error: a resumed setup runs the step again.
fn refused(e: HostError) -> ActivityError {
    ActivityError::permanent(match e.hint {
        Some(hint) => format!("{}\nhint: {hint}", e.message),
        None => e.message,
    })
}

impl Activity for AddHost {
    type Output = Added;

    fn kind(&self) -> &'static str {
        "host-add"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Added>, ActivityError> {
        self.recorded().await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Added, ActivityError> {
        if let Some(added) = self.recorded().await? {
            self.forget(cx);
            return Ok(added);
        }
        let login = match &self.login {
            FirstLogin::KeyFile(path) => Login::Key(KeySource::File(path.clone())),
            FirstLogin::Password(reference) => Login::Password(cx.reveal(reference)?),
        };
        let home =
            foundry_core::Home::from_env().map_err(|e| ActivityError::permanent(e.to_string()))?;
        let request = AddRequest {
            name: self.name.clone(),
            address: self.address.clone(),
            user: self.user.clone(),
            port: self.port,
            login,
            host_key: self.host_key.clone(),
        };
        let store = crate::keys::FileKeyStore::in_home(home.root());
        let added = add(&self.selected(), &request, &store)
            .await
            .map_err(|e| {
                let hint = format!(
                    "once the cause is fixed, `foundry setup` tries again; a wrong answer: `foundry setup --reset` asks again, or `foundry host add {}` adds the host by hand",
                    self.name
                );
                refused(HostError {
                    hint: Some(e.hint.map_or(hint.clone(), |h| format!("{h}; {hint}"))),
                    message: e.message,
                })
            })?;
        self.forget(cx);
        Ok(added)
    }
}

impl AddHost {
    /// The password has done its work: it leaves the run's store now rather than at the
    /// run's end (a setup that stops later keeps its store until it resumes).
    fn forget(&self, cx: &ActivityCx) {
        if let FirstLogin::Password(reference) = &self.login {
            let _ = cx.forget(reference);
        }
    }
}

/// Whether `path` names a key file: absolute, so a resumed run finds the same one.
pub fn check_key_path(path: &Path) -> Result<(), String> {
    if !path.is_absolute() {
        return Err(format!(
            "`{}` is a relative path: give the key file's full path",
            path.display()
        ));
    }
    Ok(())
}
