//! The unseal keys (and the root token, when the user keeps it) reach the user once, one
//! secret per private file, so that each can go to its own keeper: beside them, a file
//! with no secret says what they are and where. Then the kept init answer is forgotten, so
//! nothing but those files holds them. Unless kept, the root token is revoked before the
//! handover, once Foundry's own token exists.

use std::path::{Path, PathBuf};

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef, SecretValue};
use serde::{Deserialize, Serialize};

use super::{BaoClient, InitMaterial, write_private};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoHandover {
    /// The kept init answer; none when this install did not initialize the server.
    pub init: Option<SecretRef>,
    /// The file that says what was handed over and where (no secret in it); each key is in
    /// a file beside it (`<stem>-unseal-key-<n>.txt`, `<stem>-root-token.txt`).
    pub path: PathBuf,
    /// What the file names: the server's address and container.
    pub addr: String,
    pub name: String,
    pub threshold: u32,
    /// The root token is handed over too (the user asked to keep it).
    #[serde(default)]
    pub keep_root_token: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverOutput {
    pub path: PathBuf,
    /// The keys (and the root token, if kept) are in their files (handed over by this
    /// install).
    pub handed_over: bool,
    /// The files holding one secret each: the unseal keys in order, then the root token.
    #[serde(default)]
    pub files: Vec<PathBuf>,
}

/// The file beside `index` that holds one handed-over secret (`unseal-key-1`, `root-token`).
pub fn handover_file(index: &Path, what: &str) -> PathBuf {
    let stem = index
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "openbao".into());
    index.with_file_name(format!("{stem}-{what}.txt"))
}

impl BaoHandover {
    /// Each file to write, with its secret.
    fn files<'m>(&self, material: &'m InitMaterial) -> Vec<(PathBuf, &'m SecretValue)> {
        let mut files: Vec<(PathBuf, &SecretValue)> = material
            .keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                (
                    handover_file(&self.path, &format!("unseal-key-{}", i + 1)),
                    key,
                )
            })
            .collect();
        if self.keep_root_token {
            files.push((
                handover_file(&self.path, "root-token"),
                &material.root_token,
            ));
        }
        files
    }

    /// What the index file says: no secret, only what each file holds.
    fn index(&self, files: &[(PathBuf, &SecretValue)]) -> SecretValue {
        let mut text = format!(
            "OpenBAO `{}` at {} was initialized by Foundry.\n\n\
             Each file below holds one secret. Move each to a password manager (best: each \
             unseal key to a different keeper), then delete its file.\nFoundry keeps no copy: \
             without {} of the unseal keys, a restarted OpenBAO stays sealed and its data out \
             of reach.\n",
            self.name, self.addr, self.threshold
        );
        if !self.keep_root_token {
            text.push_str(
                "The root token was revoked once Foundry's own token was made; a quorum of \
                 unseal keys makes a new one (`bao operator generate-root`).\n",
            );
        }
        text.push('\n');
        for (path, _) in files {
            text.push_str(&format!("{}\n", path.display()));
        }
        SecretValue::new(text)
    }

    /// The init material, or `None` when there is none to hand over (or no longer).
    fn material(&self, cx: &ActivityCx) -> Option<InitMaterial> {
        let reference = self.init.as_ref()?;
        InitMaterial::revealed(cx, reference).ok()
    }

    fn output(&self, handed_over: bool, files: Vec<PathBuf>) -> HandoverOutput {
        HandoverOutput {
            path: self.path.clone(),
            handed_over,
            files,
        }
    }
}

impl Activity for BaoHandover {
    type Output = HandoverOutput;

    fn kind(&self) -> &'static str {
        "openbao-handover"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    /// Its probe needs the init answer kept in the run, which the `forget-init` step after
    /// it removes: a verification could not tell a drift from that.
    fn verifiable(&self) -> bool {
        false
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<HandoverOutput>, ActivityError> {
        if self.init.is_none() {
            return Ok(Some(self.output(false, Vec::new())));
        }
        let Some(material) = self.material(cx) else {
            return Ok(None);
        };
        let files = self.files(&material);
        let all_there = self.path.exists()
            && files.iter().all(|(path, secret)| {
                std::fs::read_to_string(path).is_ok_and(|t| t.trim() == secret.expose())
            });
        Ok(all_there.then(|| self.output(true, files.into_iter().map(|(p, _)| p).collect())))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<HandoverOutput, ActivityError> {
        if self.init.is_none() {
            return Ok(self.output(false, Vec::new()));
        }
        let Some(material) = self.material(cx) else {
            return Err(ActivityError::permanent(format!(
                "the init answer of OpenBAO `{}` is no longer kept, so it cannot be written to {}",
                self.name,
                self.path.display()
            )));
        };
        let files = self.files(&material);
        for (path, secret) in &files {
            write_private(path, &SecretValue::new(format!("{}\n", secret.expose())))?;
        }
        // Written last: its presence says every secret file is written.
        write_private(&self.path, &self.index(&files))?;
        Ok(self.output(true, files.into_iter().map(|(p, _)| p).collect()))
    }
}

/// Revokes the root token of this install's init once Foundry's token exists, unless the
/// user keeps it. Decided by OpenBAO itself: a root token it refuses is revoked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoRevokeRoot {
    pub addr: String,
    /// The kept init answer; none when this install did not initialize the server.
    pub init: Option<SecretRef>,
    pub keep: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeOutput {
    pub revoked: bool,
}

impl BaoRevokeRoot {
    fn root(&self, cx: &ActivityCx) -> Result<Option<SecretValue>, ActivityError> {
        match (&self.init, self.keep) {
            (Some(reference), false) => Ok(Some(InitMaterial::revealed(cx, reference)?.root_token)),
            _ => Ok(None),
        }
    }
}

impl Activity for BaoRevokeRoot {
    type Output = RevokeOutput;

    fn kind(&self) -> &'static str {
        "openbao-revoke-root"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    /// Its probe needs the init answer kept in the run, which the `forget-init` step after
    /// it removes: a verification could not tell a drift from that.
    fn verifiable(&self) -> bool {
        false
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<RevokeOutput>, ActivityError> {
        let Some(root) = self.root(cx)? else {
            return Ok(Some(RevokeOutput { revoked: false }));
        };
        let client = BaoClient::new(&self.addr)?;
        Ok(client
            .lookup_self(&root)
            .await?
            .is_none()
            .then_some(RevokeOutput { revoked: true }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<RevokeOutput, ActivityError> {
        let Some(root) = self.root(cx)? else {
            return Ok(RevokeOutput { revoked: false });
        };
        BaoClient::new(&self.addr)?.revoke_self(&root).await?;
        Ok(RevokeOutput { revoked: true })
    }
}

/// Forgets the kept init answer and the file naming its reference. Safe to run again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetInit {
    pub init: Option<SecretRef>,
    pub ref_file: PathBuf,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgotOutput {
    /// There was a kept answer to forget.
    pub forgot: bool,
}

impl Activity for ForgetInit {
    type Output = ForgotOutput;

    fn kind(&self) -> &'static str {
        "openbao-forget-init"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<ForgotOutput>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ForgotOutput, ActivityError> {
        if let Some(reference) = &self.init {
            cx.forget(reference)?;
        }
        match std::fs::remove_file(&self.ref_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ActivityError::permanent(format!(
                    "removing {}: {e}",
                    self.ref_file.display()
                )));
            }
        }
        Ok(ForgotOutput {
            forgot: self.init.is_some(),
        })
    }
}
