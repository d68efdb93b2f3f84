//! Secret values and where they are kept. The journal, logs and events only ever hold a
//! [`SecretRef`]; the value lives in a [`SecretStore`].

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A secret value. It has no `Serialize`, and `Debug`/`Display` print a placeholder, so it
/// cannot slip into a journal, a log line or JSON output by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }

    /// The value itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a secret is kept: `local:<uuid>` for the local store.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretRef(pub String);

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("secret {reference} not found")]
    NotFound { reference: SecretRef },
    #[error("secret store {}: {detail}", path.display())]
    Io { path: PathBuf, detail: String },
}

pub trait SecretStore: Send + Sync {
    fn put(&self, value: &SecretValue) -> Result<SecretRef, SecretError>;
    fn get(&self, reference: &SecretRef) -> Result<SecretValue, SecretError>;
    fn delete(&self, reference: &SecretRef) -> Result<(), SecretError>;
}

/// Secrets as 0600 files in a 0700 directory. The secrets store of a later release moves
/// them into OpenBAO; this one needs nothing running.
#[derive(Clone, Debug)]
pub struct FileSecretStore {
    dir: PathBuf,
}

const LOCAL_PREFIX: &str = "local:";

impl FileSecretStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSecretStore { dir: dir.into() }
    }

    fn path_of(&self, reference: &SecretRef) -> Result<PathBuf, SecretError> {
        reference
            .0
            .strip_prefix(LOCAL_PREFIX)
            .and_then(|id| Uuid::parse_str(id).ok())
            .map(|id| self.dir.join(id.to_string()))
            .ok_or_else(|| SecretError::NotFound {
                reference: reference.clone(),
            })
    }
}

impl SecretStore for FileSecretStore {
    fn put(&self, value: &SecretValue) -> Result<SecretRef, SecretError> {
        let reference = SecretRef(format!("{LOCAL_PREFIX}{}", Uuid::new_v4()));
        let path = self.path_of(&reference)?;
        let io = |e: std::io::Error| SecretError::Io {
            path: path.clone(),
            detail: e.to_string(),
        };
        fs::create_dir_all(&self.dir).map_err(io)?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        file.write_all(value.expose().as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(reference)
    }

    fn get(&self, reference: &SecretRef) -> Result<SecretValue, SecretError> {
        let path = self.path_of(reference)?;
        match fs::read_to_string(&path) {
            Ok(v) => Ok(SecretValue(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(SecretError::NotFound {
                reference: reference.clone(),
            }),
            Err(e) => Err(SecretError::Io {
                path,
                detail: e.to_string(),
            }),
        }
    }

    fn delete(&self, reference: &SecretRef) -> Result<(), SecretError> {
        let path = self.path_of(reference)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SecretError::Io {
                path,
                detail: e.to_string(),
            }),
        }
    }
}

/// Secrets held in memory only, for the life of one command (a status that must reveal a
/// key it resolved, without writing it anywhere).
#[derive(Debug, Default)]
pub struct MemorySecretStore {
    values: std::sync::Mutex<std::collections::HashMap<String, SecretValue>>,
}

const MEMORY_PREFIX: &str = "memory:";

impl SecretStore for MemorySecretStore {
    fn put(&self, value: &SecretValue) -> Result<SecretRef, SecretError> {
        let reference = SecretRef(format!("{MEMORY_PREFIX}{}", Uuid::new_v4()));
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(reference.0.clone(), value.clone());
        Ok(reference)
    }

    fn get(&self, reference: &SecretRef) -> Result<SecretValue, SecretError> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&reference.0)
            .cloned()
            .ok_or_else(|| SecretError::NotFound {
                reference: reference.clone(),
            })
    }

    fn delete(&self, reference: &SecretRef) -> Result<(), SecretError> {
        self.values
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&reference.0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_value_never_prints() {
        let v = SecretValue::new("hunter2");
        assert!(!format!("{v:?} {v}").contains("hunter2"));
    }

    #[test]
    fn file_store_round_trips_privately() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileSecretStore::new(dir.path());
        let r = store.put(&SecretValue::new("s3cret")).expect("put");
        assert_eq!(store.get(&r).expect("get").expose(), "s3cret");
        let path = store.path_of(&r).expect("path");
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        store.delete(&r).expect("delete");
        assert!(matches!(store.get(&r), Err(SecretError::NotFound { .. })));
    }

    #[test]
    fn memory_store_round_trips() {
        let store = MemorySecretStore::default();
        let r = store.put(&SecretValue::new("s3cret")).expect("put");
        assert_eq!(store.get(&r).expect("get").expose(), "s3cret");
        store.delete(&r).expect("delete");
        assert!(matches!(store.get(&r), Err(SecretError::NotFound { .. })));
    }
}
