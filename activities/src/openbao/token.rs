//! Foundry's own OpenBAO token: made once with Foundry's policy and kept in a
//! [`TokenStore`] (the OS keyring, else a private file), never in the journal.

use std::sync::Arc;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretValue};

use super::{BaoClient, no_token};

#[derive(Debug, thiserror::Error)]
#[error("token store {place}: {detail}")]
pub struct TokenStoreError {
    pub place: String,
    pub detail: String,
}

/// Where Foundry keeps its OpenBAO token.
pub trait TokenStore: Send + Sync {
    fn get(&self) -> Result<Option<SecretValue>, TokenStoreError>;
    fn put(&self, token: &SecretValue) -> Result<(), TokenStoreError>;
    /// Where it keeps it, for messages.
    fn place(&self) -> String;
}

/// A token with `policy`, kept in `store`; the stored one when OpenBAO still knows it.
pub struct BaoToken {
    pub addr: String,
    pub policy: String,
    /// How long a renewal keeps it alive (`768h`): renewed, it never expires.
    pub period: String,
    /// The privileged token that makes it (revealed by the workflow; never journaled).
    pub token: Option<SecretValue>,
    pub store: Arc<dyn TokenStore>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenOutput {
    /// This step made it (none was stored, or OpenBAO no longer knew it).
    pub created: bool,
}

fn stored_error(e: TokenStoreError) -> ActivityError {
    ActivityError::permanent(e.to_string())
}

impl BaoToken {
    async fn stored_works(&self, client: &BaoClient) -> Result<bool, ActivityError> {
        let Some(stored) = self.store.get().map_err(stored_error)? else {
            return Ok(false);
        };
        Ok(client
            .lookup_self(&stored)
            .await?
            .is_some_and(|policies| policies.contains(&self.policy)))
    }
}

impl Activity for BaoToken {
    type Output = TokenOutput;

    fn kind(&self) -> &'static str {
        "openbao-token"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<TokenOutput>, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        Ok(self
            .stored_works(&client)
            .await?
            .then_some(TokenOutput { created: false }))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<TokenOutput, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        if self.stored_works(&client).await? {
            return Ok(TokenOutput { created: false });
        }
        let privileged = self
            .token
            .as_ref()
            .ok_or_else(|| no_token(&self.addr, "making Foundry's token"))?;
        let token = client
            .create_token(
                privileged,
                std::slice::from_ref(&self.policy),
                "foundry",
                &self.period,
            )
            .await?;
        self.store.put(&token).map_err(|e| {
            ActivityError::permanent(format!(
                "{e}\nhint: the token made in OpenBAO was not kept; running the step again makes another"
            ))
        })?;
        Ok(TokenOutput { created: true })
    }
}
