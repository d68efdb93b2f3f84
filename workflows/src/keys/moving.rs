//! `ssh-keys-move`: the keys Foundry made (`$FOUNDRY_HOME/keys/<host>`) move into OpenBAO,
//! host after host, each in three journaled steps, in this order: the key is written to
//! OpenBAO (never over a different one), the host's `key:` in the stack config becomes a
//! reference to it, and the file is removed. A kill between any two leaves a state that a
//! resume finishes: the file goes only once OpenBAO holds the same key and the config
//! points there. Keys the user gave (their own file, a lab's shared key) stay where they are.

use std::path::{Path, PathBuf};

use foundry_core::{
    Activity, ActivityCx, ActivityError, Ctx, InDoubt, RunError, SecretValue, Workflow,
};
use serde::{Deserialize, Serialize};

use super::{FileKeyStore, OPENBAO_KEY, openbao_path};
use crate::config::{self, KeyField, StackConfig};
use crate::host::HostError;
use crate::secret_ref::SecretRef;
use crate::secrets::Vault;

/// A host whose key moves, and the file it is in now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveHost {
    pub name: String,
    pub file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveInput {
    /// The stack config whose hosts' `key:` become references.
    pub config: PathBuf,
    /// OpenBAO's address, `http://10.77.0.240:8200`.
    pub openbao: String,
    pub hosts: Vec<MoveHost>,
}

/// What the run did for one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moved {
    pub host: String,
    /// Where the key is now: its secret path in OpenBAO.
    pub path: String,
    /// Something changed (otherwise the key had moved already).
    pub changed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveOutput {
    pub hosts: Vec<Moved>,
}

/// The reference a moved key of `host` is known by in the stack config.
fn reference(host: &str) -> SecretRef {
    SecretRef {
        path: openbao_path(host),
        key: OPENBAO_KEY.into(),
    }
}

/// The key file's text; none when it is gone.
fn read_key_file(file: &Path) -> Result<Option<SecretValue>, ActivityError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(SecretValue::new(text))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ActivityError::permanent(format!(
            "reading the key {}: {e}",
            file.display()
        ))),
    }
}

/// The key OpenBAO at `addr` holds for `host`; none when it holds none.
async fn held_key(addr: &str, host: &str) -> Result<Option<SecretValue>, ActivityError> {
    let path = openbao_path(host);
    let mut found = Vault::from_env(addr)?
        .read(&path)
        .await
        .map_err(|e| ActivityError::transient(format!("reading {path}: {}", e.message)))?;
    Ok(found.remove(OPENBAO_KEY))
}

/// Writes the host's key to OpenBAO; done when OpenBAO holds exactly that key. A different
/// key there is never overwritten.
pub struct StoreKey {
    pub openbao: String,
    pub host: String,
    pub file: PathBuf,
}

impl StoreKey {
    /// Whether OpenBAO already holds this key (an error when it holds another one).
    async fn stored(&self) -> Result<Option<(bool, Option<SecretValue>)>, ActivityError> {
        let file = read_key_file(&self.file)?;
        let held = held_key(&self.openbao, &self.host).await?;
        let path = openbao_path(&self.host);
        match (file, held) {
            (Some(file), Some(held)) if file == held => Ok(Some((true, None))),
            (Some(_), Some(_)) => Err(ActivityError::permanent(format!(
                "OpenBAO already holds a different key for host {} at {path}: nothing was overwritten, and {} stays; hint: compare them, then delete the one that is wrong (`foundry secret get {path}:{OPENBAO_KEY}`)",
                self.host,
                self.file.display()
            ))),
            // The file goes only after OpenBAO holds it: the key moved already.
            (None, Some(_)) => Ok(Some((true, None))),
            (Some(file), None) => Ok(Some((false, Some(file)))),
            (None, None) => Err(ActivityError::permanent(format!(
                "host {}: the key {} is gone and OpenBAO holds none at {path}; hint: `foundry host add {}` gives the host a new key",
                self.host,
                self.file.display(),
                self.host
            ))),
        }
    }
}

impl Activity for StoreKey {
    /// Whether the key was written now.
    type Output = bool;

    fn kind(&self) -> &'static str {
        "ssh-key-store"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        match self.stored().await {
            Ok(Some((true, _))) => Ok(Some(false)),
            Ok(_) => Ok(None),
            // A conflict is for the step to report, not for the probe to decide.
            Err(e) if !e.transient => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<bool, ActivityError> {
        let Some((false, Some(key))) = self.stored().await? else {
            return Ok(false);
        };
        let path = openbao_path(&self.host);
        Vault::from_env(&self.openbao)?
            .write(&path, OPENBAO_KEY, &key)
            .await
            .map_err(|e| ActivityError::transient(format!("writing {path}: {}", e.message)))?;
        Ok(true)
    }
}

/// Points the host's `key:` in the stack config at its key in OpenBAO; done when it does.
pub struct PointConfig {
    pub config: PathBuf,
    pub host: String,
}

impl PointConfig {
    /// The config's text, the config, and whether the host's key is the reference already.
    fn current(&self) -> Result<(String, StackConfig, bool), ActivityError> {
        let failed = |e: config::ConfigError| ActivityError::permanent(e.to_string());
        let text = config::read_text(&self.config).map_err(failed)?;
        let stack = config::parse(&self.config, &text).map_err(failed)?;
        let entry = stack.host(&self.host).ok_or_else(|| {
            ActivityError::permanent(format!(
                "no host `{}` in {} any more",
                self.host,
                self.config.display()
            ))
        })?;
        let points = entry.key == Some(KeyField::Secret(reference(&self.host)));
        Ok((text, stack, points))
    }
}

impl Activity for PointConfig {
    /// Whether the config changed now.
    type Output = bool;

    fn kind(&self) -> &'static str {
        "ssh-key-config"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        let (_, _, points) = self.current()?;
        Ok(points.then_some(false))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<bool, ActivityError> {
        let (text, mut stack, points) = self.current()?;
        if points {
            return Ok(false);
        }
        let new_key = KeyField::Secret(reference(&self.host));
        let mut entry = stack
            .host(&self.host)
            .cloned()
            .ok_or_else(|| ActivityError::permanent("the host went away"))?;
        let old = entry.key.replace(new_key.clone());
        stack.upsert_host(entry);
        let failed = |e: config::ConfigError| ActivityError::permanent(e.to_string());
        // The key's own text replaced in place keeps the file's comments and layout; when
        // that text is not found exactly once, or the result reads differently from the
        // intended config, the whole config is written out instead.
        let in_place = old.map(|old| old.to_string()).and_then(|old| {
            (text.matches(&old).count() == 1)
                .then(|| text.replacen(&old, &new_key.to_string(), 1))
                .filter(|edited| config::parse(&self.config, edited).ok().as_ref() == Some(&stack))
        });
        match in_place {
            Some(edited) => config::write_text(&self.config, &edited).map_err(failed)?,
            None => config::save(
                &self.config,
                &stack,
                "Foundry's stack config; host keys made by Foundry are kept in OpenBAO.",
            )
            .map_err(failed)?,
        }
        Ok(true)
    }
}

/// Removes the key file, once OpenBAO holds the same key and the config points there.
pub struct RemoveKeyFile {
    pub openbao: String,
    pub config: PathBuf,
    pub host: String,
    pub file: PathBuf,
}

impl Activity for RemoveKeyFile {
    /// Whether the file was removed now.
    type Output = bool;

    fn kind(&self) -> &'static str {
        "ssh-key-remove"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<bool>, ActivityError> {
        Ok((!self.file.exists()).then_some(false))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<bool, ActivityError> {
        let Some(file) = read_key_file(&self.file)? else {
            return Ok(false);
        };
        let held = held_key(&self.openbao, &self.host).await?;
        let (_, _, points) = PointConfig {
            config: self.config.clone(),
            host: self.host.clone(),
        }
        .current()?;
        if held.as_ref() != Some(&file) || !points {
            return Err(ActivityError::permanent(format!(
                "host {}: {} was not removed: OpenBAO does not hold the same key, or the config does not point there",
                self.host,
                self.file.display()
            )));
        }
        std::fs::remove_file(&self.file).map_err(|e| {
            ActivityError::permanent(format!("removing {}: {e}", self.file.display()))
        })?;
        Ok(true)
    }
}

#[derive(Default)]
pub struct KeysMove;

impl Workflow for KeysMove {
    const NAME: &'static str = "ssh-keys-move";
    const VERSION: u32 = 1;
    type Input = MoveInput;
    type Output = MoveOutput;

    fn check(&self, input: &MoveInput) -> Result<(), String> {
        for host in &input.hosts {
            config::check_host_name(&host.name)?;
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: MoveInput) -> Result<MoveOutput, RunError> {
        let mut hosts = Vec::with_capacity(input.hosts.len());
        // One host after another: each rewrites the same config file.
        for host in input.hosts {
            let name = host.name;
            let stored = StoreKey {
                openbao: input.openbao.clone(),
                host: name.clone(),
                file: host.file.clone(),
            };
            let written = ctx.step(&format!("ssh-keys/{name}/store"), &stored).await?;
            let point = PointConfig {
                config: input.config.clone(),
                host: name.clone(),
            };
            let pointed = ctx.step(&format!("ssh-keys/{name}/config"), &point).await?;
            let remove = RemoveKeyFile {
                openbao: input.openbao.clone(),
                config: input.config.clone(),
                host: name.clone(),
                file: host.file,
            };
            let removed = ctx
                .step(&format!("ssh-keys/{name}/remove"), &remove)
                .await?;
            hosts.push(Moved {
                path: openbao_path(&name),
                host: name,
                changed: written || pointed || removed,
            });
        }
        Ok(MoveOutput { hosts })
    }
}

/// A host whose key does not move, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftAlone {
    pub host: String,
    /// Where its key is: `file PATH`, `openbao PATH`, or `none`.
    pub key: String,
    pub reason: String,
}

/// What a move would do: the run's input when some key moves, and the hosts left alone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    pub input: Option<MoveInput>,
    pub left: Vec<LeftAlone>,
}

/// The move of the keys Foundry made for `names` (every host when none), in the stack
/// config at `config_path`, from the key store of the home `home` to the stack's OpenBAO.
pub fn move_plan(
    stack: &StackConfig,
    config_path: &Path,
    home: &Path,
    names: &[String],
) -> Result<KeyPlan, HostError> {
    for name in names {
        if stack.host(name).is_none() {
            return Err(
                HostError::new(format!("no host `{name}` in {}", config_path.display()))
                    .hint("`foundry host list` shows the hosts"),
            );
        }
    }
    let store = FileKeyStore::in_home(home);
    let (mut hosts, mut left) = (Vec::new(), Vec::new());
    for entry in &stack.hosts {
        if !names.is_empty() && !names.contains(&entry.name) {
            continue;
        }
        let mut leave = |key: String, reason: &str| {
            left.push(LeftAlone {
                host: entry.name.clone(),
                key,
                reason: reason.into(),
            })
        };
        match &entry.key {
            None => leave("none".into(), "no key yet"),
            Some(key @ KeyField::Secret(_)) => leave(key.place(), "in OpenBAO already"),
            Some(KeyField::File(file)) if store.holds(&entry.name, file) => hosts.push(MoveHost {
                name: entry.name.clone(),
                file: file.clone(),
            }),
            Some(key) => leave(key.place(), "not Foundry's, left where it is"),
        }
    }
    if hosts.is_empty() {
        return Ok(KeyPlan { input: None, left });
    }
    let openbao = stack.openbao_url().ok_or_else(|| {
        HostError::new(
            "the stack config says nowhere where OpenBAO runs: the keys stay in their files",
        )
        .hint("set components.openbao.address, or network.openbao_hosts, and install OpenBAO")
    })?;
    Ok(KeyPlan {
        input: Some(MoveInput {
            config: config_path.to_path_buf(),
            openbao,
            hosts,
        }),
        left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HostEntry;

    fn entry(name: &str, key: Option<KeyField>) -> HostEntry {
        HostEntry {
            name: name.into(),
            address: format!("10.0.0.{}", name.len()),
            user: "admin".into(),
            port: 22,
            key,
            host_key: None,
        }
    }

    #[test]
    fn only_keys_foundry_made_move() {
        let home = Path::new("/h");
        let mut stack = StackConfig::default();
        stack.upsert_host(entry("made", Some(PathBuf::from("/h/keys/made").into())));
        stack.upsert_host(entry(
            "own",
            Some(PathBuf::from("/u/.ssh/id_ed25519").into()),
        ));
        stack.upsert_host(entry("moved", Some(KeyField::Secret(reference("moved")))));
        stack.upsert_host(entry("new", None));
        // Without OpenBAO in the config, a key that would move is an error, not a guess.
        let err = move_plan(&stack, Path::new("/h/s.yaml"), home, &[]).expect_err("no OpenBAO");
        assert!(err.message.contains("OpenBAO"), "{}", err.message);
        stack.components = Some(crate::config::Components::default());
        if let Some(c) = stack.components.as_mut() {
            c.openbao.address = Some(crate::config::At::new("10.0.0.9".parse().expect("ip")));
        }
        let plan = move_plan(&stack, Path::new("/h/s.yaml"), home, &[]).expect("plan");
        let input = plan.input.expect("a move");
        assert_eq!(input.openbao, "https://10.0.0.9:8200");
        assert_eq!(
            input.hosts,
            [MoveHost {
                name: "made".into(),
                file: "/h/keys/made".into()
            }]
        );
        let left: Vec<(&str, &str)> = plan
            .left
            .iter()
            .map(|l| (l.host.as_str(), l.reason.as_str()))
            .collect();
        assert_eq!(
            left,
            [
                ("own", "not Foundry's, left where it is"),
                ("moved", "in OpenBAO already"),
                ("new", "no key yet"),
            ]
        );
        let named = move_plan(&stack, Path::new("/h/s.yaml"), home, &["own".into()]).expect("own");
        assert!(named.input.is_none());
        assert!(move_plan(&stack, Path::new("/h/s.yaml"), home, &["nope".into()]).is_err());
    }
}
