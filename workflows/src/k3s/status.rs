//! `cluster status` and `cluster node list`: the cluster as it is now, asked live, never
//! remembered. The nodes (roles, versions, Ready, cordoned) and kube-vip's lease holder
//! through the API with the kubeconfig kept in OpenBAO; the etcd members and voters over
//! SSH on the first server that answers.

use foundry_activities::k3s::{EtcdMember, etcd_members};
use foundry_activities::kube::{KubeAccess, NodeInfo, cluster_nodes, vip_holder};
use foundry_core::ActivityCx;
use serde::{Deserialize, Serialize};

use super::{ClusterPlan, NodeHost, api_url, node_host};
use crate::component::ComponentError;
use crate::config::StackConfig;

/// The cluster now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub cluster: String,
    /// The API that answered.
    pub api: String,
    pub vip: Option<String>,
    /// The node holding kube-vip's lease, so the VIP; none without kube-vip.
    pub vip_holder: Option<String>,
    pub nodes: Vec<NodeView>,
    pub etcd: EtcdView,
}

/// A node, with its etcd membership.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    #[serde(flatten)]
    pub node: NodeInfo,
    /// `voter`, `learner`, or none (an agent, or a server whose member is gone).
    pub etcd: Option<String>,
    pub holds_vip: bool,
}

/// etcd's membership as one server sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EtcdView {
    /// The server it was read on; none when no server answered.
    pub read_on: Option<String>,
    pub members: Vec<EtcdMember>,
    pub voters: usize,
    pub learners: usize,
    /// Voters etcd needs to work: a majority of them.
    pub quorum: usize,
    /// Why it could not be read, when no server answered.
    pub error: Option<String>,
}

/// A majority of `voters`.
pub fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

impl EtcdView {
    fn of(read_on: &str, members: Vec<EtcdMember>) -> EtcdView {
        let voters = members.iter().filter(|m| !m.is_learner).count();
        EtcdView {
            read_on: Some(read_on.to_string()),
            learners: members.len() - voters,
            quorum: quorum(voters),
            voters,
            members,
            error: None,
        }
    }
}

/// The API, asked with the kubeconfig from OpenBAO: at [`super::api_server`]'s choice
/// first (the VIP of a cluster of several nodes), then at each control-plane node of the
/// config. The access that answered (and the context
/// holding its kubeconfig), and the nodes it listed.
pub async fn api_access(
    stack: &StackConfig,
    plan: &ClusterPlan,
) -> Result<(KubeAccess, ActivityCx, Vec<NodeInfo>), ComponentError> {
    let held = super::secret(&plan.setup, "kubeconfig", false)
        .held()
        .await
        .map_err(|e| ComponentError::new(format!("k3s: {}", e.message)))?;
    let Some((reference, store)) = held else {
        return Err(
            ComponentError::new("OpenBAO holds no kubeconfig for the cluster")
                .hint("`foundry cluster init` makes the cluster and keeps it there"),
        );
    };
    let cx = ActivityCx::standalone("k3s-status").with_secrets(store);
    // The cluster's API as every part of Foundry asks it, then each server's own.
    let mut places: Vec<String> = vec![plan.api()];
    for host in control_planes(stack) {
        let url = api_url(&host.address);
        if !places.contains(&url) {
            places.push(url);
        }
    }
    let mut failures = Vec::new();
    for server in places {
        let access = KubeAccess {
            kubeconfig: reference.clone(),
            server: Some(server),
        };
        let client = match access.client(&cx).await {
            Ok(client) => client,
            Err(e) => {
                failures.push(format!("{}: {}", access.place(), e.message));
                continue;
            }
        };
        match cluster_nodes(&client).await {
            Ok(nodes) => return Ok((access, cx, nodes)),
            Err(e) => failures.push(format!("{}: {e}", access.place())),
        }
    }
    Err(ComponentError::new(format!(
        "the cluster's API does not answer: {}",
        failures.join("; ")
    ))
    .hint("is K3s running on the servers (systemctl status k3s)?"))
}

/// The config's control-plane nodes, as hosts; those it cannot place are left out.
fn control_planes(stack: &StackConfig) -> Vec<NodeHost> {
    stack
        .cluster
        .iter()
        .flat_map(|c| c.nodes.iter())
        .filter(|n| n.role == crate::config::NodeRole::ControlPlane)
        .filter_map(|n| node_host(stack, &n.hostname).ok())
        .collect()
}

/// The servers to read etcd on: the live nodes with a control-plane or etcd role that the
/// config knows as hosts, then the config's control-plane nodes.
pub fn servers(stack: &StackConfig, nodes: &[NodeInfo]) -> Vec<NodeHost> {
    let mut out: Vec<NodeHost> = nodes
        .iter()
        .filter(|n| is_server(n))
        .filter_map(|n| node_host(stack, &n.name).ok())
        .collect();
    for host in control_planes(stack) {
        if !out.iter().any(|h| h.name == host.name) {
            out.push(host);
        }
    }
    out
}

/// Whether a node is a K3s server (its roles as K3s labels them).
pub fn is_server(node: &NodeInfo) -> bool {
    node.roles
        .iter()
        .any(|r| r == "control-plane" || r == "etcd" || r == "master")
}

/// etcd's membership, read on the first of `servers` that answers.
pub async fn etcd_view(servers: &[NodeHost]) -> EtcdView {
    let cx = ActivityCx::standalone("k3s-status");
    let mut failures = Vec::new();
    for server in servers {
        match etcd_members(&server.target, &cx).await {
            Ok(members) => return EtcdView::of(&server.name, members),
            Err(e) => failures.push(format!("{}: {}", server.name, e.message)),
        }
    }
    EtcdView {
        read_on: None,
        members: Vec::new(),
        voters: 0,
        learners: 0,
        quorum: 0,
        error: Some(if failures.is_empty() {
            "no server to read it on".into()
        } else {
            failures.join("; ")
        }),
    }
}

/// The cluster now: nodes, etcd, the VIP's holder.
pub async fn live(stack: &StackConfig) -> Result<ClusterStatus, ComponentError> {
    let plan = ClusterPlan::of(stack)?;
    let (access, cx, nodes) = api_access(stack, &plan).await?;
    let api = access.server.clone().unwrap_or_default();
    let client = access
        .client(&cx)
        .await
        .map_err(|e| ComponentError::new(format!("k3s: {}", e.message)))?;
    let holder = vip_holder(&client)
        .await
        .map_err(|e| ComponentError::new(format!("reading kube-vip's lease at {api}: {e}")))?;
    let etcd = etcd_view(&servers(stack, &nodes)).await;
    let nodes = nodes
        .into_iter()
        .map(|node| {
            let member = etcd.members.iter().find(|m| m.node == node.name);
            NodeView {
                etcd: member.map(|m| if m.is_learner { "learner" } else { "voter" }.to_string()),
                holds_vip: holder.as_deref() == Some(node.name.as_str()),
                node,
            }
        })
        .collect();
    Ok(ClusterStatus {
        cluster: plan.setup.cluster.clone(),
        api,
        vip: plan.setup.vip.clone(),
        vip_holder: holder,
        nodes,
        etcd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quorum_is_a_majority_of_the_voters() {
        assert_eq!(
            [1, 2, 3, 4, 5].map(quorum),
            [1, 2, 2, 3, 3],
            "etcd's own rule"
        );
    }
}
