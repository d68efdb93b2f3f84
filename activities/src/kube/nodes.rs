//! Nodes: waiting until named nodes are Ready, the cluster's nodes as `cluster status` and
//! `node list` show them, and which node holds kube-vip's VIP.

use std::collections::BTreeMap;
use std::pin::pin;
use std::time::Duration;

use ::kube::Api;
use ::kube::api::{ListParams, WatchEvent, WatchParams};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use futures_util::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::client::{KubeAccess, api_error, is_not_found};

/// How often a wait looks again.
pub(crate) const POLL: Duration = Duration::from_millis(500);

/// Each named node Ready, waited for (a watch) at most `timeout_s`.
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
    /// Each wanted node with whether it is Ready and what its condition says, from `seen`.
    fn states(&self, seen: &BTreeMap<String, Node>) -> Vec<(String, bool, String)> {
        self.nodes
            .iter()
            .map(|name| match seen.get(name) {
                Some(node) => {
                    let (ready, said) = readiness(node);
                    (name.clone(), ready, said)
                }
                None => (name.clone(), false, "no such node yet".into()),
            })
            .collect()
    }

    /// The wanted nodes now, and the list's resourceVersion to watch from.
    async fn list(
        &self,
        api: &Api<Node>,
    ) -> Result<(BTreeMap<String, Node>, String), ActivityError> {
        let listed = api
            .list(&ListParams::default())
            .await
            .map_err(|e| api_error("listing nodes", &self.access.place(), e))?;
        let version = listed.metadata.resource_version.clone().unwrap_or_default();
        let seen = listed
            .items
            .into_iter()
            .filter_map(|n| {
                let name = n.metadata.name.clone()?;
                self.nodes.contains(&name).then_some((name, n))
            })
            .collect();
        Ok((seen, version))
    }

    fn output(&self) -> NodesReadyOutput {
        NodesReadyOutput {
            ready: self.nodes.clone(),
        }
    }

    /// The timeout's error: the nodes not Ready and what their condition says, and the
    /// last trouble reaching the API when there was some (it does not replace the timeout).
    fn timed_out(&self, seen: &BTreeMap<String, Node>, trouble: Option<&str>) -> ActivityError {
        let waiting: Vec<String> = self
            .states(seen)
            .iter()
            .filter(|(_, ready, _)| !ready)
            .map(|(name, _, said)| format!("{name} ({said})"))
            .collect();
        let trouble = trouble
            .map(|t| format!("\nlast trouble reaching the API: {t}"))
            .unwrap_or_default();
        ActivityError::transient(format!(
            "nodes not Ready after {} s at {}: {}{trouble}\nhint: look at the node's K3s \
             service (journalctl -u k3s or k3s-agent on the host)",
            self.timeout_s,
            self.access.place(),
            waiting.join(", ")
        ))
    }

    /// Watches from `version`, keeping `seen` current, until every wanted node is Ready
    /// (true), the deadline passes or the watch must start over from a new list (false).
    /// A watch the API does not give is `Err`, as a list's: the caller tries again until the
    /// deadline.
    async fn watch(
        &self,
        cx: &ActivityCx,
        api: &Api<Node>,
        seen: &mut BTreeMap<String, Node>,
        mut version: String,
        deadline: Instant,
    ) -> Result<bool, ActivityError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            // The server ends each watch well before a request's read timeout.
            let wp = WatchParams::default().timeout(left.as_secs().clamp(1, 20) as u32);
            let stream = api
                .watch(&wp, &version)
                .await
                .map_err(|e| api_error("watching nodes", &self.access.place(), e))?;
            let mut stream = pin!(stream);
            loop {
                let event = tokio::select! {
                    () = cx.cancel_token().cancelled() => {
                        return Err(ActivityError::permanent("cancelled while waiting for nodes to be Ready"));
                    }
                    () = tokio::time::sleep_until(deadline) => return Ok(false),
                    event = stream.next() => event,
                };
                match event {
                    // The server ended this watch: another from where it stopped.
                    None => break,
                    Some(Ok(WatchEvent::Added(node) | WatchEvent::Modified(node))) => {
                        version = node.metadata.resource_version.clone().unwrap_or(version);
                        if let Some(name) = node.metadata.name.clone()
                            && self.nodes.contains(&name)
                        {
                            seen.insert(name, node);
                            if self.states(seen).iter().all(|(_, ready, _)| *ready) {
                                return Ok(true);
                            }
                        }
                    }
                    Some(Ok(WatchEvent::Deleted(node))) => {
                        version = node.metadata.resource_version.clone().unwrap_or(version);
                        if let Some(name) = &node.metadata.name {
                            seen.remove(name);
                        }
                    }
                    Some(Ok(WatchEvent::Bookmark(mark))) => {
                        version = mark.metadata.resource_version
                    }
                    // 410 Expired, or a broken stream: list again.
                    Some(Ok(WatchEvent::Error(_)) | Err(_)) => return Ok(false),
                }
            }
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
        let api: Api<Node> = Api::all(self.access.client(cx).await?);
        let (seen, _) = self.list(&api).await?;
        Ok(self
            .states(&seen)
            .iter()
            .all(|(_, ready, _)| *ready)
            .then(|| self.output()))
    }

    /// A list, then a watch from it (bounded by the deadline); listed again when the watch
    /// cannot go on. An API that cannot be reached for a while (a dropped connection, a
    /// server restarting) is tried again until the deadline: only a refusal that no retry
    /// changes (credentials, cancellation) ends the wait early, and at the deadline the
    /// timeout, naming the nodes, is the error.
    async fn apply(&self, cx: &ActivityCx) -> Result<NodesReadyOutput, ActivityError> {
        let api: Api<Node> = Api::all(self.access.client(cx).await?);
        let deadline = Instant::now() + Duration::from_secs(self.timeout_s);
        let mut seen = BTreeMap::new();
        let mut trouble: Option<String> = None;
        loop {
            let went = match self.list(&api).await {
                Ok((listed, version)) => {
                    seen = listed;
                    if self.states(&seen).iter().all(|(_, ready, _)| *ready) {
                        return Ok(self.output());
                    }
                    if Instant::now() >= deadline {
                        return Err(self.timed_out(&seen, trouble.as_deref()));
                    }
                    self.watch(cx, &api, &mut seen, version, deadline).await
                }
                Err(e) => Err(e),
            };
            match went {
                Ok(true) => return Ok(self.output()),
                Ok(false) => {}
                Err(e) if e.transient => trouble = Some(e.message),
                Err(e) => return Err(e),
            }
            if Instant::now() >= deadline {
                return Err(self.timed_out(&seen, trouble.as_deref()));
            }
            // A watch that could not go on: list again, not at once.
            tokio::select! {
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::permanent("cancelled while waiting for nodes to be Ready"));
                }
                () = tokio::time::sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))) => {}
            }
        }
    }
}
