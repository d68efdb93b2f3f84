//! `sys/init`: the one moment OpenBAO hands out its unseal keys and root token. The answer
//! is kept in the run's secret store at once and only its reference is journaled.
//!
//! A step in doubt is decided by two facts kept outside the answer: whether the server was
//! initialized before this run (a step of its own, journaled before the init), and a small
//! file naming the kept answer's reference (not the secret), written right after keeping
//! it. Initialized now, not before, and no kept answer: this run initialized it and lost
//! the answer (killed between the init and keeping it, or the answer was lost on the
//! wire). That cannot be repaired, and the error says so and what to do.

use std::path::PathBuf;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef, SecretValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{BaoClient, write_private};

/// Whether the server is initialized: read-only, so its probe is its apply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoInitStatus {
    pub addr: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitStatus {
    pub initialized: bool,
}

impl Activity for BaoInitStatus {
    type Output = InitStatus;

    fn kind(&self) -> &'static str {
        "openbao-init-status"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<InitStatus>, ActivityError> {
        self.apply(cx).await.map(Some)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<InitStatus, ActivityError> {
        let initialized = BaoClient::new(&self.addr)?.init_status().await?;
        Ok(InitStatus { initialized })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoInit {
    pub addr: String,
    pub shares: u32,
    pub threshold: u32,
    /// What `BaoInitStatus` found before this step, in this run.
    pub initialized_before: bool,
    /// Where the kept answer's reference is written (not the secret itself).
    pub ref_file: PathBuf,
    /// What the user can do when the answer is lost (remove which container and volume).
    pub lost_hint: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitOutput {
    /// The kept init answer (unseal keys and root token); none when this step did not
    /// initialize the server.
    pub reference: Option<SecretRef>,
    /// The server was already initialized (by an earlier install).
    pub already: bool,
}

/// The init answer, read from its kept JSON text.
pub struct InitMaterial {
    /// Unseal keys, base64 (as `bao operator init` shows them).
    pub keys: Vec<SecretValue>,
    /// The same keys, hex.
    pub keys_hex: Vec<SecretValue>,
    pub root_token: SecretValue,
}

impl InitMaterial {
    /// The kept answer behind `reference`, revealed and parsed, with each of its parts
    /// (every key and the root token, as text, base64 and hex) redacted from the run's
    /// events on its own: a key shown alone is redacted as well as the whole answer.
    pub fn revealed(cx: &ActivityCx, reference: &SecretRef) -> Result<InitMaterial, ActivityError> {
        let material = InitMaterial::parse(&cx.reveal(reference)?)?;
        material.redact(cx);
        Ok(material)
    }

    fn redact(&self, cx: &ActivityCx) {
        use base64::Engine as _;
        let parts = self.keys.iter().chain(&self.keys_hex);
        for part in parts.chain(std::iter::once(&self.root_token)) {
            let text = part.expose();
            cx.redact(part);
            for engine in [
                &base64::engine::general_purpose::STANDARD,
                &base64::engine::general_purpose::STANDARD_NO_PAD,
            ] {
                cx.redact(&SecretValue::new(engine.encode(text)));
            }
            cx.redact(&SecretValue::new(hex::encode(text)));
            if let Ok(raw) = hex::decode(text) {
                cx.redact(&SecretValue::new(
                    base64::engine::general_purpose::STANDARD.encode(raw),
                ));
            }
        }
    }

    /// Parses the kept answer. An error never quotes it.
    pub fn parse(answer: &SecretValue) -> Result<InitMaterial, ActivityError> {
        let bad = || ActivityError::permanent("the kept OpenBAO init answer is not readable");
        let value: Value = serde_json::from_str(answer.expose()).map_err(|_| bad())?;
        let list = |field: &str| -> Vec<SecretValue> {
            value[field]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(SecretValue::new))
                        .collect()
                })
                .unwrap_or_default()
        };
        let root_token = value["root_token"]
            .as_str()
            .map(SecretValue::new)
            .ok_or_else(bad)?;
        let keys = list("keys_base64");
        let keys_hex = list("keys");
        if keys.is_empty() && keys_hex.is_empty() {
            return Err(bad());
        }
        Ok(InitMaterial {
            keys: if keys.is_empty() {
                keys_hex.clone()
            } else {
                keys
            },
            keys_hex,
            root_token,
        })
    }
}

impl BaoInit {
    /// The answer this step kept, if its reference file names one the store still has.
    fn kept(&self, cx: &ActivityCx) -> Option<SecretRef> {
        let text = std::fs::read_to_string(&self.ref_file).ok()?;
        let reference = SecretRef(text.trim().to_string());
        cx.reveal(&reference).ok().map(|_| reference)
    }

    fn lost(&self) -> ActivityError {
        ActivityError::permanent(format!(
            "OpenBAO at {} was initialized by this run, but its unseal keys and root token were \
             lost before Foundry could keep them (the process stopped, or the answer was lost, \
             right after the init); they cannot be recovered\nhint: {}",
            self.addr, self.lost_hint
        ))
    }

    /// What the server and the kept answer already say: the step's output, `None` when the
    /// server is not initialized yet, or the lost-answer error.
    async fn settled(&self, cx: &ActivityCx) -> Result<Option<InitOutput>, ActivityError> {
        if let Some(reference) = self.kept(cx) {
            return Ok(Some(InitOutput {
                reference: Some(reference),
                already: false,
            }));
        }
        if !BaoClient::new(&self.addr)?.init_status().await? {
            return Ok(None);
        }
        if self.initialized_before {
            return Ok(Some(InitOutput {
                reference: None,
                already: true,
            }));
        }
        Err(self.lost())
    }
}

impl Activity for BaoInit {
    type Output = InitOutput;

    fn kind(&self) -> &'static str {
        "openbao-init"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<InitOutput>, ActivityError> {
        self.settled(cx).await.map_err(|e| match e.transient {
            true => e,
            false => e.settling(),
        })
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<InitOutput, ActivityError> {
        if let Some(out) = self.settled(cx).await? {
            return Ok(out);
        }
        let client = BaoClient::new(&self.addr)?;
        let Some(answer) = client.init(self.shares, self.threshold).await? else {
            // Initialized by someone else between our look and our init.
            return Ok(InitOutput {
                reference: None,
                already: true,
            });
        };
        let reference = cx.keep(&answer)?;
        // Only a recovery aid for a step in doubt: the answer is kept already.
        if let Err(e) = write_private(&self.ref_file, &SecretValue::new(reference.0.clone())) {
            tracing::warn!(error = %e.message, "the init answer's reference file was not written");
        }
        Ok(InitOutput {
            reference: Some(reference),
            already: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_and_the_root_token_are_redacted_alone_and_encoded() {
        use base64::Engine as _;
        let raw = [0xde_u8, 0xad, 0xbe, 0xef, 0x01, 0x02];
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let hex_key = hex::encode(raw);
        let answer = serde_json::json!({
            "keys": [hex_key, "0a0b0c"],
            "keys_base64": [b64, "CgsM"],
            "root_token": "s.ROOTTOKEN",
        });
        let store = std::sync::Arc::new(foundry_core::secret::MemorySecretStore::default());
        let cx = ActivityCx::standalone("it").with_secrets(store);
        let reference = cx
            .keep(&SecretValue::new(answer.to_string()))
            .expect("keep");
        let material = InitMaterial::revealed(&cx, &reference).expect("material");
        assert_eq!(material.keys.len(), 2);
        let root_b64 = base64::engine::general_purpose::STANDARD.encode("s.ROOTTOKEN");
        let root_hex = hex::encode("s.ROOTTOKEN");
        for shown in [
            b64.as_str(),
            hex_key.as_str(),
            "CgsM",
            "0a0b0c",
            "s.ROOTTOKEN",
            root_b64.as_str(),
            root_hex.as_str(),
        ] {
            let said = cx.redacted(&format!("error: {shown} refused"));
            assert_eq!(said, "error: <redacted> refused", "{shown}");
        }
    }
}
