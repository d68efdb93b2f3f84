//! `sys/init`: the one moment OpenBAO hands out its unseal keys and root token. The answer
//! is kept in the run's secret store at once and only its reference is journaled.
//!
//! The init runs inside the server's container (`bao operator init` on its loopback,
//! through the Engine's exec API), and leaves its answer in a 0600 file on the container's
//! own tmpfs (`/dev/shm`) before Foundry reads it: the process in the container outlives a
//! Foundry killed while the init is in flight, so the answer is found there on resume
//! instead of being lost with an HTTP response nobody read. Once kept, the file is removed.
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
use crate::container::Endpoint;

/// Where the in-container init leaves its answer: the container's tmpfs, never its disk.
const ANSWER: &str = "/dev/shm/foundry-openbao-init.json";
/// How long an init found under way in the container (its answer file begun, not done)
/// is waited for.
const UNDER_WAY: foundry_core::PollPolicy = foundry_core::PollPolicy::new(200, 60_000);
/// The most an answer file may hold (ten shares take under 2 KiB).
const ANSWER_MAX: usize = 16 * 1024;

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
    /// The Engine that runs the server's container, and the container: the init runs in it.
    pub endpoint: Endpoint,
    pub container: String,
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
        // `sys/init`'s answer, or `bao operator init -format=json`'s.
        let either = |api: &str, cli: &str| match list(api) {
            found if !found.is_empty() => found,
            _ => list(cli),
        };
        let keys = either("keys_base64", "unseal_keys_b64");
        let keys_hex = either("keys", "unseal_keys_hex");
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
        // Initialized since: by this run's init in the container, whose answer is there,
        // or on its way there.
        match self.take_answer(cx).await? {
            Some(reference) => Ok(Some(InitOutput {
                reference: Some(reference),
                already: false,
            })),
            None => Err(self.lost()),
        }
    }

    /// Runs `sh -c script` in the server's container: its exit code, stdout and stderr.
    async fn exec(
        &self,
        script: &str,
        stdout_max: usize,
    ) -> Result<crate::container::ExecOutput, ActivityError> {
        let docker = self.endpoint.connect().await?;
        self.endpoint
            .exec_collect(
                &docker,
                &self.container,
                &["sh", "-c", script],
                b"",
                stdout_max,
            )
            .await
    }

    /// The answer the init left in the container, kept in the run's store (its reference
    /// file written) and then removed from the container; waits for an init found under
    /// way. `None` when the container holds no answer and no init is under way.
    async fn take_answer(&self, cx: &ActivityCx) -> Result<Option<SecretRef>, ActivityError> {
        let mut poll = UNDER_WAY.start();
        let text = loop {
            let out = self
                .exec(
                    &format!(
                        "if [ -e {ANSWER} ]; then cat {ANSWER}; \
                         elif [ -e {ANSWER}.part ]; then exit 3; else exit 4; fi"
                    ),
                    ANSWER_MAX,
                )
                .await?;
            match out.code {
                0 => break SecretValue::new(out.stdout),
                3 if poll.tick().await => continue,
                3 => {
                    return Err(ActivityError::transient(format!(
                        "OpenBAO's init in container {} is still under way after {:?}",
                        self.container,
                        UNDER_WAY.deadline()
                    )));
                }
                4 => return Ok(None),
                code => {
                    return Err(ActivityError::transient(format!(
                        "reading the init's answer in container {} (exit {code}): {}",
                        self.container, out.stderr
                    )));
                }
            }
        };
        // Readable before kept: a torn or foreign file is refused, never kept.
        InitMaterial::parse(&text)?;
        let reference = cx.keep(&text)?;
        // Only a recovery aid for a step in doubt: the answer is kept already.
        if let Err(e) = write_private(&self.ref_file, &SecretValue::new(reference.0.clone())) {
            tracing::warn!(error = %e.message, "the init answer's reference file was not written");
        }
        let removed = self.exec(&format!("rm -f {ANSWER}"), 0).await?;
        if removed.code != 0 {
            tracing::warn!(container = %self.container, "the init's answer file was not removed: {}", removed.stderr);
        }
        Ok(Some(reference))
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

    /// Its probe takes an answer it finds out of the container, which a verification must
    /// not do; the `openbao-init-status` step before it says whether OpenBAO is initialized.
    fn verifiable(&self) -> bool {
        false
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
        // The answer goes to a private file on the container's tmpfs, renamed into place
        // once whole; the redirection makes the `.part` file before the init starts, so an
        // init under way can be told from none.
        let script = format!(
            "umask 077; [ -e {ANSWER} ] && exit 0; \
             bao operator init -address=https://127.0.0.1:8200 -tls-skip-verify \
             -key-shares={} -key-threshold={} -format=json > {ANSWER}.part \
             && mv {ANSWER}.part {ANSWER}",
            self.shares, self.threshold
        );
        let out = self.exec(&script, 0).await?;
        if out.code != 0 {
            let _ = self.exec(&format!("rm -f {ANSWER}.part"), 0).await;
            // Initialized by someone else between our look and our init.
            if out.stderr.contains("already initialized") {
                return Ok(InitOutput {
                    reference: None,
                    already: true,
                });
            }
            return Err(ActivityError::transient(format!(
                "bao operator init in container {} (exit {}): {}",
                self.container, out.code, out.stderr
            )));
        }
        match self.take_answer(cx).await? {
            Some(reference) => Ok(InitOutput {
                reference: Some(reference),
                already: false,
            }),
            None => Err(self.lost()),
        }
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
