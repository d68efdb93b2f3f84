//! `k3s-node-add` (`foundry cluster node add HOST...`): nodes joined to the cluster as one
//! durable run. Servers join strictly one at a time (etcd takes one learner at a time, and
//! parallel server joins are a known way to lose one: k3s#4335), each done only once its
//! node is Ready and its etcd member a voter; agents join side by side, at most `agents_at_once` at a time. The join
//! token always comes from OpenBAO: without one there is no join, and Foundry never makes a
//! new one for an existing cluster. A host whose address is already an etcd member's under
//! another node's name is refused until that member is removed.

use foundry_activities::k3s::{EtcdMember, EtcdMembers, EtcdVoter};
use std::time::Duration;

use foundry_activities::kube::{KubeAccess, NodesReady, cluster_nodes, vip_holder};
use foundry_core::fanout::FailurePolicy;
use foundry_core::{Activity, ActivityCx, ActivityError, Ctx, InDoubt, RunError, Workflow};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::node::{self, HostRead, K3sSetup, NodeHost, NodeOutput, Role};
use super::{K3S_SECRET_PATH, api_url, kube_vip};
use crate::secrets::{EnsureStackSecret, StackSecretOutput};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddInput {
    pub setup: K3sSetup,
    /// The cluster's first server: joins go through it.
    pub first: NodeHost,
    /// In the order given: joined one at a time.
    pub servers: Vec<NodeHost>,
    pub agents: Vec<NodeHost>,
    pub agents_at_once: u32,
    /// A cluster of one node (no kube-vip): joins go through the first server, not the VIP.
    #[serde(default)]
    pub single_node: bool,
}

impl AddInput {
    /// The server URL nodes join through, and the API their readiness is asked of:
    /// [`super::api_server`], the VIP once the cluster has one.
    pub fn join_url(&self) -> String {
        super::api_server(&self.setup, &self.first, self.single_node)
    }

    /// The VIP nodes join through, when they do.
    fn through_vip(&self) -> Option<&str> {
        self.setup.vip.as_deref().filter(|_| !self.single_node)
    }

    /// The join URL once the first server is known to have kube-vip or not: a cluster made
    /// with `--single-node` has none, so its VIP leads nowhere and nodes join at the first
    /// server ([`super::api_server`] for a single node).
    fn join_url_given(&self, kube_vip: bool) -> String {
        super::api_server(&self.setup, &self.first, self.single_node || !kube_vip)
    }
}

/// A server asked to join a cluster made with `--single-node` (no kube-vip on its first
/// server): refused, saying what to do.
fn refuse_server_without_vip(input: &AddInput) -> Result<(), RunError> {
    let (Some(server), Some(vip)) = (input.servers.first(), input.setup.vip.as_deref()) else {
        return Ok(());
    };
    Err(RunError::workflow(format!(
        "{} cannot join as a server: the cluster on {} was made with `--single-node`, so no \
         kube-vip holds the VIP {vip}, and the API would stay at {}'s address alone; no node \
         was changed (agents join it at {} as it is)\nhint: run `foundry cluster init --yes` \
         (without --single-node) to give {} kube-vip and point the kubeconfig at the VIP, \
         then add the server again",
        server.name,
        input.first.name,
        input.first.name,
        input.join_url_given(false),
        input.first.name
    )))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOutput {
    pub nodes: Vec<NodeOutput>,
    /// The API the nodes joined through.
    #[serde(default)]
    pub api: String,
}

impl AddOutput {
    pub fn changes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.changed())
            .map(|n| {
                if n.installed {
                    format!("{} joined as {}", n.name, n.role.as_str())
                } else {
                    format!("{}: {} written", n.name, n.uploaded.join(", "))
                }
            })
            .collect()
    }
}

#[derive(Default)]
pub struct K3sNodeAdd;

impl Workflow for K3sNodeAdd {
    const NAME: &'static str = "k3s-node-add";
    const VERSION: u32 = 2;
    type Input = AddInput;
    type Output = AddOutput;

    fn check(&self, input: &AddInput) -> Result<(), String> {
        if input.setup.openbao.is_none() {
            return Err("the cluster's token is kept in OpenBAO, and the stack config places none: set network.openbao_hosts".into());
        }
        if input.servers.is_empty() && input.agents.is_empty() {
            return Err("no host to add".into());
        }
        let mut seen = std::collections::BTreeSet::new();
        for host in input.servers.iter().chain(&input.agents) {
            if host.name == input.first.name {
                return Err(format!(
                    "{} is the cluster's first server: `foundry cluster init` installs it",
                    host.name
                ));
            }
            if !seen.insert(&host.name) {
                return Err(format!("{} is named twice", host.name));
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: AddInput) -> Result<AddOutput, RunError> {
        add(&ctx, &input).await
    }
}

/// `k3s-node-add`'s body, also the part of the `k3s` component's install that joins the
/// config's other nodes ([`super::component::K3sCluster`]).
pub(crate) async fn add(ctx: &Ctx, input: &AddInput) -> Result<AddOutput, RunError> {
    let token = ctx
        .step("k3s/token", &joining(&input.setup, "token"))
        .await?;
    let kubeconfig = ctx
        .step("k3s/kubeconfig", &joining(&input.setup, "kubeconfig"))
        .await?;
    let members = EtcdMembers {
        host: input.first.target.clone(),
    };
    let members = ctx.step("k3s/etcd-members", &members).await?.members;
    for host in input.servers.iter().chain(&input.agents) {
        refuse_taken(&members, host)?;
    }
    // A VIP in the config, and a first server made with `--single-node`, which has no
    // kube-vip: its VIP leads nowhere, so agents join at the first server, and a server
    // is refused.
    let kube_vip = match input.through_vip() {
        Some(_) => {
            let manifest = HostRead::new(
                input.first.target.clone(),
                &format!("test -e {} && echo yes || echo no", kube_vip::MANIFEST_PATH),
            );
            ctx.step("k3s/kube-vip", &manifest).await?.text == "yes"
        }
        None => false,
    };
    if input.through_vip().is_some() && !kube_vip {
        refuse_server_without_vip(input)?;
    }
    let join = input.join_url_given(kube_vip);
    let access = KubeAccess {
        kubeconfig: kubeconfig.secret.clone(),
        server: Some(join.clone()),
    };
    if let Some(vip) = input.through_vip().filter(|_| kube_vip) {
        // kube-vip starts once the first server's API applies its manifest: the VIP
        // answers a moment after `cluster init`, and every join goes through it.
        let answers = VipAnswers {
            access: access.clone(),
            first: KubeAccess {
                kubeconfig: kubeconfig.secret.clone(),
                server: Some(api_url(&input.first.address)),
            },
            vip: vip.to_string(),
            timeout_s: input.setup.join_timeout_s,
        };
        ctx.step("k3s/vip", &answers).await?;
    }
    let mut nodes = Vec::new();
    for server in &input.servers {
        let scope = ctx.scope(&server.name);
        let manifest = match &input.setup.vip {
            Some(vip) => {
                let interface = HostRead::new(
                    server.target.clone(),
                    &kube_vip::interface_script(&server.address, vip),
                );
                let interface = scope.step("interface", &interface).await?.text;
                Some(kube_vip::manifest(
                    &input.setup.kube_vip_image,
                    vip,
                    &interface,
                ))
            }
            None => None,
        };
        let done = node::install(
            &scope,
            &input.setup,
            server,
            Role::Server,
            Some(&join),
            &token.secret,
            manifest.as_deref(),
        )
        .await?;
        scope
            .step("ready", &ready(&access, &input.setup, server))
            .await?;
        // Done only once its etcd member is a voter: the next server's learner would be
        // refused (or, with K3s's own retries, race this one's promotion).
        let voter = EtcdVoter {
            host: input.first.target.clone(),
            member: server.name.clone(),
            timeout_s: input.setup.join_timeout_s,
        };
        scope.step("etcd-voter", &voter).await?;
        nodes.push(done);
    }
    let setup = input.setup.clone();
    let items: Vec<(String, NodeHost)> = input
        .agents
        .iter()
        .map(|a| (a.name.clone(), a.clone()))
        .collect();
    let secret = token.secret.clone();
    let api = join.clone();
    let agents = ctx
        .fan_out_ok(
            items,
            input.agents_at_once as usize,
            FailurePolicy::CollectAll,
            move |child, agent| {
                let (setup, access, secret, join) =
                    (setup.clone(), access.clone(), secret.clone(), join.clone());
                async move {
                    let done = node::install(
                        &child,
                        &setup,
                        &agent,
                        Role::Agent,
                        Some(&join),
                        &secret,
                        None,
                    )
                    .await?;
                    child.step("ready", &ready(&access, &setup, &agent)).await?;
                    Ok(done)
                }
            },
        )
        .await?;
    nodes.extend(agents);
    Ok(AddOutput { nodes, api })
}

/// Refuses `host` when its address is an etcd member's peer URL under another node's
/// name: a server that was removed badly or renamed, whose member must go first.
fn refuse_taken(members: &[EtcdMember], host: &NodeHost) -> Result<(), RunError> {
    let at = |url: &str| {
        url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(|h| h.trim_matches(['[', ']']).to_string()))
    };
    let taken = members.iter().find(|m| {
        m.node != host.name
            && m.peer_urls
                .iter()
                .any(|u| at(u).as_deref() == Some(host.address.as_str()))
    });
    match taken {
        Some(m) => Err(RunError::workflow(format!(
            "{} ({}) is already the address of etcd member {} of node {}: it cannot join \
             until that member is removed\nhint: `foundry cluster node remove {}` removes it, \
             once that node is gone",
            host.name, host.address, m.name, m.node, m.node
        ))),
        None => Ok(()),
    }
}

/// Waits, at most `timeout_s`, until the API answers at the VIP (a list of the nodes
/// through it); when it never does, says why as the first server's own API sees it:
/// kube-vip not running (no holder of its lease), or held by a server and still not
/// answering here (the VIP not in the servers' network).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAnswers {
    /// The API through the VIP.
    pub access: KubeAccess,
    /// The API at the first server's own address, asked only to say what is wrong.
    pub first: KubeAccess,
    pub vip: String,
    pub timeout_s: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipAnswered {
    /// The nodes the API listed through the VIP.
    pub nodes: usize,
}

/// How long one ask of the VIP may take: an address nobody holds may not even refuse.
const VIP_ASK: Duration = Duration::from_secs(5);
/// Between two asks of the VIP.
const VIP_AGAIN: Duration = Duration::from_millis(500);

impl VipAnswers {
    /// One ask of the VIP: the nodes it listed, or why not.
    async fn ask(&self, cx: &ActivityCx) -> Result<usize, String> {
        let client = self.access.client(cx).await.map_err(|e| e.message)?;
        match tokio::time::timeout(VIP_ASK, cluster_nodes(&client)).await {
            Ok(Ok(nodes)) => Ok(nodes.len()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", VIP_ASK.as_secs())),
        }
    }

    /// Why the VIP does not answer, as the first server's API sees kube-vip's lease.
    async fn diagnosis(&self, cx: &ActivityCx, last: &str) -> String {
        let vip = &self.vip;
        let head = format!(
            "the cluster's API does not answer at its VIP {vip} after {} s ({last})",
            self.timeout_s
        );
        let holder = match self.first.client(cx).await {
            Ok(client) => tokio::time::timeout(VIP_ASK, vip_holder(&client))
                .await
                .map_err(|_| format!("no answer within {} s", VIP_ASK.as_secs()))
                .and_then(|r| r.map_err(|e| e.to_string())),
            Err(e) => Err(e.message),
        };
        match holder {
            Ok(None) => format!(
                "{head}: kube-vip is not running, no server holds its lease plndr-cp-lock \
                 in kube-system\nhint: K3s applies kube-vip from {} on each server; look at \
                 the server's K3s service (journalctl -u k3s) and at kube-vip's DaemonSet \
                 (kubectl -n kube-system get ds kube-vip-ds)",
                kube_vip::MANIFEST_PATH
            ),
            Ok(Some(node)) => format!(
                "{head}: kube-vip on {node} holds its lease, so the VIP should be on {node}'s \
                 interface, yet it does not answer from this machine\nhint: the VIP must be \
                 a free address of the servers' own network (cluster.k8s_vip), reachable \
                 from here; no other host may hold it"
            ),
            Err(e) => format!(
                "{head}; the first server's own API at {} does not answer either: {e}\nhint: \
                 is K3s running on the first server (systemctl status k3s)?",
                self.first.place()
            ),
        }
    }
}

impl Activity for VipAnswers {
    type Output = VipAnswered;

    fn kind(&self) -> &'static str {
        "k3s-vip-answers"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<VipAnswered>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<VipAnswered, ActivityError> {
        let deadline = Instant::now() + Duration::from_secs(self.timeout_s);
        loop {
            let last = match self.ask(cx).await {
                Ok(nodes) => return Ok(VipAnswered { nodes }),
                Err(e) => e,
            };
            if Instant::now() + VIP_AGAIN >= deadline {
                return Err(ActivityError::permanent(self.diagnosis(cx, &last).await));
            }
            tokio::select! {
                () = cx.cancel_token().cancelled() => {
                    return Err(ActivityError::permanent("cancelled while waiting for the VIP to answer"));
                }
                () = tokio::time::sleep(VIP_AGAIN) => {}
            }
        }
    }
}

fn ready(access: &KubeAccess, setup: &K3sSetup, node: &NodeHost) -> NodesReady {
    NodesReady {
        access: access.clone(),
        nodes: vec![node.name.clone()],
        timeout_s: setup.join_timeout_s,
    }
}

/// One of the cluster's secrets from OpenBAO, never made: no token, no join.
pub(super) fn joining(setup: &K3sSetup, key: &str) -> Joining {
    Joining {
        ensure: super::secret(setup, key, false),
    }
}

/// [`EnsureStackSecret`] without `generate`, whose refusal says that the cluster is made
/// by `cluster init`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joining {
    pub ensure: EnsureStackSecret,
}

impl Activity for Joining {
    type Output = StackSecretOutput;

    fn kind(&self) -> &'static str {
        "k3s-join-secret"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<StackSecretOutput>, ActivityError> {
        self.ensure.probe(cx).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<StackSecretOutput, ActivityError> {
        if self.ensure.current().await?.is_none() {
            return Err(ActivityError::permanent(format!(
                "OpenBAO holds no {} ({K3S_SECRET_PATH}:{}): no node joins without it, and \
                 Foundry never makes a new one for an existing cluster\nhint: `foundry \
                 cluster init` makes the cluster and keeps both in OpenBAO",
                self.ensure.purpose, self.ensure.key
            )));
        }
        self.ensure.apply(cx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, node: &str, peer: &str) -> EtcdMember {
        EtcdMember {
            id: 1,
            name: name.into(),
            node: node.into(),
            peer_urls: vec![peer.into()],
            client_urls: Vec::new(),
            is_learner: false,
        }
    }

    fn host(name: &str, address: &str) -> NodeHost {
        NodeHost {
            name: name.into(),
            address: address.into(),
            target: foundry_activities::ssh::SshTarget {
                address: address.into(),
                port: 22,
                user: "admin".into(),
                key: std::path::PathBuf::from("/k").into(),
                host_key: "ssh-ed25519 AAAA".into(),
            },
        }
    }

    #[test]
    fn a_cluster_without_kube_vip_is_joined_at_its_first_server_and_refuses_a_server() {
        let setup = K3sSetup {
            cluster: "lab".into(),
            binary: "/opt/k3s".into(),
            installer: "/opt/install.sh".into(),
            disable: Vec::new(),
            tls_san: Vec::new(),
            join_timeout_s: 600,
            openbao: None,
            vip: Some("10.77.3.220".into()),
            kube_vip_image: "kube-vip".into(),
            registry: None,
        };
        let mut input = AddInput {
            setup,
            first: host("host-1", "10.77.3.11"),
            servers: Vec::new(),
            agents: vec![host("host-2", "10.77.3.12")],
            agents_at_once: 5,
            single_node: false,
        };
        assert_eq!(input.join_url_given(true), "https://10.77.3.220:6443");
        assert_eq!(input.join_url_given(false), "https://10.77.3.11:6443");
        assert!(refuse_server_without_vip(&input).is_ok(), "agents only");
        input.servers.push(host("host-3", "10.77.3.13"));
        let said = refuse_server_without_vip(&input)
            .expect_err("a server")
            .to_string();
        assert!(
            said.contains("host-3 cannot join as a server: the cluster on host-1 was made with `--single-node`"),
            "{said}"
        );
        assert!(
            said.contains("agents join it at https://10.77.3.11:6443"),
            "{said}"
        );
        assert!(
            said.contains("hint: run `foundry cluster init --yes`"),
            "{said}"
        );
    }

    #[test]
    fn a_host_whose_address_is_another_nodes_etcd_member_is_refused() {
        let members = [
            member("host-1-0a1b2c3d", "host-1", "https://10.77.3.11:2380"),
            member("old-2-1a2b3c4d", "old-2", "https://10.77.3.12:2380"),
            member("", "", "https://10.77.3.14:2380"),
        ];
        let e = refuse_taken(&members, &host("host-2", "10.77.3.12")).expect_err("taken");
        let said = e.to_string();
        assert!(
            said.contains("host-2 (10.77.3.12) is already the address of etcd member old-2-1a2b3c4d of node old-2"),
            "{said}"
        );
        assert!(said.contains("foundry cluster node remove old-2"), "{said}");
        // A member added but never started has no name: still another node's.
        assert!(refuse_taken(&members, &host("host-4", "10.77.3.14")).is_err());
        // Its own member (a server joined before), or a free address: no refusal.
        assert!(refuse_taken(&members, &host("host-1", "10.77.3.11")).is_ok());
        assert!(refuse_taken(&members, &host("host-3", "10.77.3.13")).is_ok());
    }
}
