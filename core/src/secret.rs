//! Secret values and where they are kept. The journal, logs and events only ever hold a
//! [`SecretRef`]; the value lives in a [`SecretStore`].

use std::fmt;
use std::fs;
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

/// Secrets as 0600 files in a 0700 directory, needing nothing running. A run keeps its
/// secrets in a directory of its own, `<home>/secrets/<run-id>/`, removed when the run ends:
/// what a component needs for its whole life lives in OpenBAO.
#[derive(Clone, Debug)]
pub struct FileSecretStore {
    dir: PathBuf,
    /// The key a run's store names its secrets with (see [`FileSecretStore::for_run`]);
    /// without one, each secret gets a random name.
    naming_key: Option<PathBuf>,
}

const LOCAL_PREFIX: &str = "local:";

/// The file, at the home's top, holding the key a run's secrets are named with.
pub const NAMING_KEY_FILE: &str = "secret-names.key";

impl FileSecretStore {
    /// A store in `dir` naming each secret at random.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSecretStore {
            dir: dir.into(),
            naming_key: None,
        }
    }

    /// The store of one run: `<home>/secrets/<run-id>/`. A secret's name is a keyed hash
    /// of its value (the key private to the home), so a later run keeping the same value
    /// gets the same reference: a container labelled with it is not recreated for a value
    /// that did not change, while the label tells nothing about the value.
    pub fn for_run(home: &crate::Home, run: crate::RunId) -> Self {
        FileSecretStore {
            dir: run_secrets_dir(home, run),
            naming_key: Some(home.root().join(NAMING_KEY_FILE)),
        }
    }

    /// The directory the store keeps its files in.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn io_error(path: &std::path::Path) -> impl Fn(std::io::Error) -> SecretError + '_ {
        move |e| SecretError::Io {
            path: path.to_path_buf(),
            detail: e.to_string(),
        }
    }

    /// The home's naming key, made (32 random bytes, 0600) the first time. Two processes
    /// making it at once agree: it is written aside and linked into place, never replaced.
    fn naming_key(path: &std::path::Path) -> Result<Vec<u8>, SecretError> {
        let io = Self::io_error(path);
        match fs::read(path) {
            Ok(key) if key.len() == NAMING_KEY_LEN => return Ok(key),
            Ok(key) => {
                return Err(SecretError::Io {
                    path: path.to_path_buf(),
                    detail: format!(
                        "holds {} bytes, not the {NAMING_KEY_LEN} of a naming key (remove it: a new one is made)",
                        key.len()
                    ),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut key = vec![0u8; NAMING_KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
        let name = format!(".{NAMING_KEY_FILE}.{}.partial", Uuid::new_v4().simple());
        let tmp = path.with_file_name(name);
        crate::files::write_private(&tmp, &key).map_err(&io)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => fs::read(path).map_err(io),
            Err(e) => Err(io(e)),
        }
    }

    /// The reference `value` is kept under: a keyed hash of it in a run's store, else random.
    fn name_of(&self, value: &SecretValue) -> Result<SecretRef, SecretError> {
        let id = match &self.naming_key {
            Some(path) => {
                use sha2::Digest;
                let key = Self::naming_key(path)?;
                let digest = sha2::Sha256::new()
                    .chain_update(&key)
                    .chain_update(value.expose().as_bytes())
                    .finalize();
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                uuid::Builder::from_custom_bytes(bytes).into_uuid()
            }
            None => Uuid::new_v4(),
        };
        Ok(SecretRef(format!("{LOCAL_PREFIX}{id}")))
    }

    /// Whether `text` is a reference to a local store's secret, `local:<uuid>`.
    pub fn is_local_ref(text: &str) -> bool {
        text.strip_prefix(LOCAL_PREFIX)
            .is_some_and(|id| Uuid::parse_str(id).is_ok())
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
        let reference = self.name_of(value)?;
        let path = self.path_of(&reference)?;
        let io = Self::io_error(&path);
        // Written aside and renamed into place: a process stopped halfway leaves no half
        // value under a name a later keep of the same value would trust.
        crate::files::write_private(&path, value.expose().as_bytes()).map_err(io)?;
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

const NAMING_KEY_LEN: usize = 32;

/// Where `run` keeps its secrets.
pub fn run_secrets_dir(home: &crate::Home, run: crate::RunId) -> PathBuf {
    home.secrets_dir().join(run.to_string())
}

/// Removes what `run` kept; nothing kept is no error.
pub fn forget_run(home: &crate::Home, run: crate::RunId) -> Result<(), SecretError> {
    let dir = run_secrets_dir(home, run);
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SecretError::Io {
            path: dir,
            detail: e.to_string(),
        }),
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
    fn a_runs_store_names_a_value_alike_in_every_run_and_forgets_it_at_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = crate::Home::at(dir.path().join("home"));
        let (one, two) = (crate::RunId::new(), crate::RunId::new());
        let first = FileSecretStore::for_run(&home, one);
        let second = FileSecretStore::for_run(&home, two);
        let value = SecretValue::new("api-key");
        let r1 = first.put(&value).expect("put");
        assert_eq!(
            first.put(&value).expect("again"),
            r1,
            "kept twice, one name"
        );
        let r2 = second.put(&value).expect("put");
        assert_eq!(
            r1, r2,
            "the same value gets the same reference in a later run"
        );
        assert_ne!(second.put(&SecretValue::new("other")).expect("put"), r1);
        assert!(!r1.0.contains("api-key"));
        // The name tells nothing without the home's key: another home names it otherwise.
        let elsewhere = crate::Home::at(dir.path().join("elsewhere"));
        assert_ne!(
            FileSecretStore::for_run(&elsewhere, one)
                .put(&value)
                .expect("put"),
            r1
        );
        use std::os::unix::fs::PermissionsExt;
        let mode =
            |p: &std::path::Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&home.root().join(NAMING_KEY_FILE)), 0o600);
        assert_eq!(mode(first.dir()), 0o700);
        assert_eq!(first.get(&r1).expect("get").expose(), "api-key");

        forget_run(&home, one).expect("forget");
        assert!(!first.dir().exists());
        assert!(matches!(first.get(&r1), Err(SecretError::NotFound { .. })));
        assert_eq!(
            second.get(&r2).expect("the other run's").expose(),
            "api-key"
        );
        forget_run(&home, one).expect("nothing left is no error");
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
