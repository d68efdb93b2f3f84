//! `k3s-upgrade` (`foundry component upgrade k3s [--to VERSION]`): the cluster taken to
//! another K3s release as one durable run, as K3s documents a manual upgrade with the
//! binary (docs.k3s.io/upgrades/manual): servers first, strictly one at a time, then
//! agents, at most `agents_at_once` together. Each node: its version read live (a node
//! already at the target is left alone), drained (cordoned, evictions that honour
//! disruption budgets, bounded), the new binary put at `/usr/local/bin/k3s` (probed by
//! hash), its unit restarted (`systemctl restart k3s` or `k3s-agent`, detached, so a
//! dropped connection or a killed `foundry` does not stop it), waited for until the node is
//! Ready at the new version (a server: its etcd member a voter again), then uncordoned.
//! `/etc/rancher/k3s/config.yaml` and the unit are not touched. Before any node is, the
//! binary is sent to the first server beside the running one and asked its version there
//! (it is built for the hosts, not for this machine): a binary of another release stops
//! the run with nothing changed. One minor version at a time is the planner's to enforce
//! ([`crate::upgrade::judge`]); a node newer than the target stops the run.

use std::time::Duration;

use foundry_activities::k3s::EtcdVoter;
use foundry_activities::kube::{
    DrainNode, KubeAccess, NodeInfo, Uncordon, api_error, cluster_nodes,
};
use foundry_activities::registry::ArtifactFiles;
use foundry_activities::ssh::{SshDetached, SshTarget};
use foundry_core::fanout::FailurePolicy;
use foundry_core::{
    Activity, ActivityCx, ActivityError, Ctx, InDoubt, PollPolicy, RetryPolicy, RunError, Workflow,
};
use serde::{Deserialize, Serialize};

use super::add::joining;
use super::api_url;
use super::node::{
    BINARY_PATH, HostRead, HostReadOutput, K3sArtifact, K3sSetup, NodeHost, Role, capture,
    put_binary,
};
use crate::version::{of_release as version, tag_of_release};

/// Where the new binary waits on the first server while its version is asked.
pub const STAGED_PATH: &str = "/usr/local/lib/foundry/k3s-upgrade";
/// How long one node's drain may take, as `node remove`'s default.
pub const DRAIN_TIMEOUT_S: u64 = 300;

/// A K3s release as K3s spells it (`v1.32.4+k3s1`) from an image tag's spelling
/// (`v1.32.4-k3s1`: a tag has no `+`).
pub fn release_of_tag(tag: &str) -> String {
    match tag.rsplit_once("-k3s") {
        Some((version, n)) if n.chars().all(|c| c.is_ascii_digit()) => {
            format!("{version}+k3s{n}")
        }
        _ => tag.to_string(),
    }
}

/// The release `k3s --version` names on its first line (`k3s version v1.32.4+k3s1 (…)`).
pub fn release_said(version_output: &str) -> Option<&str> {
    version_output
        .lines()
        .next()?
        .strip_prefix("k3s version ")?
        .split_whitespace()
        .next()
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpgradeInput {
    pub setup: K3sSetup,
    /// The release to go to, as K3s spells it (`v1.32.4+k3s1`).
    pub target: String,
    /// The config's nodes (`cluster.nodes`), in its order; their roles are read live.
    pub nodes: Vec<NodeHost>,
    pub agents_at_once: u32,
    pub drain_timeout_s: u64,
}

/// One node's part of an upgrade.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUpgrade {
    pub name: String,
    pub role: Role,
    /// The version it ran when its turn came.
    pub from: String,
    /// It was drained, given the new binary and restarted (else it ran the target).
    pub upgraded: bool,
    pub evicted: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpgradeOutput {
    pub target: String,
    pub nodes: Vec<NodeUpgrade>,
}

impl UpgradeOutput {
    pub fn changes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| n.upgraded)
            .map(|n| {
                format!(
                    "{} ({}) {} -> {}",
                    n.name,
                    n.role.as_str(),
                    n.from,
                    self.target
                )
            })
            .collect()
    }
}

/// The cluster's nodes as the API lists them now (read-only), asked at each of `places`
/// in turn until one answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveNodes {
    pub places: Vec<KubeAccess>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveNodesOutput {
    pub nodes: Vec<NodeInfo>,
}

impl Activity for LiveNodes {
    type Output = LiveNodesOutput;

    fn kind(&self) -> &'static str {
        "kube-nodes"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            ..RetryPolicy::default()
        }
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<LiveNodesOutput>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<LiveNodesOutput, ActivityError> {
        let mut failures = Vec::new();
        for access in &self.places {
            let client = match access.client(cx).await {
                Ok(client) => client,
                Err(e) => {
                    failures.push(format!("{}: {}", access.place(), e.message));
                    continue;
                }
            };
            match cluster_nodes(&client).await {
                Ok(nodes) => return Ok(LiveNodesOutput { nodes }),
                Err(e) => failures.push(api_error("listing nodes", &access.place(), e).message),
            }
        }
        Err(ActivityError::transient(format!(
            "the cluster's API does not answer: {}\nhint: is K3s running on the servers \
             (systemctl status k3s)?",
            failures.join("; ")
        )))
    }
}

/// Waits, at most `timeout_s`, until `node` is Ready and its kubelet reports `release`.
/// The API may not answer for a while (a server restarting): that is waited through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAtRelease {
    #[serde(flatten)]
    pub access: KubeAccess,
    pub node: String,
    pub release: String,
    pub timeout_s: u64,
}

impl NodeAtRelease {
    async fn look(&self, cx: &ActivityCx) -> Result<Option<NodeInfo>, String> {
        let client = self.access.client(cx).await.map_err(|e| e.message)?;
        let nodes = cluster_nodes(&client).await.map_err(|e| e.to_string())?;
        Ok(nodes.into_iter().find(|n| n.name == self.node))
    }

    fn done(&self, found: &Option<NodeInfo>) -> bool {
        found
            .as_ref()
            .is_some_and(|n| n.ready && n.kubelet_version == self.release)
    }
}

impl Activity for NodeAtRelease {
    type Output = NodeInfo;

    fn kind(&self) -> &'static str {
        "kube-node-at-release"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    /// One attempt: it waits its whole deadline itself, and then the run pauses on it (a
    /// second wait is a person's `workflow resume`, or the same command again).
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::none()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<NodeInfo>, ActivityError> {
        Ok(match self.look(cx).await {
            Ok(found) if self.done(&found) => found,
            _ => None,
        })
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<NodeInfo, ActivityError> {
        let policy = PollPolicy::new(1_000, 0).within(Duration::from_secs(self.timeout_s));
        let mut poll = policy.start();
        let mut last = String::from("not looked at yet");
        while poll.tick_unless(cx.cancel_token()).await.map_err(|_| {
            ActivityError::permanent("cancelled while waiting for a node's new version")
        })? {
            match self.look(cx).await {
                Ok(found) if self.done(&found) => {
                    if let Some(node) = found {
                        return Ok(node);
                    }
                }
                Ok(Some(n)) => {
                    last = format!(
                        "it is {}Ready at {}",
                        if n.ready { "" } else { "not " },
                        n.kubelet_version
                    )
                }
                Ok(None) => last = "the API lists no such node".into(),
                Err(e) => last = format!("the API did not answer: {e}"),
            }
        }
        Err(ActivityError::transient(stuck(
            &self.node,
            None,
            &self.release,
            self.timeout_s,
            &format!("asked at {}, {last}", self.access.place()),
            "k3s` or `k3s-agent",
        )))
    }
}

/// Waits, at most `timeout_s`, until `unit` is active on the node again after its restart
/// (K3s told systemd it is up: Type=notify): a release that exits at start, or never gets
/// up, keeps it `activating` while systemd restarts it. Then the run pauses on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitActive {
    pub target: SshTarget,
    pub node: String,
    pub unit: String,
    /// The release it ran before its restart, and the one it was restarted at.
    pub from: String,
    pub release: String,
    pub timeout_s: u64,
}

impl UnitActive {
    async fn state(&self, cx: &ActivityCx) -> Result<String, String> {
        let script = format!("systemctl is-active {} || true", self.unit);
        match capture(&self.target, &script, None, cx).await {
            Ok((_, out, _)) => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            Err(e) => Err(e.message),
        }
    }
}

impl Activity for UnitActive {
    type Output = HostReadOutput;

    fn kind(&self) -> &'static str {
        "k3s-unit-active"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    /// One attempt: it waits its whole deadline itself, and then the run pauses on it.
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::none()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<HostReadOutput>, ActivityError> {
        Ok(match self.state(cx).await {
            Ok(text) if text == "active" => Some(HostReadOutput { text }),
            _ => None,
        })
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<HostReadOutput, ActivityError> {
        let policy = PollPolicy::new(1_000, 0).within(Duration::from_secs(self.timeout_s));
        let mut poll = policy.start();
        let mut last = String::from("not looked at yet");
        while poll.tick_unless(cx.cancel_token()).await.map_err(|_| {
            ActivityError::permanent("cancelled while waiting for K3s to start again")
        })? {
            match self.state(cx).await {
                Ok(text) if text == "active" => return Ok(HostReadOutput { text }),
                Ok(text) => last = format!("its unit {} is `{text}`", self.unit),
                Err(e) => last = format!("the host did not answer: {e}"),
            }
        }
        Err(ActivityError::transient(stuck(
            &self.node,
            Some(&self.from),
            &self.release,
            self.timeout_s,
            &format!("K3s {} is not running: {last}", self.release),
            &self.unit,
        )))
    }
}

/// The pause of an upgrade at a node that did not come back: the node, the release it ran,
/// the one it was restarted at, what was seen, and what to do.
fn stuck(
    node: &str,
    from: Option<&str>,
    release: &str,
    timeout_s: u64,
    seen: &str,
    unit: &str,
) -> String {
    let ran = from.map(|f| format!(" (it ran {f})")).unwrap_or_default();
    format!(
        "node {node} did not come back at {release} within {timeout_s} s of its restart{ran}: \
         {seen}; the upgrade stops at this node, and no node after it is \
         touched\nhint: see why on {node} (`journalctl -u {unit}`), fix it there (systemd \
         keeps restarting the unit), then run the same `foundry component upgrade k3s` \
         again or `foundry workflow resume`: either waits for it again \
         (components.k3s.join_timeout long)"
    )
}

/// A server (it holds an etcd member) by its roles' labels.
fn role_of(node: &NodeInfo) -> Role {
    match node
        .roles
        .iter()
        .any(|r| matches!(r.as_str(), "control-plane" | "master" | "etcd"))
    {
        true => Role::Server,
        false => Role::Agent,
    }
}

#[derive(Default)]
pub struct K3sUpgrade;

impl Workflow for K3sUpgrade {
    const NAME: &'static str = "k3s-upgrade";
    const VERSION: u32 = 1;
    type Input = UpgradeInput;
    type Output = UpgradeOutput;

    fn check(&self, input: &UpgradeInput) -> Result<(), String> {
        if input.setup.openbao.is_none() {
            return Err("the cluster's kubeconfig is kept in OpenBAO, and the stack config places none: set network.openbao_hosts".into());
        }
        if version(&input.target).is_none() {
            return Err(format!(
                "`{}` is no K3s release (v1.32.4+k3s1)",
                input.target
            ));
        }
        if input.nodes.is_empty() {
            return Err("the config's cluster names no node".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: UpgradeInput) -> Result<UpgradeOutput, RunError> {
        let kubeconfig = ctx
            .step("k3s/kubeconfig", &joining(&input.setup, "kubeconfig"))
            .await?;
        let reference = kubeconfig.secret;
        // The API at a node's address; each node's steps ask another server's where there
        // is one (its own API goes down with its restart).
        let at = |node: &NodeHost| KubeAccess {
            kubeconfig: reference.clone(),
            server: Some(api_url(&node.address)),
        };
        let places: Vec<KubeAccess> = input.nodes.iter().map(at).collect();
        let live = ctx.step("k3s/nodes", &LiveNodes { places }).await?.nodes;
        let mut servers = Vec::new();
        let mut agents = Vec::new();
        for node in &live {
            let Some(host) = input.nodes.iter().find(|h| h.name == node.name) else {
                return Err(RunError::workflow(format!(
                    "node {} is in the cluster, and the config's cluster.nodes does not name \
                     it: it cannot be upgraded, and the cluster would be left at two \
                     releases\nhint: add it to cluster.nodes (with its host under hosts:)",
                    node.name
                )));
            };
            let ahead = version(&node.kubelet_version)
                .zip(version(&input.target))
                .is_some_and(|(running, target)| running > target);
            if ahead {
                return Err(RunError::workflow(format!(
                    "node {} runs {}, newer than {}: a downgrade is no upgrade\nhint: name a \
                     release at least as new as the newest node's",
                    node.name, node.kubelet_version, input.target
                )));
            }
            match role_of(node) {
                Role::Server => servers.push(host.clone()),
                Role::Agent => agents.push(host.clone()),
            }
        }
        let Some(first) = servers.first().cloned() else {
            return Err(RunError::workflow("the cluster lists no server node"));
        };

        // The binary's own word on its release, asked where it can run, before any node
        // is touched. From the stack's registry, it is the target's artifact, looked up
        // once: a release the registry lacks stops the run here.
        let artifact = input.setup.registry.as_ref().map(|a| K3sArtifact {
            tag: tag_of_release(&input.target),
            ..a.clone()
        });
        let files = match &artifact {
            Some(artifact) => Some(ctx.step("k3s/artifact", &artifact.resolve()).await?),
            None => None,
        };
        let from = artifact.as_ref().zip(files.as_ref());
        let k3s = ctx.scope("k3s");
        put_binary(
            &k3s,
            "binary-staged",
            &input.setup,
            from,
            &first,
            STAGED_PATH,
        )
        .await?;
        let said = HostRead::new(
            first.target.clone(),
            &format!("{STAGED_PATH} --version 2>&1 | head -n 1"),
        );
        let said = ctx.step("k3s/binary-version", &said).await?.text;
        if release_said(&said) != Some(input.target.as_str()) {
            let (what, hint) = match &artifact {
                Some(artifact) => (
                    format!("{} in {}", artifact.reference(), artifact.registry),
                    format!(
                        "push K3s {}'s binary for the hosts there (`foundry registry push-k3s \
                         --binary PATH --release {}`)",
                        input.target, input.target
                    ),
                ),
                None => (
                    format!("components.k3s.binary ({})", input.setup.binary.display()),
                    format!(
                        "point components.k3s.binary at K3s {}'s binary for the hosts",
                        input.target
                    ),
                ),
            };
            return Err(RunError::workflow(format!(
                "{what} is not K3s {}: on {} it says `{said}`; no node was changed\nhint: {hint}",
                input.target, first.name
            )));
        }

        let mut nodes = Vec::new();
        for (i, server) in servers.iter().enumerate() {
            // Another server's API, while this one restarts.
            let other = servers
                .iter()
                .find(|s| s.name != server.name)
                .unwrap_or(&servers[i]);
            let scope = ctx.scope(&server.name);
            let node = upgrade_node(&scope, &input, from, server, Role::Server, at(other));
            nodes.push(node.await?);
        }
        let items: Vec<(String, NodeHost)> =
            agents.iter().map(|a| (a.name.clone(), a.clone())).collect();
        let (shared, access) = (input.clone(), at(&first));
        let fetched = artifact.clone().zip(files.clone());
        let done = ctx
            .fan_out_ok(
                items,
                input.agents_at_once.max(1) as usize,
                FailurePolicy::CollectAll,
                move |child, agent| {
                    let (input, access, fetched) =
                        (shared.clone(), access.clone(), fetched.clone());
                    async move {
                        let from = fetched.as_ref().map(|(a, f)| (a, f));
                        upgrade_node(&child, &input, from, &agent, Role::Agent, access).await
                    }
                },
            )
            .await?;
        nodes.extend(done);
        Ok(UpgradeOutput {
            target: input.target,
            nodes,
        })
    }
}

/// One node, in its own scope (keys `at`, `drain`, `binary` or `fetch-binary`, `restart`, `active`, `ready`,
/// `etcd-voter`, `uncordon`), asking the API at `access`.
async fn upgrade_node(
    ctx: &Ctx,
    input: &UpgradeInput,
    fetched: Option<(&K3sArtifact, &ArtifactFiles)>,
    node: &NodeHost,
    role: Role,
    access: KubeAccess,
) -> Result<NodeUpgrade, RunError> {
    let places = vec![access.clone()];
    let live = ctx.step("at", &LiveNodes { places }).await?;
    let from = live
        .nodes
        .iter()
        .find(|n| n.name == node.name)
        .map(|n| n.kubelet_version.clone())
        .unwrap_or_default();
    let mut done = NodeUpgrade {
        name: node.name.clone(),
        role,
        from,
        upgraded: false,
        evicted: Vec::new(),
    };
    if done.from == input.target {
        return Ok(done);
    }
    let drain = DrainNode {
        access: access.clone(),
        node: node.name.clone(),
        timeout_s: input.drain_timeout_s,
    };
    done.evicted = ctx.step("drain", &drain).await?.evicted;
    put_binary(ctx, "binary", &input.setup, fetched, node, BINARY_PATH).await?;
    ctx.step("restart", &restart(node, role)).await?;
    let active = UnitActive {
        target: node.target.clone(),
        node: node.name.clone(),
        unit: role.unit().into(),
        from: done.from.clone(),
        release: input.target.clone(),
        timeout_s: input.setup.join_timeout_s,
    };
    ctx.step("active", &active).await?;
    let ready = NodeAtRelease {
        access: access.clone(),
        node: node.name.clone(),
        release: input.target.clone(),
        timeout_s: input.setup.join_timeout_s,
    };
    ctx.step("ready", &ready).await?;
    if role == Role::Server {
        let voter = EtcdVoter {
            host: node.target.clone(),
            member: node.name.clone(),
            timeout_s: input.setup.join_timeout_s,
        };
        ctx.step("etcd-voter", &voter).await?;
    }
    let uncordon = Uncordon {
        access,
        node: node.name.clone(),
    };
    ctx.step("uncordon", &uncordon).await?;
    done.upgraded = true;
    Ok(done)
}

/// The node's unit restarted on the new binary, as K3s's manual upgrade says: detached,
/// run once (a failure pauses the run for a person rather than restarting it again and
/// again), and without waiting for the unit (`--no-block`): a release that fails to start
/// makes systemd's restart fail at once while the unit keeps restarting
/// (`Restart=always`), so whether the node comes back is [`NodeAtRelease`]'s one wait,
/// bounded by the join timeout.
fn restart(node: &NodeHost, role: Role) -> SshDetached {
    let argv = ["systemctl", "restart", "--no-block", role.unit()]
        .map(String::from)
        .to_vec();
    super::node::detached_once(node, argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_and_tags_spell_each_other() {
        assert_eq!(release_of_tag("v1.32.4-k3s1"), "v1.32.4+k3s1");
        assert_eq!(release_of_tag("v1.33.0-rc1-k3s2"), "v1.33.0-rc1+k3s2");
        assert_eq!(release_of_tag("v1.32.4"), "v1.32.4");
        assert_eq!(
            release_said("k3s version v1.32.4+k3s1 (stand-in)\ngo version go1.23"),
            Some("v1.32.4+k3s1")
        );
        assert_eq!(release_said("sh: 1: k3s: not found"), None);
    }

    #[test]
    fn a_node_that_does_not_come_back_is_named_with_its_releases_and_what_to_do() {
        let said = stuck(
            "host-2",
            Some("v1.32.4+k3s1"),
            "v1.33.1+k3s1",
            20,
            "its unit k3s is `activating`",
            "k3s",
        );
        assert!(
            said.starts_with(
                "node host-2 did not come back at v1.33.1+k3s1 within 20 s of its restart \
                 (it ran v1.32.4+k3s1): its unit k3s is `activating`; the upgrade stops at \
                 this node, and no node after it is touched\nhint: see why on host-2 \
                 (`journalctl -u k3s`)"
            ),
            "{said}"
        );
        assert!(said.contains("`foundry workflow resume`"), "{said}");
        let said = stuck(
            "host-4",
            None,
            "v1.33.1+k3s1",
            20,
            "asked at X",
            "k3s-agent",
        );
        assert!(said.contains("restart: asked at X;"), "{said}");
    }

    #[test]
    fn a_node_with_a_control_plane_or_etcd_role_is_a_server() {
        let node = |roles: &[&str]| NodeInfo {
            name: "n".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            kubelet_version: "v1.32.4+k3s1".into(),
            ready: true,
            cordoned: false,
        };
        assert_eq!(
            role_of(&node(&["control-plane", "etcd", "master"])),
            Role::Server
        );
        assert_eq!(role_of(&node(&["etcd"])), Role::Server);
        assert_eq!(role_of(&node(&[])), Role::Agent);
        assert_eq!(role_of(&node(&["worker"])), Role::Agent);
    }
}
