//! A new Foundry token when the one Foundry kept no longer works (expired after a long
//! idle time, revoked, or lost with its keyring): minted with Foundry's policy from the
//! root token a person types, or from a root token generated for the occasion by a quorum
//! of unseal keys (`sys/generate-root` with a one-time password) and revoked as soon as
//! Foundry's token is made. Not a run: nothing of it is journaled, and no key or token is
//! ever printed.

use std::sync::Arc;

use base64::Engine as _;
use foundry_activities::openbao::{BaoClient, BaoPolicy, BaoToken};
use foundry_core::{Activity, ActivityCx, ActivityError, SecretValue};

use super::{POLICY, POLICY_RULES};

pub use foundry_activities::openbao::TokenStore;

/// Foundry's token lives this long unused; each use past half of it renews it.
pub const TOKEN_PERIOD: &str = "768h";

/// What a recovery did.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Recovered {
    /// A new token was made (false: the kept one still worked, and stays).
    pub minted: bool,
    /// Where the token is kept, for people.
    pub kept_in: String,
}

/// Whether the token `store` keeps still works at `addr` with Foundry's policy: then there
/// is nothing to recover, and no root token is needed.
pub async fn kept_works(addr: &str, store: &dyn TokenStore) -> Result<bool, ActivityError> {
    let Some(kept) = store
        .fetch()
        .await
        .map_err(|e| ActivityError::permanent(e.to_string()))?
    else {
        return Ok(false);
    };
    Ok(BaoClient::new(addr)?
        .token_ttl(&kept)
        .await?
        .is_some_and(|t| t.policies.iter().any(|p| p == POLICY)))
}

/// Mints Foundry's token with `root` (Foundry's policy written again first) and keeps it
/// in `store`; nothing is made while the kept token still works.
pub async fn mint(
    addr: &str,
    root: &SecretValue,
    store: Arc<dyn TokenStore>,
) -> Result<Recovered, ActivityError> {
    let cx = ActivityCx::standalone("openbao-recover");
    let policy = BaoPolicy {
        addr: addr.to_string(),
        name: POLICY.into(),
        rules: POLICY_RULES.into(),
        token: Some(root.clone()),
    };
    policy.apply(&cx).await?;
    let token = BaoToken {
        addr: addr.to_string(),
        policy: POLICY.into(),
        period: TOKEN_PERIOD.into(),
        token: Some(root.clone()),
        store: Arc::clone(&store),
    };
    let made = token.apply(&cx).await?;
    Ok(Recovered {
        minted: made.created,
        kept_in: store.place(),
    })
}

/// A root token generation in progress, begun by this process: its nonce, and the
/// one-time password that decodes its result (held only here).
pub struct RootGeneration {
    client: BaoClient,
    nonce: String,
    otp: SecretValue,
    /// Unseal keys it needs.
    pub required: u32,
}

/// Where a generation stands after a key.
pub enum Progress {
    /// Keys given so far, of those needed.
    More { progress: u32, required: u32 },
    /// The generated root token.
    Done(SecretValue),
}

impl RootGeneration {
    /// Begins a generation at `addr`. One already in progress (left by someone else, or an
    /// interrupted recovery) is cancelled first, since only its starter holds its password.
    pub async fn start(addr: &str) -> Result<RootGeneration, ActivityError> {
        let client = BaoClient::new(addr)?;
        let status = client.generate_root_status().await.map_err(|e| {
            if e.message.contains("405") {
                ActivityError::permanent(format!(
                    "{}\nhint: this OpenBAO refuses root token generation on this listener \
                     (`disable_unauthed_generate_root_endpoints`); recover with the root token, \
                     or set that option to false on a listener Foundry reaches",
                    e.message
                ))
            } else {
                e
            }
        })?;
        if status.started {
            tracing::warn!(
                "a root token generation was in progress at {addr}; it is cancelled and \
                 another begins"
            );
            client.generate_root_cancel().await?;
        }
        let started = client.generate_root_start().await?;
        let otp = started.otp.clone().ok_or_else(|| {
            ActivityError::permanent(format!(
                "PUT sys/generate-root/attempt at {addr}: the answer holds no one-time password"
            ))
        })?;
        Ok(RootGeneration {
            client,
            nonce: started.nonce,
            otp,
            required: started.required,
        })
    }

    /// Gives one unseal key.
    pub async fn give(&self, key: &SecretValue) -> Result<Progress, ActivityError> {
        let answer = self.client.generate_root_update(key, &self.nonce).await?;
        if !answer.complete {
            return Ok(Progress::More {
                progress: answer.progress,
                required: answer.required,
            });
        }
        decode_root(&answer.encoded_token, &self.otp).map(Progress::Done)
    }

    /// Gives up: OpenBAO forgets the keys given so far.
    pub async fn cancel(&self) -> Result<(), ActivityError> {
        self.client.generate_root_cancel().await
    }

    /// Mints Foundry's token with the generated `root`, then revokes `root` whatever the
    /// mint did, so the generated token never outlives the recovery.
    pub async fn mint_and_revoke(
        &self,
        root: &SecretValue,
        store: Arc<dyn TokenStore>,
    ) -> Result<Recovered, ActivityError> {
        let minted = mint(self.client.addr(), root, store).await;
        let revoked = self.client.revoke_self(root).await;
        let recovered = minted?;
        revoked.map_err(|e| {
            ActivityError::permanent(format!(
                "{}\nhint: Foundry's token was made, but the root token generated for it was \
                 not revoked; revoke it with `bao token revoke -self` using a root token",
                e.message
            ))
        })?;
        Ok(recovered)
    }
}

/// The generated root token: the answer's base64 text XOR the one-time password. An
/// error never quotes either.
fn decode_root(encoded: &str, otp: &SecretValue) -> Result<SecretValue, ActivityError> {
    let bad = |why: &str| {
        ActivityError::permanent(format!(
            "the root token OpenBAO generated cannot be decoded: {why}"
        ))
    };
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim().trim_end_matches('='))
        .map_err(|_| bad("it is not base64"))?;
    let otp = otp.expose().as_bytes();
    if bytes.len() != otp.len() {
        return Err(bad("its length differs from the one-time password's"));
    }
    let token: Vec<u8> = bytes.iter().zip(otp).map(|(b, o)| b ^ o).collect();
    String::from_utf8(token)
        .map(SecretValue::new)
        .map_err(|_| bad("it is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_root_token_is_its_encoding_xor_the_one_time_password() {
        let otp = SecretValue::new("abcdefghijklmnopqrstuvwxyz01");
        let token = "s.0123456789ABCDEFGHIJKLMNOP";
        let xored: Vec<u8> = token
            .bytes()
            .zip(otp.expose().bytes())
            .map(|(t, o)| t ^ o)
            .collect();
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&xored);
        assert_eq!(
            decode_root(&encoded, &otp).expect("decoded").expose(),
            token
        );
        let padded = base64::engine::general_purpose::STANDARD.encode(&xored);
        assert_eq!(decode_root(&padded, &otp).expect("decoded").expose(), token);
        let short = SecretValue::new("abc");
        let err = decode_root(&encoded, &short).expect_err("length");
        assert!(!err.message.contains(token) && err.message.contains("length"));
        assert!(decode_root("not base64!", &otp).is_err());
    }
}
