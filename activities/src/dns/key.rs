//! The API key of the DNS servers where no stack secret store holds it: kept in a private
//! file for the servers' life, handed to a run through its own secret store. Only its
//! reference is journaled.

use std::io::Read;
use std::path::PathBuf;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef, SecretValue};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::container::Endpoint;

/// A container whose label `foundry.secret-ref.<var>` may name the key already.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyHolder {
    pub endpoint: Endpoint,
    pub container: String,
    pub var: String,
}

/// A new random key: 32 bytes, as hex.
pub fn random_key() -> SecretValue {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    SecretValue::new(hex::encode(bytes))
}

/// The key of servers whose stack keeps no secret store of its own (no OpenBAO): kept for
/// their whole life in a 0600 file on this machine (`path`), which only this step writes.
/// The first run makes it (32 random bytes, hex); every later run reads it, so the servers
/// keep their key and are not recreated. A run's own secret store, which ends with the
/// run, holds it for that run's other steps. In doubt it runs again: a key it made is in
/// the file by then and is read back, never made twice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    /// What the key is for, in errors.
    pub purpose: String,
    /// Where the key is kept between runs.
    pub path: PathBuf,
}

/// The longest file read as a key: ours is 64 hex digits and a newline.
const MAX_KEY_FILE: u64 = 1024;

impl NewApiKey {
    fn fail(&self, what: &str, e: impl std::fmt::Display) -> ActivityError {
        ActivityError::permanent(format!(
            "{what} the {} at {}: {e}",
            self.purpose,
            self.path.display()
        ))
    }

    /// The kept key, when the file is there.
    fn read(&self) -> Result<Option<SecretValue>, ActivityError> {
        let file = match std::fs::File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.fail("reading", e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_KEY_FILE + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.fail("reading", e))?;
        let text = String::from_utf8_lossy(&bytes);
        let key = text.trim();
        if bytes.len() as u64 > MAX_KEY_FILE
            || key.is_empty()
            || !key.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(self.fail(
                "reading",
                "not a key written by Foundry (hint: move it away to make a new key; the \
                 servers are then recreated with it)",
            ));
        }
        Ok(Some(SecretValue::new(key)))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyOutput {
    pub api_key: SecretRef,
    /// Read from the file rather than made.
    pub reused: bool,
}

impl Activity for NewApiKey {
    type Output = ApiKeyOutput;

    fn kind(&self) -> &'static str {
        "api-key"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ApiKeyOutput>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ApiKeyOutput, ActivityError> {
        let (value, reused) = match self.read()? {
            Some(value) => (value, true),
            None => {
                let value = random_key();
                foundry_core::files::write_private(&self.path, value.expose().as_bytes())
                    .map_err(|e| self.fail("keeping", e))?;
                (value, false)
            }
        };
        let api_key = cx.keep(&value).map_err(|e| {
            ActivityError::permanent(format!("keeping the {}: {}", self.purpose, e.message))
        })?;
        Ok(ApiKeyOutput { api_key, reused })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;

    use foundry_core::secret::FileSecretStore;

    use super::*;

    #[tokio::test]
    async fn the_key_is_made_once_kept_private_and_read_by_every_later_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
        let cx = ActivityCx::standalone("key").with_secrets(store);
        let step = NewApiKey {
            purpose: "PowerDNS API key".into(),
            path: dir.path().join("dns").join("lab-api-key"),
        };
        let made = step.apply(&cx).await.expect("made");
        assert!(!made.reused);
        let kept = std::fs::read_to_string(&step.path).expect("kept");
        assert_eq!(kept.len(), 64);
        assert_eq!(cx.reveal(&made.api_key).expect("in the run").expose(), kept);
        let mode = std::fs::metadata(&step.path).expect("meta").permissions();
        assert_eq!(mode.mode() & 0o777, 0o600);

        // A later run, or this one run again in doubt, reads it: never a second key.
        let again = step.apply(&cx).await.expect("read");
        assert!(again.reused);
        assert_eq!(
            cx.reveal(&again.api_key).expect("in the run").expose(),
            kept
        );
        assert_eq!(std::fs::read_to_string(&step.path).expect("kept"), kept);

        // A file that is not a key of ours is an error naming it, never a key.
        std::fs::write(&step.path, "-----BEGIN PRIVATE KEY-----\n").expect("write");
        let refused = step.apply(&cx).await.expect_err("refused");
        assert!(refused.message.contains("lab-api-key"), "{refused:?}");
        std::fs::write(&step.path, vec![b'a'; 4096]).expect("write");
        assert!(step.apply(&cx).await.is_err());
    }
}
