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
