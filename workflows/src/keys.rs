//! Where Foundry keeps each host's private login key: first a private directory under
//! `$FOUNDRY_HOME` (`host add` writes there), then, once OpenBAO is up, OpenBAO at
//! `foundry/ssh-keys/<host>` (`moving`: the journaled move). Logins read a key kept in
//! OpenBAO through [`OpenbaoKeys`], the vault the program installs at startup.

mod moving;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use foundry_activities::ssh::{KeyVault, VaultRead, set_key_vault};
use foundry_core::{ActivityError, SecretValue};

pub use moving::{KeyPlan, KeysMove, LeftAlone, MoveHost, MoveInput, MoveOutput, Moved, move_plan};

/// Where a host's key is kept in OpenBAO: `foundry/ssh-keys/<host>`, key `private_key`.
pub const OPENBAO_PREFIX: &str = "foundry/ssh-keys";
pub const OPENBAO_KEY: &str = "private_key";

/// The secret path of `host`'s key in OpenBAO.
pub fn openbao_path(host: &str) -> String {
    format!("{OPENBAO_PREFIX}/{host}")
}

/// Reads keys kept in OpenBAO with the token Foundry keeps in `$FOUNDRY_HOME`.
pub struct OpenbaoKeys;

impl KeyVault for OpenbaoKeys {
    fn read<'a>(&'a self, addr: &'a str, path: &'a str, key: &'a str) -> VaultRead<'a> {
        Box::pin(async move {
            let vault = crate::secrets::Vault::from_env(addr)?;
            let mut found = vault.read(path).await.map_err(|e| {
                ActivityError::transient(format!("reading the key at {path}: {}", e.message))
            })?;
            Ok(found.remove(key))
        })
    }
}

/// Lets every login of this process read keys kept in OpenBAO; once, at startup.
pub fn install_key_vault() {
    set_key_vault(Arc::new(OpenbaoKeys));
}

#[derive(Debug, thiserror::Error)]
#[error("key store {}: {detail}", path.display())]
pub struct KeyStoreError {
    pub path: PathBuf,
    pub detail: String,
}

/// A host's private login key (OpenSSH format), by host name.
pub trait KeyStore: Send + Sync {
    /// The host's key, if one is stored.
    fn get(&self, host: &str) -> Result<Option<SecretValue>, KeyStoreError>;
    /// Stores the host's key; returns where it now lives, as the stack config records it.
    fn put(&self, host: &str, key: &SecretValue) -> Result<PathBuf, KeyStoreError>;
}

/// Keys as 0600 files in a 0700 directory (`$FOUNDRY_HOME/keys/<host>`).
#[derive(Clone, Debug)]
pub struct FileKeyStore {
    dir: PathBuf,
}

impl FileKeyStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileKeyStore { dir: dir.into() }
    }

    /// The store of a Foundry home.
    pub fn in_home(home: &Path) -> Self {
        FileKeyStore::new(home.join("keys"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `path` is `host`'s key in this store, a key Foundry made and keeps.
    pub fn holds(&self, host: &str, path: &Path) -> bool {
        self.path_of(host).is_ok_and(|own| own == path)
    }

    fn path_of(&self, host: &str) -> Result<PathBuf, KeyStoreError> {
        crate::config::check_host_name(host).map_err(|detail| KeyStoreError {
            path: self.dir.clone(),
            detail,
        })?;
        Ok(self.dir.join(host))
    }
}

impl KeyStore for FileKeyStore {
    fn get(&self, host: &str) -> Result<Option<SecretValue>, KeyStoreError> {
        let path = self.path_of(host)?;
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(SecretValue::new(text))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(KeyStoreError {
                path,
                detail: e.to_string(),
            }),
        }
    }

    fn put(&self, host: &str, key: &SecretValue) -> Result<PathBuf, KeyStoreError> {
        let path = self.path_of(host)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e: std::io::Error| KeyStoreError {
                path,
                detail: e.to_string(),
            }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(io(&self.dir))?;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&self.dir))?;
        foundry_core::files::write_private(&path, key.expose().as_bytes()).map_err(io(&path))?;
        Ok(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_private_files_by_host() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileKeyStore::in_home(dir.path());
        assert!(store.get("web-1").expect("get").is_none());
        let path = store.put("web-1", &SecretValue::new("KEY")).expect("put");
        assert_eq!(path, dir.path().join("keys").join("web-1"));
        assert_eq!(
            store.get("web-1").expect("get").expect("some").expose(),
            "KEY"
        );
        let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("keys")), 0o700);
        assert!(store.put("../x", &SecretValue::new("K")).is_err());
    }
}
