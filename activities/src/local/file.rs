//! Ensures a local file has a given content and mode; probed by hash.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy, SecretValue};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A file with exactly this content and mode. The content is never journaled: it may be a
/// secret.
#[derive(Clone, Debug)]
pub struct EnsureFile {
    pub path: PathBuf,
    pub content: SecretValue,
    pub mode: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOutput {
    pub path: PathBuf,
    /// Whether this step wrote the file (false: it was already as wanted).
    pub changed: bool,
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

fn io_error(path: &Path, what: &str, e: std::io::Error) -> ActivityError {
    let message = format!("{what} {}: {e}", path.display());
    match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotADirectory => {
            ActivityError::permanent(message)
        }
        _ => ActivityError::transient(message),
    }
}

impl EnsureFile {
    /// Whether the file is already as wanted.
    fn is_in_place(&self) -> Result<bool, ActivityError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_error(&self.path, "reading", e)),
        };
        let mode = std::fs::metadata(&self.path)
            .map_err(|e| io_error(&self.path, "reading", e))?
            .permissions()
            .mode()
            & 0o7777;
        Ok(digest(&bytes) == digest(self.content.expose().as_bytes()) && mode == self.mode)
    }

    /// Writes beside the target and renames over it, so the file is never half written.
    fn write(&self) -> Result<(), ActivityError> {
        let dir = self
            .path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = self.path.file_name().ok_or_else(|| {
            ActivityError::permanent(format!("{} names no file", self.path.display()))
        })?;
        let tmp = dir.join(format!(".{}.foundry-tmp", name.to_string_lossy()));
        let err = |what: &str, e| io_error(&self.path, what, e);
        // A missing directory is made, private to this user, as Foundry's home is.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err("making the directory of", e))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(self.mode)
            .open(&tmp)
            .map_err(|e| err("writing", e))?;
        file.write_all(self.content.expose().as_bytes())
            .and_then(|()| file.set_permissions(std::fs::Permissions::from_mode(self.mode)))
            .and_then(|()| file.sync_all())
            .map_err(|e| err("writing", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| err("replacing", e))
    }
}

impl Activity for EnsureFile {
    type Output = FileOutput;

    fn kind(&self) -> &'static str {
        "file"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        }
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<FileOutput>, ActivityError> {
        Ok(self.is_in_place()?.then(|| FileOutput {
            path: self.path.clone(),
            changed: false,
        }))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<FileOutput, ActivityError> {
        if self.is_in_place()? {
            return Ok(FileOutput {
                path: self.path.clone(),
                changed: false,
            });
        }
        self.write()?;
        Ok(FileOutput {
            path: self.path.clone(),
            changed: true,
        })
    }
}

/// Removes a local file; already absent is fine. The undo of [`EnsureFile`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveFile {
    pub path: PathBuf,
}

impl Activity for RemoveFile {
    type Output = FileOutput;

    fn kind(&self) -> &'static str {
        "remove-file"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<FileOutput>, ActivityError> {
        Ok((!self.path.exists()).then(|| FileOutput {
            path: self.path.clone(),
            changed: false,
        }))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<FileOutput, ActivityError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(FileOutput {
                path: self.path.clone(),
                changed: true,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileOutput {
                path: self.path.clone(),
                changed: false,
            }),
            Err(e) => Err(io_error(&self.path, "removing", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_in_a_missing_directory_is_written_and_the_directory_made_private() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().join("registry").join("r-config.json");
        let file = EnsureFile {
            path: path.clone(),
            content: SecretValue::new("{}\n".to_string()),
            mode: 0o644,
        };
        assert!(!file.is_in_place().expect("probing"));
        file.write().expect("writing");
        assert!(file.is_in_place().expect("probing"));
        assert_eq!(std::fs::read_to_string(&path).expect("reading"), "{}\n");
        let dir = std::fs::metadata(root.path().join("registry")).expect("the directory");
        assert_eq!(dir.permissions().mode() & 0o777, 0o700);
    }
}
