//! Unseals OpenBAO with the kept init answer's keys, one by one until it is unsealed.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, PollPolicy, SecretRef};
use serde::{Deserialize, Serialize};

use super::{BaoClient, InitMaterial};

/// How long a freshly unsealed server may take to become the active node (raft elects
/// itself), and how often to look.
const ACTIVE_POLL: PollPolicy = PollPolicy::new(200, 30_000);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoUnseal {
    pub addr: String,
    /// The kept init answer, when this install initialized the server.
    pub init: Option<SecretRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnsealOutput {
    /// This step unsealed it (it was sealed).
    pub unsealed: bool,
}

impl Activity for BaoUnseal {
    type Output = UnsealOutput;

    fn kind(&self) -> &'static str {
        "openbao-unseal"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<UnsealOutput>, ActivityError> {
        let health = BaoClient::new(&self.addr)?.health().await?;
        Ok((health.initialized && !health.sealed && !health.standby)
            .then_some(UnsealOutput { unsealed: false }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<UnsealOutput, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        let status = client.seal_status().await?;
        if !status.initialized {
            return Err(ActivityError::permanent(format!(
                "OpenBAO at {} is not initialized, so it cannot be unsealed",
                self.addr
            )));
        }
        if !status.sealed {
            wait_active(&client, cx).await?;
            return Ok(UnsealOutput { unsealed: false });
        }
        let material = match &self.init {
            Some(reference) => InitMaterial::revealed(cx, reference).ok(),
            None => None,
        };
        let Some(material) = material else {
            return Err(ActivityError::permanent(format!(
                "OpenBAO at {} is sealed and Foundry holds no unseal keys for it\nhint: unseal it \
                 with {} of the unseal keys handed over at its install: \
                 `BAO_ADDR={} bao operator unseal`, once per key",
                self.addr, status.threshold, self.addr
            )));
        };
        if status.progress > 0 {
            // Keys given by an attempt that stopped: start over, so none counts twice.
            client.unseal_reset().await?;
        }
        for key in &material.keys {
            if !client.unseal(key).await?.sealed {
                wait_active(&client, cx).await?;
                return Ok(UnsealOutput { unsealed: true });
            }
        }
        Err(ActivityError::permanent(format!(
            "OpenBAO at {} is still sealed after all {} kept unseal keys",
            self.addr,
            material.keys.len()
        )))
    }
}

/// Waits until the unsealed server is the active node and serves requests.
async fn wait_active(client: &BaoClient, cx: &ActivityCx) -> Result<(), ActivityError> {
    let mut poll = ACTIVE_POLL.start();
    while poll
        .tick_unless(cx.cancel_token())
        .await
        .map_err(|_| ActivityError::permanent("cancelled while OpenBAO becomes active"))?
    {
        let health = client.health().await?;
        if !health.sealed && !health.standby {
            return Ok(());
        }
    }
    Err(ActivityError::transient(format!(
        "OpenBAO at {} is unsealed but not active after {} s",
        client.addr(),
        ACTIVE_POLL.deadline().as_secs()
    )))
}
