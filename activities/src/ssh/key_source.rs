//! Where a host's private login key comes from: a file, or a secret in OpenBAO read at the
//! moment of login through the process's [`KeyVault`]. This crate knows no token: the
//! program that can read OpenBAO installs the vault once, with [`set_key_vault`].

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use foundry_core::{ActivityError, SecretValue};
use serde::{Deserialize, Serialize};

/// How a stored key's source is written: `openbao:ADDR#PATH:KEY`.
const OPENBAO_PREFIX: &str = "openbao:";

/// A private login key (OpenSSH format): a file, or a key of a secret in OpenBAO.
///
/// Written as one string (so journals that hold a plain path still read): the path itself,
/// or `openbao:http://10.77.0.240:8200#foundry/ssh-keys/web-1:private_key`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum KeySource {
    File(PathBuf),
    Openbao {
        /// OpenBAO's address, `http://10.77.0.240:8200`.
        addr: String,
        /// The secret's path under Foundry's KV mount, `foundry/ssh-keys/web-1`.
        path: String,
        /// The secret's key that holds the private key, `private_key`.
        key: String,
    },
}

impl KeySource {
    /// The key file, when the key is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            KeySource::File(path) => Some(path),
            KeySource::Openbao { .. } => None,
        }
    }

    /// The private key's text, read now (from its file, or from OpenBAO through the vault).
    pub async fn private_key(&self) -> Result<SecretValue, ActivityError> {
        match self {
            KeySource::File(path) => {
                std::fs::read_to_string(path)
                    .map(SecretValue::new)
                    .map_err(|e| {
                        ActivityError::permanent(format!("reading the key {}: {e}", path.display()))
                    })
            }
            KeySource::Openbao { addr, path, key } => {
                let vault = KEY_VAULT.get().ok_or_else(|| {
                    ActivityError::permanent(format!(
                        "the key {self} is kept in OpenBAO, and this program has no way to read OpenBAO"
                    ))
                })?;
                vault.read(addr, path, key).await?.ok_or_else(|| {
                    ActivityError::permanent(format!(
                        "OpenBAO at {addr} holds no `{key}` at {path}; hint: `foundry host add` the host again to give it a new key"
                    ))
                })
            }
        }
    }
}

impl From<PathBuf> for KeySource {
    fn from(path: PathBuf) -> KeySource {
        KeySource::File(path)
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "{}", path.display()),
            KeySource::Openbao { addr, path, key } => {
                write!(f, "{OPENBAO_PREFIX}{addr}#{path}:{key}")
            }
        }
    }
}

impl std::str::FromStr for KeySource {
    type Err = String;
    fn from_str(text: &str) -> Result<KeySource, String> {
        let Some(rest) = text.strip_prefix(OPENBAO_PREFIX) else {
            return Ok(KeySource::File(PathBuf::from(text)));
        };
        let bad = || {
            format!(
                "`{text}` is not a stored key like `openbao:http://10.0.0.5:8200#foundry/ssh-keys/web-1:private_key`"
            )
        };
        let (addr, place) = rest.rsplit_once('#').ok_or_else(bad)?;
        let (path, key) = place.rsplit_once(':').ok_or_else(bad)?;
        if addr.is_empty() || path.is_empty() || key.is_empty() {
            return Err(bad());
        }
        Ok(KeySource::Openbao {
            addr: addr.into(),
            path: path.into(),
            key: key.into(),
        })
    }
}

impl TryFrom<String> for KeySource {
    type Error = String;
    fn try_from(text: String) -> Result<KeySource, String> {
        text.parse()
    }
}

impl From<KeySource> for String {
    fn from(source: KeySource) -> String {
        source.to_string()
    }
}

/// What [`KeyVault::read`] returns.
pub type VaultRead<'a> =
    Pin<Box<dyn Future<Output = Result<Option<SecretValue>, ActivityError>> + Send + 'a>>;

/// Reads keys kept in OpenBAO, with whatever token the program holds.
pub trait KeyVault: Send + Sync {
    /// `key` of the secret at `path` in OpenBAO at `addr`; none when it is not there.
    /// A failure to reach OpenBAO is transient; the value never appears in an error.
    fn read<'a>(&'a self, addr: &'a str, path: &'a str, key: &'a str) -> VaultRead<'a>;
}

static KEY_VAULT: OnceLock<Arc<dyn KeyVault>> = OnceLock::new();

/// Installs the process's key vault; false when one was installed already (it stays).
pub fn set_key_vault(vault: Arc<dyn KeyVault>) -> bool {
    KEY_VAULT.set(vault).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_form_round_trips_and_old_paths_still_read() {
        let stored = KeySource::Openbao {
            addr: "http://10.77.0.240:8200".into(),
            path: "foundry/ssh-keys/host-1".into(),
            key: "private_key".into(),
        };
        let text = stored.to_string();
        assert_eq!(
            text,
            "openbao:http://10.77.0.240:8200#foundry/ssh-keys/host-1:private_key"
        );
        assert_eq!(text.parse::<KeySource>(), Ok(stored.clone()));
        let json = serde_json::to_string(&stored).expect("json");
        assert_eq!(
            serde_json::from_str::<KeySource>(&json).expect("back"),
            stored
        );
        // A journal written before keys could live in OpenBAO holds a plain path.
        let old: KeySource = serde_json::from_str("\"/home/u/.foundry/keys/web-1\"").expect("old");
        assert_eq!(
            old,
            KeySource::File(PathBuf::from("/home/u/.foundry/keys/web-1"))
        );
        assert_eq!(old.file(), Some(Path::new("/home/u/.foundry/keys/web-1")));
        assert!("openbao:nowhere".parse::<KeySource>().is_err());
        assert!("openbao:http://a:1#path:".parse::<KeySource>().is_err());
    }

    #[tokio::test]
    async fn a_stored_key_without_a_vault_is_a_permanent_error() {
        // No test in this crate installs a vault.
        let stored: KeySource = "openbao:http://127.0.0.1:1#foundry/ssh-keys/a:private_key"
            .parse()
            .expect("parse");
        let err = stored.private_key().await.expect_err("no vault");
        assert!(!err.transient);
        assert!(err.message.contains("no way to read OpenBAO"), "{err:?}");
    }
}
