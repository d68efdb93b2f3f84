//! The stack's secrets in OpenBAO: KV v2 at `kv/`, reached at the address the stack config
//! gives (`components.openbao.address`, else the first of `network.openbao_hosts`) with
//! Foundry's stored token. `foundry secret` and the resolution of `${secret:…}` references
//! read and write them here; values are held as `SecretValue` from the moment they arrive.

use std::collections::BTreeMap;
use std::path::Path;

use foundry_activities::container::secret_ref_of;
use foundry_activities::dns::{KeyHolder, random_key};
use foundry_activities::openbao::{BaoClient, TokenLife, keep_alive};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretValue};
use serde::{Deserialize, Serialize};

use crate::config::StackConfig;
use crate::openbao::tls::{self, TokenBinding};
use crate::openbao::token_store;
use crate::secret_ref::{self, SecretRef};

/// The KV v2 mount Foundry keeps secrets in.
pub const MOUNT: &str = "kv";
/// OpenBAO's API port.
pub const PORT: u16 = crate::config::OPENBAO_PORT;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SecretsError {
    pub message: String,
    pub hint: Option<String>,
}

impl SecretsError {
    fn new(message: impl Into<String>, hint: Option<&str>) -> Self {
        SecretsError {
            message: message.into(),
            hint: hint.map(str::to_string),
        }
    }
}

impl From<foundry_core::ActivityError> for SecretsError {
    fn from(e: foundry_core::ActivityError) -> Self {
        SecretsError::new(e.message, None)
    }
}

/// A secret's place: `path/to/secret`, or `path/to/secret:key` for one key of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretPath {
    pub path: String,
    pub key: Option<String>,
}

impl std::str::FromStr for SecretPath {
    type Err = SecretsError;
    fn from_str(text: &str) -> Result<SecretPath, SecretsError> {
        let (path, key) = match text.rsplit_once(':') {
            Some((path, key)) => (path, Some(key)),
            None => (text, None),
        };
        // The reference parser is the one judge of what a path and a key may be.
        let probe = format!("${{secret:{path}:{}}}", key.unwrap_or("k"));
        secret_ref::references(&probe).map_err(|_| {
            SecretsError::new(
                format!("`{text}` is not a secret path like `foundry-core/dns` or `foundry-core/dns:api_key`"),
                Some("paths are letters, digits, `-`, `_`, `.` and `/`, without a leading `/` or `..`"),
            )
        })?;
        Ok(SecretPath {
            path: path.to_string(),
            key: key.map(str::to_string),
        })
    }
}

/// OpenBAO as the stack's secret store.
pub struct Vault {
    client: BaoClient,
    token: SecretValue,
    /// The token's life, asked (and renewed when half spent) at its first use.
    life: tokio::sync::OnceCell<TokenLife>,
}

impl Vault {
    /// OpenBAO of the stack `stack`, with the token Foundry keeps in the home `home`.
    pub fn of_stack(stack: &StackConfig, home: &Path) -> Result<Vault, SecretsError> {
        let addr = stack.openbao_url().ok_or_else(|| {
            SecretsError::new(
                "the stack config says nowhere where OpenBAO runs",
                Some("set components.openbao.address, or network.openbao_hosts"),
            )
        })?;
        Vault::at(&addr, home)
    }

    /// OpenBAO at `addr` (`https://10.77.0.20:8200`), with the token Foundry keeps in
    /// `home`: only when `addr` is the OpenBAO the token was minted for, under the CA it
    /// was minted under (the binding beside it), checked before the token is even read.
    pub fn at(addr: &str, home: &Path) -> Result<Vault, SecretsError> {
        let binding = TokenBinding::load(home)
            .map_err(|e| SecretsError::new(e.0, None))?
            .ok_or_else(|| {
                SecretsError::new(
                    format!(
                        "Foundry's OpenBAO token has no record of the OpenBAO it was minted for \
                         ({} is missing)",
                        home.join(tls::BINDING_PATH).display()
                    ),
                    Some("install OpenBAO again (`foundry component install openbao`): it records it"),
                )
            })?;
        let ca_path = home.join(foundry_activities::openbao::CA_CERT_PATH);
        let ca = std::fs::read(&ca_path).map_err(|e| {
            SecretsError::new(
                format!("reading the stack's CA {}: {e}", ca_path.display()),
                Some("OpenBAO's install makes it; install OpenBAO with this home first"),
            )
        })?;
        binding.allows(addr, &ca).map_err(|e| {
            SecretsError::new(
                format!("{e}: the token is not sent there"),
                Some("the stack config names another OpenBAO than the one Foundry's token belongs to: check components.openbao.address"),
            )
        })?;
        let store = token_store::for_home(home)
            .map_err(|e| SecretsError::new(e.to_string(), Some(e.hint())))?;
        let token = store
            .get()
            .map_err(|e| SecretsError::new(e.to_string(), None))?
            .ok_or_else(|| {
                SecretsError::new(
                    format!(
                        "Foundry holds no OpenBAO token ({} holds none)",
                        store.place()
                    ),
                    Some("OpenBAO's install creates it; install OpenBAO first"),
                )
            })?;
        Ok(Vault {
            client: BaoClient::pinned(addr, &ca)?,
            token,
            life: tokio::sync::OnceCell::new(),
        })
    }

    /// OpenBAO at `addr` with the token of the home `$FOUNDRY_HOME` names, for an
    /// activity: a missing home or token is a permanent error that says what to do.
    pub fn from_env(addr: &str) -> Result<Vault, ActivityError> {
        let home =
            foundry_core::Home::from_env().map_err(|e| ActivityError::permanent(e.to_string()))?;
        Vault::at(addr, home.root()).map_err(|e| {
            let hint = e.hint.map(|h| format!("\nhint: {h}")).unwrap_or_default();
            ActivityError::permanent(format!("{}{hint}", e.message))
        })
    }

    pub fn addr(&self) -> &str {
        self.client.addr()
    }

    /// Foundry's token's life, asked at its first use, when it is renewed if half spent;
    /// a token OpenBAO no longer knows is an error that says how to get a new one.
    pub async fn token_life(&self) -> Result<&TokenLife, SecretsError> {
        self.life
            .get_or_try_init(|| async {
                keep_alive(&self.client, &self.token).await?.ok_or_else(|| {
                    SecretsError::new(
                        format!(
                            "OpenBAO at {} no longer accepts Foundry's token (it expired or \
                             was revoked)",
                            self.addr()
                        ),
                        Some(
                            "`foundry secret recover-token` makes a new one from the root \
                             token or a quorum of unseal keys",
                        ),
                    )
                })
            })
            .await
    }

    /// The keys and values at `path`: none when there is no such secret.
    pub async fn read(&self, path: &str) -> Result<BTreeMap<String, SecretValue>, SecretsError> {
        self.token_life().await?;
        let data = self.client.kv_get(&self.token, MOUNT, path).await?;
        Ok(data
            .and_then(|d| d.as_object().cloned())
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| {
                let value = match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, SecretValue::new(value))
            })
            .collect())
    }

    /// Sets `key` at `path`, keeping the secret's other keys.
    pub async fn write(
        &self,
        path: &str,
        key: &str,
        value: &SecretValue,
    ) -> Result<(), SecretsError> {
        let mut data: serde_json::Map<String, serde_json::Value> = self
            .read(path)
            .await?
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v.expose().to_string())))
            .collect();
        data.insert(
            key.into(),
            serde_json::Value::String(value.expose().to_string()),
        );
        self.client
            .kv_put(&self.token, MOUNT, path, &serde_json::Value::Object(data))
            .await?;
        Ok(())
    }

    /// The secrets and folders (ending in `/`) under `path` (`""` for the top).
    pub async fn list(&self, path: &str) -> Result<Vec<String>, SecretsError> {
        self.token_life().await?;
        Ok(self.client.kv_list(&self.token, MOUNT, path).await?)
    }

    /// Looks up each reference, for the resolver's last stage: what OpenBAO holds.
    pub async fn fetch(&self, references: &[SecretRef]) -> Result<Prefetched, SecretsError> {
        let paths: std::collections::BTreeSet<&str> =
            references.iter().map(|r| r.path.as_str()).collect();
        let mut found = BTreeMap::new();
        for path in paths {
            for (key, value) in self.read(path).await? {
                found.insert((path.to_string(), key), value);
            }
        }
        Ok(Prefetched(found))
    }
}

/// Values fetched from OpenBAO ahead of a resolution (the resolver asks synchronously).
pub struct Prefetched(BTreeMap<(String, String), SecretValue>);

impl secret_ref::SecretStore for Prefetched {
    fn get(&self, path: &str, key: &str) -> Result<Option<SecretValue>, String> {
        Ok(self.0.get(&(path.to_string(), key.to_string())).cloned())
    }
}

/// A secret of the stack that a component needs, as `${secret:PATH:KEY}` names it:
/// resolved at the moment of use (environment, `~/.foundryvars`, OpenBAO); when it is set
/// nowhere and `generate` is on, a new random value is written to OpenBAO at that path.
/// The run keeps the value in its own store and journals only the reference. When `holder`
/// (a running container) already holds the same value, its reference is reused, so the
/// container's spec, and thus the container, stays the same.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnsureStackSecret {
    pub path: String,
    pub key: String,
    /// What the secret is for, in messages.
    pub purpose: String,
    /// OpenBAO's address (`https://10.77.0.20:8200`); none where OpenBAO is not part of the
    /// stack.
    #[serde(default)]
    pub openbao: Option<String>,
    #[serde(default)]
    pub generate: bool,
    #[serde(default)]
    pub holder: Option<KeyHolder>,
}

/// The source of a secret this step made.
pub const GENERATED: &str = "generated";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackSecretOutput {
    pub secret: foundry_core::SecretRef,
    /// `environment`, `foundryvars`, `openbao`, or `generated` (and written to OpenBAO).
    pub source: String,
}

/// A secret read for a live command: its reference in a store of this process only, and
/// that store.
pub type Held = (
    foundry_core::secret::SecretRef,
    std::sync::Arc<dyn foundry_core::secret::SecretStore>,
);

impl EnsureStackSecret {
    fn reference(&self) -> SecretRef {
        SecretRef {
            path: self.path.clone(),
            key: self.key.clone(),
        }
    }

    fn vault(&self) -> Result<Option<Vault>, ActivityError> {
        let Some(addr) = &self.openbao else {
            return Ok(None);
        };
        // The environment comes first: a value set there needs no OpenBAO, nor its token.
        let env = secret_ref::env_name(secret_ref::STACK_NAMESPACE, &self.reference());
        if std::env::var_os(env).is_some() {
            return Ok(None);
        }
        Vault::from_env(addr)
            .map(Some)
            .map_err(|e| ActivityError::permanent(format!("the {}: {}", self.purpose, e.message)))
    }

    /// The value as it resolves now, held in a store of this process only, for a live
    /// command's activities outside a run (a status, a plan): its reference, and that
    /// store. None when it is set nowhere.
    pub async fn held(&self) -> Result<Option<Held>, ActivityError> {
        use foundry_core::secret::{MemorySecretStore, SecretStore};
        let Some((value, _)) = self.current().await? else {
            return Ok(None);
        };
        let store = std::sync::Arc::new(MemorySecretStore::default());
        let reference = SecretStore::put(store.as_ref(), &value)
            .map_err(|e| ActivityError::permanent(e.to_string()))?;
        Ok(Some((reference, store)))
    }

    /// The value as it resolves now, and where it was found; none when it is set nowhere.
    pub async fn current(&self) -> Result<Option<(SecretValue, &'static str)>, ActivityError> {
        self.resolve(self.vault()?.as_ref()).await
    }

    /// The value and where it was found; none when it is set nowhere.
    async fn resolve(
        &self,
        vault: Option<&Vault>,
    ) -> Result<Option<(SecretValue, &'static str)>, ActivityError> {
        let reference = self.reference();
        let prefetched = match vault {
            Some(vault) => Some(
                vault
                    .fetch(std::slice::from_ref(&reference))
                    .await
                    .map_err(|e| ActivityError::transient(format!("the {}: {e}", self.purpose)))?,
            ),
            None => None,
        };
        let vars = secret_ref::Foundryvars::load(&secret_ref::vars_path())
            .map_err(|e| ActivityError::permanent(e.to_string()))?;
        let env = |name: &str| std::env::var(name).ok();
        let resolver = secret_ref::Resolver {
            namespace: secret_ref::STACK_NAMESPACE.into(),
            env: &env,
            vars: &vars,
            store: prefetched
                .as_ref()
                .map(|p| p as &dyn secret_ref::SecretStore),
        };
        match resolver.resolve(&reference) {
            Ok((value, source)) => Ok(Some((value, source_name(source)))),
            Err(secret_ref::SecretRefError::NotFound { .. }) => Ok(None),
            Err(e) => Err(ActivityError::permanent(e.to_string())),
        }
    }

    /// The holder's reference when it reveals `value`, else `value` newly kept.
    async fn keep(
        &self,
        cx: &ActivityCx,
        value: &SecretValue,
    ) -> Result<foundry_core::SecretRef, ActivityError> {
        if let Some(holder) = &self.holder
            && let Some(reference) =
                secret_ref_of(&holder.endpoint, &holder.container, &holder.var).await?
            && cx.reveal(&reference).is_ok_and(|held| held == *value)
        {
            return Ok(reference);
        }
        cx.keep(value)
    }

    async fn found(
        &self,
        cx: &ActivityCx,
        vault: Option<&Vault>,
    ) -> Result<Option<StackSecretOutput>, ActivityError> {
        let Some((value, source)) = self.resolve(vault).await? else {
            return Ok(None);
        };
        Ok(Some(StackSecretOutput {
            secret: self.keep(cx, &value).await?,
            source: source.into(),
        }))
    }
}

fn source_name(source: secret_ref::Source) -> &'static str {
    match source {
        secret_ref::Source::Environment => "environment",
        secret_ref::Source::Foundryvars => "foundryvars",
        secret_ref::Source::Store => "openbao",
    }
}

impl Activity for EnsureStackSecret {
    type Output = StackSecretOutput;

    fn kind(&self) -> &'static str {
        "stack-secret"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<StackSecretOutput>, ActivityError> {
        self.found(cx, self.vault()?.as_ref()).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<StackSecretOutput, ActivityError> {
        let vault = self.vault()?;
        if let Some(found) = self.found(cx, vault.as_ref()).await? {
            return Ok(found);
        }
        let reference = self.reference();
        let (Some(vault), true) = (vault, self.generate) else {
            return Err(ActivityError::permanent(format!(
                "the {} ({reference}) is set nowhere\nhint: `foundry secret set {}:{}`, or install OpenBAO first so that Foundry can make one",
                self.purpose, self.path, self.key
            )));
        };
        let value = random_key();
        vault
            .write(&self.path, &self.key, &value)
            .await
            .map_err(|e| ActivityError::transient(format!("the {}: {e}", self.purpose)))?;
        Ok(StackSecretOutput {
            secret: self.keep(cx, &value).await?,
            source: GENERATED.into(),
        })
    }
}
