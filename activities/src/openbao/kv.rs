//! The KV v2 mount Foundry keeps its secrets in, and Foundry's policy.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, SecretValue};
use serde::{Deserialize, Serialize};

use super::{BaoClient, no_token};

/// A KV version 2 engine mounted at `path` (e.g. `kv`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoKvMount {
    pub addr: String,
    pub path: String,
    /// The privileged token (revealed by the workflow; never journaled).
    #[serde(skip)]
    pub token: Option<SecretValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvMountOutput {
    /// This step mounted it.
    pub mounted: bool,
}

impl BaoKvMount {
    fn token(&self) -> Result<&SecretValue, ActivityError> {
        self.token
            .as_ref()
            .ok_or_else(|| no_token(&self.addr, &format!("mounting {}/", self.path)))
    }

    /// Whether KV v2 is there; an error when another engine holds the path.
    async fn present(&self, client: &BaoClient) -> Result<bool, ActivityError> {
        match client.mount(self.token()?, &self.path).await? {
            None => Ok(false),
            Some(m) if m.kind == "kv" && m.version.as_deref() == Some("2") => Ok(true),
            Some(m) => Err(ActivityError::permanent(format!(
                "{}/ at {} holds a `{}` engine (version {}), not KV version 2\nhint: move it \
                 elsewhere or remove it: Foundry keeps its secrets in KV v2 at {}/",
                self.path,
                self.addr,
                m.kind,
                m.version.as_deref().unwrap_or("none"),
                self.path
            ))),
        }
    }
}

impl Activity for BaoKvMount {
    type Output = KvMountOutput;

    fn kind(&self) -> &'static str {
        "openbao-kv-mount"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    /// Its probe asks with the init's root token, which a later step revokes: a
    /// verification could not tell a drift from that.
    fn verifiable(&self) -> bool {
        false
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<KvMountOutput>, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        Ok(self
            .present(&client)
            .await?
            .then_some(KvMountOutput { mounted: false }))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<KvMountOutput, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        if self.present(&client).await? {
            return Ok(KvMountOutput { mounted: false });
        }
        client.mount_kv2(self.token()?, &self.path).await?;
        Ok(KvMountOutput { mounted: true })
    }
}

/// An ACL policy with exactly these rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaoPolicy {
    pub addr: String,
    pub name: String,
    pub rules: String,
    #[serde(skip)]
    pub token: Option<SecretValue>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyOutput {
    /// This step wrote it (it was missing or different).
    pub written: bool,
}

impl BaoPolicy {
    fn token(&self) -> Result<&SecretValue, ActivityError> {
        self.token
            .as_ref()
            .ok_or_else(|| no_token(&self.addr, &format!("writing policy {}", self.name)))
    }

    async fn current(&self, client: &BaoClient) -> Result<bool, ActivityError> {
        let found = client.policy(self.token()?, &self.name).await?;
        Ok(found.is_some_and(|text| text.trim() == self.rules.trim()))
    }
}

impl Activity for BaoPolicy {
    type Output = PolicyOutput;

    fn kind(&self) -> &'static str {
        "openbao-policy"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    /// Its probe asks with the init's root token, which a later step revokes: a
    /// verification could not tell a drift from that.
    fn verifiable(&self) -> bool {
        false
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<PolicyOutput>, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        Ok(self
            .current(&client)
            .await?
            .then_some(PolicyOutput { written: false }))
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<PolicyOutput, ActivityError> {
        let client = BaoClient::new(&self.addr)?;
        if self.current(&client).await? {
            return Ok(PolicyOutput { written: false });
        }
        client
            .put_policy(self.token()?, &self.name, &self.rules)
            .await?;
        Ok(PolicyOutput { written: true })
    }
}
