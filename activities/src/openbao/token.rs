//! Foundry's own OpenBAO token: made once with Foundry's policy and kept in a
//! [`TokenStore`] (the OS keyring, else a private file), never in the journal.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use foundry_core::activity::BoxFuture;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretValue};

use super::client::TokenTtl;
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

    /// [`TokenStore::get`] for async callers: a store that waits on another process (the
    /// OS keyring) overrides it so the caller's runtime goes on meanwhile, whatever its
    /// flavour.
    fn fetch(&self) -> BoxFuture<'_, Result<Option<SecretValue>, TokenStoreError>> {
        Box::pin(std::future::ready(self.get()))
    }

    /// [`TokenStore::put`] for async callers, as [`TokenStore::fetch`].
    fn keep<'a>(&'a self, token: &'a SecretValue) -> BoxFuture<'a, Result<(), TokenStoreError>> {
        Box::pin(std::future::ready(self.put(token)))
    }
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
        let Some(stored) = self.store.fetch().await.map_err(stored_error)? else {
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
        self.store.keep(&token).await.map_err(|e| {
            ActivityError::permanent(format!(
                "{e}\nhint: the token made in OpenBAO was not kept; running the step again makes another"
            ))
        })?;
        Ok(TokenOutput { created: true })
    }
}

/// What Foundry's token has left to live, asked of OpenBAO when it is used.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TokenLife {
    /// Seconds left (0: it never expires).
    pub ttl_s: u64,
    /// The time to live it is given when made or renewed (its period).
    pub creation_ttl_s: u64,
    /// This use renewed it.
    pub renewed: bool,
    /// Less than half its time is left and a renewal did not bring it back.
    pub low: bool,
}

impl TokenLife {
    /// The time left for people: `31d 23h`, `5h 3m`, `42s`, or `never expires`.
    pub fn left(&self) -> String {
        let s = self.ttl_s;
        match s {
            0 => "never expires".into(),
            1..=59 => format!("{s}s"),
            60..=3599 => format!("{}m {}s", s / 60, s % 60),
            3600..=86_399 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
            _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        }
    }

    fn of(ttl: &TokenTtl, renewed: bool) -> TokenLife {
        TokenLife {
            ttl_s: ttl.ttl,
            creation_ttl_s: ttl.creation_ttl,
            renewed,
            low: half_spent(ttl),
        }
    }
}

/// Less than half of a token's time is left (a token that never expires never is).
fn half_spent(ttl: &TokenTtl) -> bool {
    ttl.ttl != 0 && ttl.ttl.saturating_mul(2) < ttl.creation_ttl
}

/// Renewals this process asked for: at most one.
static RENEWED: AtomicBool = AtomicBool::new(false);

/// Foundry's token's life, renewed first (once per process at most) when less than half
/// of its time is left; `None` when OpenBAO no longer knows the token. A token that stays
/// low is a `tracing` warning that says how to get a new one. A refused renewal is not an
/// error: the token still works until it expires.
pub async fn keep_alive(
    client: &BaoClient,
    token: &SecretValue,
) -> Result<Option<TokenLife>, ActivityError> {
    let Some(ttl) = client.token_ttl(token).await? else {
        return Ok(None);
    };
    if !half_spent(&ttl) || !ttl.renewable || RENEWED.swap(true, Ordering::SeqCst) {
        return Ok(Some(warned(TokenLife::of(&ttl, false))));
    }
    if let Err(e) = client.renew_self(token).await {
        tracing::warn!(error = %e.message, "Foundry's OpenBAO token was not renewed");
        return Ok(Some(warned(TokenLife::of(&ttl, false))));
    }
    let after = client.token_ttl(token).await?.unwrap_or(ttl);
    Ok(Some(warned(TokenLife::of(&after, true))))
}

fn warned(life: TokenLife) -> TokenLife {
    if life.low {
        tracing::warn!(
            "Foundry's OpenBAO token expires in {} and OpenBAO does not renew it any \
             further\nhint: `foundry secret recover-token` makes a new one from the root \
             token or a quorum of unseal keys",
            life.left()
        );
    }
    life
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(ttl: u64, creation_ttl: u64) -> TokenTtl {
        TokenTtl {
            ttl,
            creation_ttl,
            renewable: true,
            policies: vec![],
        }
    }

    #[test]
    fn less_than_half_left_is_half_spent_and_a_token_without_expiry_never_is() {
        assert!(!half_spent(&ttl(10, 20)));
        assert!(half_spent(&ttl(9, 20)));
        assert!(!half_spent(&ttl(0, 0)), "a root token");
        let life = TokenLife::of(&ttl(9, 20), false);
        assert!(life.low && !life.renewed);
    }

    #[test]
    fn the_time_left_reads_in_its_two_largest_units() {
        let left = |s| TokenLife::of(&ttl(s, 2_764_800), false).left();
        assert_eq!(left(0), "never expires");
        assert_eq!(left(42), "42s");
        assert_eq!(left(125), "2m 5s");
        assert_eq!(left(3 * 3600 + 120), "3h 2m");
        assert_eq!(left(2_764_800), "32d 0h");
    }
}
