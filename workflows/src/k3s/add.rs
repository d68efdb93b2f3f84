//! `k3s-node-add` (`foundry cluster node add HOST...`): nodes joined to the cluster as one
//! durable run. Servers join strictly one at a time (etcd takes one learner at a time, and
//! parallel server joins are a known way to lose one: k3s#4335), each done only once its
//! node is Ready; agents join side by side, at most `agents_at_once` at a time. The join
//! token always comes from OpenBAO: without one there is no join, and Foundry never makes a
//! new one for an existing cluster.

use foundry_activities::kube::{KubeAccess, NodesReady};
use foundry_core::fanout::FailurePolicy;
use foundry_core::{Activity, ActivityCx, ActivityError, Ctx, InDoubt, RunError, Workflow};
use serde::{Deserialize, Serialize};

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
}

impl AddInput {
    /// The server URL nodes join through, and the API their readiness is asked of: the
    /// first server's (kube-vip holds the VIP once servers run its manifest).
    pub fn join_url(&self) -> String {
        api_url(&self.first.address)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddOutput {
    pub nodes: Vec<NodeOutput>,
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
    const VERSION: u32 = 1;
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
        let token = ctx
            .step("k3s/token", &joining(&input.setup, "token"))
            .await?;
        let kubeconfig = ctx
            .step("k3s/kubeconfig", &joining(&input.setup, "kubeconfig"))
            .await?;
        let join = input.join_url();
        let access = KubeAccess {
            kubeconfig: kubeconfig.secret.clone(),
            server: Some(join.clone()),
        };
        let mut nodes = Vec::new();
        for server in &input.servers {
            let scope = ctx.scope(&server.name);
            let manifest = match &input.setup.vip {
                Some(vip) => {
                    let interface = HostRead::new(
                        server.target.clone(),
                        &format!(
                            "ip -o -4 route get {vip} | sed -n 's/.* dev \\([^ ]*\\).*/\\1/p'"
                        ),
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
            nodes.push(done);
        }
        let setup = input.setup.clone();
        let items: Vec<(String, NodeHost)> = input
            .agents
            .iter()
            .map(|a| (a.name.clone(), a.clone()))
            .collect();
        let secret = token.secret.clone();
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
        Ok(AddOutput { nodes })
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
fn joining(setup: &K3sSetup, key: &str) -> Joining {
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
