//! The unseal keys and root token reach the user once: written to a private file the user
//! is told to empty into a password manager and delete. Then the kept init answer is
//! forgotten, so nothing but that file holds them.

use std::path::PathBuf;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretRef, SecretValue};
use serde::{Deserialize, Serialize};

use super::{InitMaterial, write_private};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoHandover {
    /// The kept init answer; none when this install did not initialize the server.
    pub init: Option<SecretRef>,
    /// The file to write (`$FOUNDRY_HOME/openbao/<name>-init.txt`).
    pub path: PathBuf,
    /// What the file names: the server's address and container.
    pub addr: String,
    pub name: String,
    pub threshold: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoverOutput {
    pub path: PathBuf,
    /// The keys and root token are in the file (handed over by this install).
    pub handed_over: bool,
}

impl BaoHandover {
    fn text(&self, material: &InitMaterial) -> SecretValue {
        let mut text = format!(
            "OpenBAO `{}` at {} was initialized by Foundry.\n\n\
             Move the unseal keys and the root token below to a password manager now, then \
             delete this file.\nFoundry keeps no copy: without {} of the unseal keys, a \
             restarted OpenBAO stays sealed and its data out of reach.\n\n",
            self.name, self.addr, self.threshold
        );
        for (i, key) in material.keys.iter().enumerate() {
            text.push_str(&format!("Unseal Key {}: {}\n", i + 1, key.expose()));
        }
        text.push_str(&format!(
            "\nInitial Root Token: {}\n",
            material.root_token.expose()
        ));
        SecretValue::new(text)
    }

    /// The init material, or `None` when there is none to hand over (or no longer).
    fn material(&self, cx: &ActivityCx) -> Option<InitMaterial> {
        let reference = self.init.as_ref()?;
        cx.reveal(reference)
            .and_then(|v| InitMaterial::parse(&v))
            .ok()
    }

    fn output(&self, handed_over: bool) -> HandoverOutput {
        HandoverOutput {
            path: self.path.clone(),
            handed_over,
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

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<HandoverOutput>, ActivityError> {
        if self.init.is_none() {
            return Ok(Some(self.output(false)));
        }
        let on_disk = std::fs::read_to_string(&self.path).ok();
        match (self.material(cx), on_disk) {
            (Some(m), Some(text)) if text.contains(m.root_token.expose()) => {
                Ok(Some(self.output(true)))
            }
            _ => Ok(None),
        }
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<HandoverOutput, ActivityError> {
        if self.init.is_none() {
            return Ok(self.output(false));
        }
        let Some(material) = self.material(cx) else {
            return Err(ActivityError::permanent(format!(
                "the init answer of OpenBAO `{}` is no longer kept, so it cannot be written to {}",
                self.name,
                self.path.display()
            )));
        };
        write_private(&self.path, &self.text(&material))?;
        Ok(self.output(true))
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
