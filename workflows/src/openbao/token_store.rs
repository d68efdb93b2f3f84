//! Where Foundry keeps its own OpenBAO token: the OS keyring when one answers, else a 0600
//! file in the home, with one warning. `FOUNDRY_KEYRING` decides: `auto` (the default),
//! `off` (the file, without a warning) or `required` (the keyring, or an error).

mod file;
mod os_keyring;

use std::path::Path;
use std::sync::Arc;

use foundry_activities::openbao::TokenStore;

pub use file::FileTokenStore;
pub use os_keyring::{KeyringTokenStore, SERVICE as KEYRING_SERVICE};

/// The environment variable that chooses the store.
pub const KEYRING_VAR: &str = "FOUNDRY_KEYRING";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyringMode {
    /// The keyring when one answers, else the file with a warning.
    Auto,
    /// The file.
    Off,
    /// The keyring, or an error.
    Required,
}

impl KeyringMode {
    pub fn from_env() -> Result<KeyringMode, StoreError> {
        KeyringMode::parse(std::env::var(KEYRING_VAR).ok().as_deref())
    }

    fn parse(value: Option<&str>) -> Result<KeyringMode, StoreError> {
        match value.map(str::trim) {
            None | Some("" | "auto") => Ok(KeyringMode::Auto),
            Some("off") => Ok(KeyringMode::Off),
            Some("required") => Ok(KeyringMode::Required),
            Some(other) => Err(StoreError::Mode(other.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{KEYRING_VAR}={0}: expected `auto`, `off` or `required`")]
    Mode(String),
    #[error("{KEYRING_VAR}=required, but no OS keyring answers ({0})")]
    NoKeyring(String),
}

impl StoreError {
    pub fn hint(&self) -> &'static str {
        match self {
            StoreError::Mode(_) => {
                "leave it unset for `auto`: the OS keyring, else a 0600 file in the home"
            }
            StoreError::NoKeyring(_) => {
                "start a Secret Service in this session (GNOME Keyring, KWallet, KeePassXC), \
                 or set FOUNDRY_KEYRING=auto to keep the token in a 0600 file"
            }
        }
    }

    /// The message and its hint, for errors that carry only text.
    pub fn with_hint(&self) -> String {
        format!("{self}\nhint: {}", self.hint())
    }
}

/// The token store of the Foundry home `home`, as `FOUNDRY_KEYRING` asks.
pub fn for_home(home: &Path) -> Result<Arc<dyn TokenStore>, StoreError> {
    choose(
        KeyringMode::from_env()?,
        FileTokenStore::in_home(home),
        || KeyringTokenStore::probe(home).map(|k| Arc::new(k) as Arc<dyn TokenStore>),
    )
}

/// The keyring `probe` gives (asked only when the mode allows it), else the file.
fn choose(
    mode: KeyringMode,
    file: FileTokenStore,
    probe: impl FnOnce() -> Result<Arc<dyn TokenStore>, String>,
) -> Result<Arc<dyn TokenStore>, StoreError> {
    if mode == KeyringMode::Off {
        return Ok(Arc::new(file));
    }
    let why = match probe()
        .and_then(|keyring| move_file_into(&file, keyring.as_ref()).map(|()| keyring))
    {
        Ok(keyring) => return Ok(keyring),
        Err(why) => why,
    };
    if mode == KeyringMode::Required {
        return Err(StoreError::NoKeyring(why));
    }
    tracing::warn!(
        "no OS keyring is running ({why}); Foundry's OpenBAO token is kept in {} (mode 0600)",
        file.path().display()
    );
    Ok(Arc::new(file))
}

/// Moves a token file from before into the keyring and deletes the file, so that no
/// later run reads a stale file. When both hold a token the file's is the newer: it was
/// written while the keyring did not answer, or was turned off.
fn move_file_into(file: &FileTokenStore, keyring: &dyn TokenStore) -> Result<(), String> {
    let Some(token) = file.get().map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let from = file.path().display();
    keyring
        .put(&token)
        .map_err(|e| format!("it did not take the token from {from}: {e}"))?;
    let back = keyring.get().map_err(|e| e.to_string())?;
    if back.as_ref() != Some(&token) {
        return Err(format!("it did not give back the token moved from {from}"));
    }
    file.remove().map_err(|e| e.to_string())?;
    tracing::warn!(
        "Foundry's OpenBAO token moved from {from} into {}; the file is deleted",
        keyring.place()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use foundry_activities::openbao::TokenStoreError;
    use foundry_core::SecretValue;

    use super::*;

    /// A keyring in memory; `refuses` makes every write fail.
    #[derive(Default)]
    struct Memory {
        token: Mutex<Option<SecretValue>>,
        refuses: bool,
    }

    impl TokenStore for Memory {
        fn get(&self) -> Result<Option<SecretValue>, TokenStoreError> {
            Ok(self.token.lock().expect("lock").clone())
        }

        fn put(&self, token: &SecretValue) -> Result<(), TokenStoreError> {
            if self.refuses {
                return Err(TokenStoreError {
                    place: self.place(),
                    detail: "locked".into(),
                });
            }
            *self.token.lock().expect("lock") = Some(token.clone());
            Ok(())
        }

        fn place(&self) -> String {
            "memory".into()
        }
    }

    fn answers(keyring: &Arc<Memory>) -> impl FnOnce() -> Result<Arc<dyn TokenStore>, String> {
        let keyring = Arc::clone(keyring);
        move || Ok(keyring as Arc<dyn TokenStore>)
    }

    fn silent() -> Result<Arc<dyn TokenStore>, String> {
        Err("no D-Bus session bus".into())
    }

    fn file_in(dir: &tempfile::TempDir) -> FileTokenStore {
        FileTokenStore::in_home(dir.path())
    }

    fn token(text: &str) -> SecretValue {
        SecretValue::new(text)
    }

    #[test]
    fn the_mode_is_auto_off_or_required() {
        for (value, mode) in [
            (None, KeyringMode::Auto),
            (Some(""), KeyringMode::Auto),
            (Some("auto"), KeyringMode::Auto),
            (Some("off"), KeyringMode::Off),
            (Some(" required\n"), KeyringMode::Required),
        ] {
            assert_eq!(KeyringMode::parse(value).expect("mode"), mode, "{value:?}");
        }
        let bad = KeyringMode::parse(Some("yes")).expect_err("yes");
        assert_eq!(
            bad.to_string(),
            "FOUNDRY_KEYRING=yes: expected `auto`, `off` or `required`"
        );
    }

    #[test]
    fn off_keeps_the_file_and_never_asks_a_keyring() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = file_in(&dir);
        let store = choose(KeyringMode::Off, file.clone(), || panic!("asked")).expect("store");
        assert_eq!(store.place(), file.place());
    }

    #[test]
    fn a_keyring_that_answers_is_the_store_and_no_file_is_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = file_in(&dir);
        let keyring = Arc::new(Memory::default());
        for mode in [KeyringMode::Auto, KeyringMode::Required] {
            let store = choose(mode, file.clone(), answers(&keyring)).expect("store");
            store.put(&token("s.NEW")).expect("put");
            assert_eq!(store.place(), "memory");
        }
        assert!(!file.path().exists());
        assert_eq!(keyring.get().expect("get"), Some(token("s.NEW")));
    }

    #[test]
    fn no_keyring_is_the_file_in_auto_and_an_error_when_required() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = file_in(&dir);
        let store = choose(KeyringMode::Auto, file.clone(), silent).expect("store");
        assert_eq!(store.place(), file.place());
        let refused = choose(KeyringMode::Required, file, silent)
            .err()
            .expect("required");
        assert_eq!(
            refused.to_string(),
            "FOUNDRY_KEYRING=required, but no OS keyring answers (no D-Bus session bus)"
        );
        assert!(
            refused
                .with_hint()
                .contains("\nhint: start a Secret Service")
        );
    }

    #[test]
    fn a_token_file_from_before_moves_into_the_keyring_over_its_older_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = file_in(&dir);
        file.put(&token("s.FROM-FILE")).expect("put");
        let keyring = Arc::new(Memory::default());
        keyring.put(&token("s.OLDER")).expect("put");
        let store = choose(KeyringMode::Auto, file.clone(), answers(&keyring)).expect("store");
        assert_eq!(store.get().expect("get"), Some(token("s.FROM-FILE")));
        assert!(!file.path().exists(), "the file remains");
    }

    #[test]
    fn a_keyring_that_refuses_the_token_leaves_the_file_as_it_was() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = file_in(&dir);
        file.put(&token("s.FROM-FILE")).expect("put");
        let refusing = Arc::new(Memory {
            refuses: true,
            ..Memory::default()
        });
        let store = choose(KeyringMode::Auto, file.clone(), answers(&refusing)).expect("store");
        assert_eq!(store.place(), file.place());
        assert_eq!(file.get().expect("get"), Some(token("s.FROM-FILE")));
        let refused = choose(KeyringMode::Required, file.clone(), answers(&refusing))
            .err()
            .expect("required");
        assert!(
            refused
                .to_string()
                .contains("it did not take the token from"),
            "{refused}"
        );
        assert!(file.path().exists());
    }
}
