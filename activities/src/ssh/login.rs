//! How Foundry logs in to a host: its key (a file, or key material from a key store), the
//! user's SSH agent, or a password (only for the first login of `foundry host add`).

use std::path::PathBuf;
use std::sync::Arc;

use foundry_core::{ActivityError, SecretValue};
use russh::client::{AuthResult, Handle};
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg};

use super::SshTarget;
use super::key_source::KeySource;
use super::transport::Checker;

/// A way to log in.
#[derive(Clone, Debug)]
pub enum Login {
    /// A private key (OpenSSH format) from its source: a file, or OpenBAO (read now, held
    /// in memory only).
    Key(KeySource),
    /// A private key's text (OpenSSH format), e.g. from a key store.
    KeyData(SecretValue),
    /// Whatever key the SSH agent at `SSH_AUTH_SOCK` holds that the host accepts.
    Agent,
    /// A password; a refusal is permanent and never quotes it.
    Password(SecretValue),
}

/// What a login needs, read before anything connects.
pub(super) enum Material {
    Key(Box<PrivateKey>, String),
    Agent(AgentClient<tokio::net::UnixStream>),
    Password(SecretValue),
}

impl Login {
    pub(super) async fn material(&self) -> Result<Material, ActivityError> {
        Ok(match self {
            Login::Key(KeySource::File(path)) => {
                let key = russh::keys::load_secret_key(path, None).map_err(|e| {
                    ActivityError::permanent(format!("reading the key {}: {e}", path.display()))
                })?;
                Material::Key(Box::new(key), format!("the key {}", path.display()))
            }
            Login::Key(stored) => {
                let text = stored.private_key().await?;
                let key = russh::keys::decode_secret_key(text.expose(), None).map_err(|e| {
                    ActivityError::permanent(format!("the key {stored} cannot be read: {e}"))
                })?;
                Material::Key(Box::new(key), format!("the key {stored}"))
            }
            Login::KeyData(text) => {
                let key = russh::keys::decode_secret_key(text.expose(), None).map_err(|e| {
                    ActivityError::permanent(format!("the stored key cannot be read: {e}"))
                })?;
                Material::Key(Box::new(key), "the stored key".into())
            }
            Login::Agent => {
                let socket = std::env::var_os("SSH_AUTH_SOCK")
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        ActivityError::permanent(
                            "no SSH agent: SSH_AUTH_SOCK is not set; hint: start one with `eval $(ssh-agent)` and `ssh-add` your key",
                        )
                    })?;
                let agent = AgentClient::connect_uds(&socket).await.map_err(|e| {
                    ActivityError::permanent(format!(
                        "cannot reach the SSH agent at {}: {e}",
                        PathBuf::from(&socket).display()
                    ))
                })?;
                Material::Agent(agent)
            }
            Login::Password(password) => Material::Password(password.clone()),
        })
    }
}

/// Logs in on a connected handle.
pub(super) async fn login(
    handle: &mut Handle<Checker>,
    target: &SshTarget,
    material: Material,
) -> Result<(), ActivityError> {
    let lost = |e: russh::Error| ActivityError::transient(format!("{target}: logging in: {e}"));
    match material {
        Material::Key(key, what) => {
            let hash = rsa_hash(handle, &key.public_key().algorithm()).await?;
            let key = PrivateKeyWithHashAlg::new(Arc::new(*key), hash);
            match handle
                .authenticate_publickey(&target.user, key)
                .await
                .map_err(lost)?
            {
                AuthResult::Success => Ok(()),
                AuthResult::Failure { .. } => Err(ActivityError::permanent(format!(
                    "{target}: {what} was refused"
                ))),
            }
        }
        Material::Password(password) => {
            let result = handle
                .authenticate_password(&target.user, password.expose())
                .await
                .map_err(lost)?;
            match result {
                AuthResult::Success => Ok(()),
                AuthResult::Failure { .. } => Err(ActivityError::permanent(format!(
                    "{target}: the password was refused (wrong password, or the host allows no password login)"
                ))),
            }
        }
        Material::Agent(mut agent) => {
            let identities = agent.request_identities().await.map_err(|e| {
                ActivityError::permanent(format!("asking the SSH agent for its keys: {e}"))
            })?;
            if identities.is_empty() {
                return Err(ActivityError::permanent(
                    "the SSH agent holds no key; hint: `ssh-add` the key that logs in to the host",
                ));
            }
            for identity in &identities {
                let public = identity.public_key().into_owned();
                let hash = rsa_hash(handle, &public.algorithm()).await?;
                match handle
                    .authenticate_publickey_with(&target.user, public, hash, &mut agent)
                    .await
                {
                    Ok(AuthResult::Success) => return Ok(()),
                    Ok(AuthResult::Failure { .. }) => {}
                    Err(e) => tracing::debug!(error = %e, "the agent's key did not sign"),
                }
            }
            Err(ActivityError::permanent(format!(
                "{target}: none of the SSH agent's {} key(s) was accepted",
                identities.len()
            )))
        }
    }
}

/// RSA keys sign with the best hash the server takes; other keys have one way to sign.
async fn rsa_hash(
    handle: &Handle<Checker>,
    algorithm: &russh::keys::Algorithm,
) -> Result<Option<russh::keys::HashAlg>, ActivityError> {
    if !matches!(algorithm, russh::keys::Algorithm::Rsa { .. }) {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| ActivityError::transient(format!("asking for RSA hashes: {e}")))?
        .flatten())
}
