//! Foundry's OpenBAO token as a private file, `$FOUNDRY_HOME/openbao/token` (0600): where
//! no OS keyring runs, or where `FOUNDRY_KEYRING=off` asks for it.

use std::path::{Path, PathBuf};

use foundry_activities::openbao::{TokenStore, TokenStoreError};
use foundry_core::SecretValue;

#[derive(Clone, Debug)]
pub struct FileTokenStore {
    path: PathBuf,
}

impl FileTokenStore {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileTokenStore { path: path.into() }
    }

    /// The store of a Foundry home.
    pub fn in_home(home: &Path) -> Self {
        FileTokenStore::new(home.join("openbao").join("token"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Deletes the file (once the token lives elsewhere); none is fine.
    pub fn remove(&self) -> Result<(), TokenStoreError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(e)),
        }
    }

    fn error(&self, detail: impl ToString) -> TokenStoreError {
        TokenStoreError {
            place: self.path.display().to_string(),
            detail: detail.to_string(),
        }
    }
}

impl TokenStore for FileTokenStore {
    fn get(&self) -> Result<Option<SecretValue>, TokenStoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if text.trim().is_empty() => Ok(None),
            Ok(text) => Ok(Some(SecretValue::new(text.trim()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    fn put(&self, token: &SecretValue) -> Result<(), TokenStoreError> {
        foundry_activities::openbao::write_private(&self.path, token)
            .map_err(|e| self.error(e.message))
    }

    fn place(&self) -> String {
        self.path.display().to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_token_is_a_private_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = FileTokenStore::in_home(dir.path());
        assert!(store.get().expect("get").is_none());
        store.put(&SecretValue::new("s.TOKEN")).expect("put");
        assert_eq!(store.get().expect("get").expect("some").expose(), "s.TOKEN");
        let mode = std::fs::metadata(store.path())
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        store.remove().expect("remove");
        assert!(store.get().expect("get").is_none());
        store.remove().expect("removing no file");
    }
}
