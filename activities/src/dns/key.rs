//! The API key: the one a running server was given, or a new one, kept in the run's secret
//! store. Only its reference is journaled.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef, SecretValue};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::container::{Endpoint, secret_ref_of};

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

/// The holder's key when it has one the secret store still knows; otherwise a new random
/// key (32 bytes, hex), kept. There is nothing to probe: a step in doubt makes another,
/// and the one lost in between is never referenced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewApiKey {
    /// What the key is for, in errors.
    pub purpose: String,
    #[serde(default)]
    pub holder: Option<KeyHolder>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyOutput {
    pub api_key: SecretRef,
    /// Taken from the holder rather than made.
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
        if let Some(holder) = &self.holder
            && let Some(reference) =
                secret_ref_of(&holder.endpoint, &holder.container, &holder.var).await?
            && cx.reveal(&reference).is_ok()
        {
            return Ok(ApiKeyOutput {
                api_key: reference,
                reused: true,
            });
        }
        let value = random_key();
        let api_key = cx.keep(&value).map_err(|e| {
            ActivityError::permanent(format!("keeping the {}: {}", self.purpose, e.message))
        })?;
        Ok(ApiKeyOutput {
            api_key,
            reused: false,
        })
    }
}

/// The API key written into a server's container, at `path` on a tmpfs the container
/// mounts, which its entry point waits for and reads; never in the container's environment
/// or its command. Written through the Engine (the key on the writer's stdin) after the
/// container started, since a tmpfs exists only while its container runs. A file already
/// there is the key: a new key is a new reference, which recreates the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    pub endpoint: Endpoint,
    pub container: String,
    pub path: String,
    pub api_key: SecretRef,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFileOutput {
    /// This step wrote it (it was not there).
    pub written: bool,
}

/// Writes stdin to `$1` with mode 0600, by rename, so a reader never sees half a key.
const WRITE_KEY: &str = r#"umask 077 && cat > "$1.new" && mv -f "$1.new" "$1""#;

impl KeyFile {
    async fn present(&self, docker: &bollard::Docker) -> Result<bool, ActivityError> {
        let found = self
            .endpoint
            .exec_with_input(docker, &self.container, &["test", "-s", &self.path], b"")
            .await?;
        Ok(found.code == 0)
    }
}

impl Activity for KeyFile {
    type Output = KeyFileOutput;

    fn kind(&self) -> &'static str {
        "api-key-file"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<KeyFileOutput>, ActivityError> {
        let docker = self.endpoint.connect().await?;
        Ok(self
            .present(&docker)
            .await?
            .then_some(KeyFileOutput { written: false }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<KeyFileOutput, ActivityError> {
        let docker = self.endpoint.connect().await?;
        if self.present(&docker).await? {
            return Ok(KeyFileOutput { written: false });
        }
        let key = cx.reveal(&self.api_key).map_err(|e| {
            ActivityError::permanent(format!(
                "the API key for container {}: {}",
                self.container, e.message
            ))
        })?;
        let written = self
            .endpoint
            .exec_with_input(
                &docker,
                &self.container,
                &["sh", "-c", WRITE_KEY, "foundry-key", &self.path],
                key.expose().trim().as_bytes(),
            )
            .await?;
        if written.code != 0 {
            return Err(ActivityError::permanent(format!(
                "writing the API key to {} in container {}: exit {}: {}",
                self.path, self.container, written.code, written.stderr
            )));
        }
        Ok(KeyFileOutput { written: true })
    }
}
