//! Nodes: waiting until named nodes are Ready, the cluster's nodes as `cluster status` and
//! `node list` show them, and which node holds kube-vip's VIP.

use std::time::Duration;

use ::kube::Api;
use ::kube::api::ListParams;
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};

use super::client::{KubeAccess, api_error, is_not_found};

/// How often a wait looks again.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// Each named node Ready, waited for at most `timeout_s`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesReady {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub nodes: Vec<String>,
    pub timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesReadyOutput {
    pub ready: Vec<String>,
}

/// One node as `node list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// From the `node-role.kubernetes.io/<role>` labels, sorted.
    pub roles: Vec<String>,
    pub kubelet_version: String,
    pub ready: bool,
    pub cordoned: bool,
}

/// A node's Ready condition: whether it is True, and its message (or reason).
fn readiness(node: &Node) -> (bool, String) {
    let condition = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match condition {
        None => (false, "no Ready condition yet".into()),
        Some(c) => {
            let said = c
                .message
                .clone()
                .filter(|m| !m.is_empty())
                .or_else(|| c.reason.clone())
                .unwrap_or_default();
            (c.status == "True", format!("Ready={}: {said}", c.status))
        }
    }
}

fn info(node: &Node) -> NodeInfo {
    let mut roles: Vec<String> = node
        .metadata
        .labels
        .iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    roles.sort();
    NodeInfo {
        name: node.metadata.name.clone().unwrap_or_default(),
        roles,
        kubelet_version: node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.clone())
            .unwrap_or_default(),
        ready: readiness(node).0,
        cordoned: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
    }
}

/// The cluster's nodes, read-only, sorted by name.
pub async fn cluster_nodes(client: &::kube::Client) -> Result<Vec<NodeInfo>, ::kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut out: Vec<NodeInfo> = nodes
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(info)
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The node that holds the API's VIP: the holder of kube-vip's `plndr-cp-lock` lease in
/// kube-system; `None` when there is no lease or no holder.
pub async fn vip_holder(client: &::kube::Client) -> Result<Option<String>, ::kube::Error> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    match leases.get("plndr-cp-lock").await {
        Ok(lease) => Ok(lease
            .spec
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

impl NodesReady {
    /// Each wanted node with whether it is Ready and what its condition says.
    async fn look(
        &self,
        client: &::kube::Client,
    ) -> Result<Vec<(String, bool, String)>, ActivityError> {
        let api: Api<Node> = Api::all(client.clone());
        let mut out = Vec::new();
        for name in &self.nodes {
            match api.get_opt(name).await {
                Ok(Some(node)) => {
                    let (ready, said) = readiness(&node);
                    out.push((name.clone(), ready, said));
                }
                Ok(None) => out.push((name.clone(), false, "no such node yet".into())),
                Err(e) => {
                    return Err(api_error(
                        &format!("reading node {name}"),
                        &self.access.place(),
                        e,
                    ));
                }
            }
        }
        Ok(out)
    }

    fn output(&self) -> NodesReadyOutput {
        NodesReadyOutput {
            ready: self.nodes.clone(),
        }
    }
}

impl Activity for NodesReady {
    type Output = NodesReadyOutput;

    fn kind(&self) -> &'static str {
        "kube-nodes-ready"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<NodesReadyOutput>, ActivityError> {
        let client = self.access.client(cx).await?;
        let seen = self.look(&client).await?;
        Ok(seen
            .iter()
            .all(|(_, ready, _)| *ready)
            .then(|| self.output()))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<NodesReadyOutput, ActivityError> {
        let client = self.access.client(cx).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.timeout_s);
        loop {
            let seen = self.look(&client).await?;
            if seen.iter().all(|(_, ready, _)| *ready) {
                return Ok(self.output());
            }
            if tokio::time::Instant::now() >= deadline {
                let waiting: Vec<String> = seen
                    .iter()
                    .filter(|(_, ready, _)| !ready)
                    .map(|(name, _, said)| format!("{name} ({said})"))
                    .collect();
                return Err(ActivityError::transient(format!(
                    "nodes not Ready after {} s at {}: {}\nhint: look at the node's K3s \
                     service (journalctl -u k3s or k3s-agent on the host)",
                    self.timeout_s,
                    self.access.place(),
                    waiting.join(", ")
                )));
            }
            tokio::select! {
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::permanent("cancelled while waiting for nodes to be Ready"));
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}
