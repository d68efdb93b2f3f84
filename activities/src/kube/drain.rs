//! Taking a node out: cordon, drain (evictions that honour disruption budgets, bounded),
//! delete; and uncordon to bring it back.

use std::collections::BTreeMap;
use std::time::Duration;

use ::kube::Api;
use ::kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams};
use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt};
use k8s_openapi::api::core::v1::{Node, Pod};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{KubeAccess, api_error, is_not_found};
use super::nodes::POLL;

/// Marks `node` (un)schedulable; `Ok(false)` when there is no such node.
async fn set_unschedulable(
    client: &::kube::Client,
    access: &KubeAccess,
    node: &str,
    unschedulable: bool,
) -> Result<bool, ActivityError> {
    let api: Api<Node> = Api::all(client.clone());
    let patch = json!({ "spec": { "unschedulable": unschedulable } });
    match api
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(api_error(
            &format!(
                "{} node {node}",
                if unschedulable {
                    "cordoning"
                } else {
                    "uncordoning"
                }
            ),
            &access.place(),
            e,
        )),
    }
}

async fn cordoned(
    client: &::kube::Client,
    access: &KubeAccess,
    node: &str,
) -> Result<Option<bool>, ActivityError> {
    let api: Api<Node> = Api::all(client.clone());
    match api.get_opt(node).await {
        Ok(found) => Ok(found.map(|n| n.spec.and_then(|s| s.unschedulable).unwrap_or(false))),
        Err(e) => Err(api_error(
            &format!("reading node {node}"),
            &access.place(),
            e,
        )),
    }
}

fn no_node(access: &KubeAccess, node: &str) -> ActivityError {
    ActivityError::permanent(format!(
        "no node {node} at {}\nhint: `foundry node list` shows the cluster's nodes",
        access.place()
    ))
}

/// Pods a drain evicts: every pod on the node except DaemonSet-owned and mirror (static)
/// pods, which an eviction cannot move.
fn evictable(pod: &Pod) -> bool {
    let daemon = pod
        .metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.kind == "DaemonSet" && o.controller == Some(true));
    let mirror = pod
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key("kubernetes.io/config.mirror"));
    !daemon && !mirror
}

/// `node` cordoned and emptied of every evictable pod, within `timeout_s`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainNode {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub node: String,
    pub timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainOutput {
    /// Pods this step evicted, as `namespace/name`.
    pub evicted: Vec<String>,
}

impl DrainNode {
    async fn left(&self, client: &::kube::Client) -> Result<Vec<Pod>, ActivityError> {
        let pods: Api<Pod> = Api::all(client.clone());
        let params = ListParams::default().fields(&format!("spec.nodeName={}", self.node));
        let listed = pods.list(&params).await.map_err(|e| {
            api_error(
                &format!("listing the pods of node {}", self.node),
                &self.access.place(),
                e,
            )
        })?;
        Ok(listed.items.into_iter().filter(evictable).collect())
    }
}

impl Activity for DrainNode {
    type Output = DrainOutput;

    fn kind(&self) -> &'static str {
        "kube-drain-node"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<DrainOutput>, ActivityError> {
        let client = self.access.client(cx).await?;
        if cordoned(&client, &self.access, &self.node).await? != Some(true) {
            return Ok(None);
        }
        Ok(self
            .left(&client)
            .await?
            .is_empty()
            .then(|| DrainOutput { evicted: vec![] }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<DrainOutput, ActivityError> {
        let client = self.access.client(cx).await?;
        if !set_unschedulable(&client, &self.access, &self.node, true).await? {
            return Err(no_node(&self.access, &self.node));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.timeout_s);
        let mut evicted = Vec::new();
        loop {
            let left = self.left(&client).await?;
            if left.is_empty() {
                return Ok(DrainOutput { evicted });
            }
            // Pods a budget keeps, by the budget's word.
            let mut held: BTreeMap<String, String> = BTreeMap::new();
            for pod in &left {
                let ns = pod.metadata.namespace.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let api: Api<Pod> = Api::namespaced(client.clone(), &ns);
                match api.evict(&name, &EvictParams::default()).await {
                    Ok(_) => evicted.push(format!("{ns}/{name}")),
                    Err(e) if is_not_found(&e) => {}
                    Err(::kube::Error::Api(status)) if status.code == 429 => {
                        let why = status
                            .details
                            .as_ref()
                            .and_then(|d| d.causes.first())
                            .map(|c| c.message.clone())
                            .filter(|m| !m.is_empty())
                            .unwrap_or(status.message.clone());
                        held.insert(format!("{ns}/{name}"), why);
                    }
                    Err(e) => {
                        return Err(api_error(
                            &format!("evicting pod {ns}/{name} from node {}", self.node),
                            &self.access.place(),
                            e,
                        ));
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let what: Vec<String> = if held.is_empty() {
                    left.iter()
                        .map(|p| {
                            format!(
                                "{}/{} (still there)",
                                p.metadata.namespace.as_deref().unwrap_or(""),
                                p.metadata.name.as_deref().unwrap_or("")
                            )
                        })
                        .collect()
                } else {
                    held.iter()
                        .map(|(pod, why)| format!("{pod}: {why}"))
                        .collect()
                };
                return Err(ActivityError::transient(format!(
                    "draining node {} at {}: pods left after {} s: {}\nhint: a disruption \
                     budget keeps these pods: scale their workload up or relax the budget, \
                     then resume",
                    self.node,
                    self.access.place(),
                    self.timeout_s,
                    what.join("; ")
                )));
            }
            tokio::select! {
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::permanent(format!("cancelled while draining node {}", self.node)));
                }
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }
}

/// `node` schedulable again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uncordon {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub node: String,
}

/// `node` unschedulable (a drain cordons on its own).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cordon {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CordonOutput {
    pub cordoned: bool,
}

async fn cordon_probe(
    cx: &ActivityCx,
    access: &KubeAccess,
    node: &str,
    want: bool,
) -> Result<Option<CordonOutput>, ActivityError> {
    let client = access.client(cx).await?;
    match cordoned(&client, access, node).await? {
        None => Err(no_node(access, node)),
        Some(now) => Ok((now == want).then_some(CordonOutput { cordoned: want })),
    }
}

async fn cordon_apply(
    cx: &ActivityCx,
    access: &KubeAccess,
    node: &str,
    want: bool,
) -> Result<CordonOutput, ActivityError> {
    let client = access.client(cx).await?;
    if set_unschedulable(&client, access, node, want).await? {
        Ok(CordonOutput { cordoned: want })
    } else {
        Err(no_node(access, node))
    }
}

impl Activity for Uncordon {
    type Output = CordonOutput;

    fn kind(&self) -> &'static str {
        "kube-uncordon"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CordonOutput>, ActivityError> {
        cordon_probe(cx, &self.access, &self.node, false).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CordonOutput, ActivityError> {
        cordon_apply(cx, &self.access, &self.node, false).await
    }
}

impl Activity for Cordon {
    type Output = CordonOutput;

    fn kind(&self) -> &'static str {
        "kube-cordon"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CordonOutput>, ActivityError> {
        cordon_probe(cx, &self.access, &self.node, true).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CordonOutput, ActivityError> {
        cordon_apply(cx, &self.access, &self.node, true).await
    }
}

/// The Node object of `node` gone (on K3s, deleting a server's Node removes its etcd
/// member). A missing node is done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteNode {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub node: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteNodeOutput {
    /// This step deleted it (it was there).
    pub deleted: bool,
}

impl Activity for DeleteNode {
    type Output = DeleteNodeOutput;

    fn kind(&self) -> &'static str {
        "kube-delete-node"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<DeleteNodeOutput>, ActivityError> {
        let client = self.access.client(cx).await?;
        Ok(cordoned(&client, &self.access, &self.node)
            .await?
            .is_none()
            .then_some(DeleteNodeOutput { deleted: false }))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<DeleteNodeOutput, ActivityError> {
        let client = self.access.client(cx).await?;
        let api: Api<Node> = Api::all(client);
        match api.delete(&self.node, &DeleteParams::default()).await {
            Ok(_) => Ok(DeleteNodeOutput { deleted: true }),
            Err(e) if is_not_found(&e) => Ok(DeleteNodeOutput { deleted: false }),
            Err(e) => Err(api_error(
                &format!("deleting node {}", self.node),
                &self.access.place(),
                e,
            )),
        }
    }
}
