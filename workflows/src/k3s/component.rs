//! K3s as a component of the stack: `components.k3s`, placed on the first control-plane
//! node of `cluster.nodes`. Its install is the whole cluster as one durable run
//! (`k3s-cluster`): `cluster init`'s body, then `cluster node add`'s for every other node
//! of `cluster.nodes` (control-plane nodes as servers in config order, workers as
//! agents). Its status is asked of the cluster's API ([`super::api_server`]), through the
//! kubeconfig kept in OpenBAO: one part per node of the config.

use std::path::Path;

use foundry_activities::kube::{KubeAccess, cluster_nodes};
use foundry_core::{ActivityCx, BoxFuture, Ctx, Part, RunError, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::ClusterPlan;
use super::add::{AddInput, AddOutput, K3sNodeAdd};
use super::init::{InitInput, InitOutput, K3sInit};
use super::upgrade::{self, K3sUpgrade, UpgradeInput, UpgradeOutput};
use crate::component::{
    self as c, Component, ComponentError, ComponentStatus, InstallOptions, Placement,
};
use crate::config::StackConfig;
use crate::version::{of_release, tag_of, tag_of_release};

/// One part per node of the config, by what it runs (`K3s server on host-1`), with the
/// node's name: a missing one is what an install would make (`stack plan` shows it).
fn node_parts(
    stack: &StackConfig,
    plan: &ClusterPlan,
) -> Result<Vec<(String, String)>, ComponentError> {
    let (servers, agents) = plan.others(stack)?;
    Ok(std::iter::once(&plan.first)
        .chain(&servers)
        .map(|n| (n.name.clone(), format!("K3s server on {}", n.name)))
        .chain(
            agents
                .iter()
                .map(|n| (n.name.clone(), format!("K3s agent on {}", n.name))),
        )
        .collect())
}

/// The whole cluster: `init` on the first server, then `join` (none for one node).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterInput {
    pub init: InitInput,
    pub join: Option<AddInput>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOutput {
    pub init: InitOutput,
    pub join: Option<AddOutput>,
}

impl ClusterOutput {
    pub fn changes(&self) -> Vec<String> {
        let mut said = self.init.changes();
        said.extend(self.join.iter().flat_map(AddOutput::changes));
        said
    }
}

/// `k3s-cluster`: the `k3s` component's install, `cluster init` then `cluster node add`
/// for the config's other nodes, in one run (the joins' steps under `join/`). On a cluster
/// that is as the config says it changes nothing.
#[derive(Default)]
pub struct K3sCluster;

impl Workflow for K3sCluster {
    const NAME: &'static str = "k3s-cluster";
    const VERSION: u32 = 1;
    type Input = ClusterInput;
    type Output = ClusterOutput;

    fn check(&self, input: &ClusterInput) -> Result<(), String> {
        K3sInit.check(&input.init)?;
        if let Some(join) = &input.join {
            K3sNodeAdd.check(join)?;
            if join.first != input.init.first {
                return Err("the joins go through another first server than init's".into());
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: ClusterInput) -> Result<ClusterOutput, RunError> {
        let init = super::init::init(&ctx, &input.init).await?;
        let join = match &input.join {
            Some(join) => Some(super::add::add(&ctx.scope("join"), join).await?),
            None => None,
        };
        Ok(ClusterOutput { init, join })
    }
}

pub struct K3s;

impl K3s {
    /// `cluster init`'s input: `single_node` leaves kube-vip out.
    pub fn init_input(
        &self,
        stack: &StackConfig,
        single_node: bool,
    ) -> Result<InitInput, ComponentError> {
        let plan = ClusterPlan::of(stack)?;
        Ok(InitInput {
            setup: plan.setup,
            first: plan.first,
            single_node,
        })
    }

    /// The install's input: the cluster's first server made, then every other node of
    /// `cluster.nodes` joined.
    pub fn cluster_input(&self, stack: &StackConfig) -> Result<ClusterInput, ComponentError> {
        let plan = ClusterPlan::of(stack)?;
        let (servers, agents) = plan.others(stack)?;
        let join = (!servers.is_empty() || !agents.is_empty()).then(|| AddInput {
            setup: plan.setup.clone(),
            first: plan.first.clone(),
            servers,
            agents,
            agents_at_once: plan.agents_at_once,
            single_node: plan.single_node,
        });
        Ok(ClusterInput {
            init: self.init_input(stack, plan.single_node)?,
            join,
        })
    }
}

impl Component for K3s {
    fn name(&self) -> &'static str {
        "k3s"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["cluster"]
    }

    fn about(&self) -> &'static str {
        "the K3s cluster: its first server, then every other node of cluster.nodes"
    }

    fn needs(&self) -> &'static [&'static str] {
        &["openbao"]
    }

    fn placement(&self, stack: &StackConfig) -> Result<Placement, ComponentError> {
        let plan = ClusterPlan::of(stack)?;
        Ok(Placement {
            component: self.name(),
            host: plan.first.name.clone(),
            address: plan.setup.vip.as_deref().and_then(|v| v.parse().ok()),
            runs: format!("K3s server of cluster {}", plan.setup.cluster),
            version: stack.components.as_ref().and_then(|c| c.k3s.tag.clone()),
        })
    }

    fn install(&self) -> Part {
        Part::of::<K3sCluster>()
    }

    fn install_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        _options: &InstallOptions,
    ) -> Result<Value, ComponentError> {
        c::input(self.name(), &self.cluster_input(stack)?)
    }

    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<ClusterOutput>(self.name(), output)?.changes())
    }

    /// Every node of the config to be made.
    fn not_installed(
        &self,
        stack: &StackConfig,
        need: &str,
    ) -> Result<ComponentStatus, ComponentError> {
        let place = self.placement(stack)?;
        let parts = node_parts(stack, &ClusterPlan::of(stack)?)?
            .into_iter()
            .map(|(_, part)| (part, "missing".to_string()))
            .collect();
        Ok(ComponentStatus::not_installed(&place, need, parts))
    }

    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>> {
        Box::pin(async move {
            let place = self.placement(stack)?;
            let plan = ClusterPlan::of(stack)?;
            let wanted = node_parts(stack, &plan)?;
            let parts = |state: &dyn Fn(&str) -> &'static str| {
                wanted
                    .iter()
                    .map(|(name, part)| (part.clone(), state(name).to_string()))
                    .collect::<std::collections::BTreeMap<_, _>>()
            };
            let status = |healthy: bool, summary: String, version, detail, parts| ComponentStatus {
                component: self.name().into(),
                host: place.host.clone(),
                address: place.address,
                healthy,
                summary,
                version,
                expected_version: place.version.clone(),
                detail,
                parts,
                more: Default::default(),
            };
            let held = super::secret(&plan.setup, "kubeconfig", false)
                .held()
                .await
                .map_err(|e| ComponentError::new(format!("k3s: {}", e.message)))?;
            let Some((reference, secrets)) = held else {
                return Ok(status(
                    false,
                    "not installed: OpenBAO holds no kubeconfig for the cluster".into(),
                    None,
                    Value::Null,
                    parts(&|_| "missing"),
                ));
            };
            let access = KubeAccess {
                kubeconfig: reference,
                server: Some(plan.api()),
            };
            let cx = ActivityCx::standalone("k3s-status").with_secrets(secrets);
            let client = access
                .client(&cx)
                .await
                .map_err(|e| ComponentError::new(format!("k3s: {}", e.message)))?;
            let nodes = match cluster_nodes(&client).await {
                Ok(nodes) => nodes,
                Err(e) => {
                    return Ok(status(
                        false,
                        format!("the API at {} does not answer: {e}", access.place()),
                        None,
                        Value::Null,
                        parts(&|_| "not answering"),
                    ));
                }
            };
            let ready = nodes.iter().filter(|n| n.ready).count();
            let first = nodes.iter().find(|n| n.name == plan.first.name);
            let version = first.map(|n| n.kubelet_version.clone());
            let state = |name: &str| match nodes.iter().find(|n| n.name == name) {
                Some(n) if n.ready => "running",
                Some(_) => "not ready",
                None => "missing",
            };
            let parts = parts(&state);
            let healthy = parts.values().all(|s| s == "running");
            Ok(status(
                healthy,
                format!("{ready} of {} nodes Ready", nodes.len()),
                version,
                json!({ "api": plan.api(), "nodes": nodes }),
                parts,
            ))
        })
    }

    // Upgrades (`k3s-upgrade`): the release as an image-like reference, `k3s:<tag>`, so an
    // upgrade is planned as every other component's; one minor version at a time.

    /// `k3s:` and the config's `components.k3s.tag` spelt as a tag (`v1.32.4-k3s1`).
    fn image(&self, stack: &StackConfig) -> Option<String> {
        let tag = stack.components.as_ref().and_then(|c| c.k3s.tag.clone());
        let tag = tag.as_deref().map_or("unset".into(), tag_of_release);
        Some(format!("k3s:{tag}"))
    }

    /// The oldest release a node's kubelet reports, asked of the API now.
    fn running_image<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<Option<String>, ComponentError>> {
        Box::pin(async move {
            let plan = ClusterPlan::of(stack)?;
            let held = super::secret(&plan.setup, "kubeconfig", false)
                .held()
                .await
                .map_err(|e| ComponentError::new(format!("k3s: {}", e.message)))?;
            if held.is_none() {
                return Ok(None);
            }
            let (_, _, nodes) = super::status::api_access(stack, &plan).await?;
            let oldest = nodes
                .iter()
                .map(|n| n.kubelet_version.as_str())
                .min_by(|a, b| match (of_release(a), of_release(b)) {
                    (Some(a), Some(b)) => a.cmp(&b),
                    _ => a.cmp(b),
                });
            Ok(oldest.map(|release| format!("k3s:{}", tag_of_release(release))))
        })
    }

    fn one_minor_at_a_time(&self) -> bool {
        true
    }

    fn upgrade_steps(&self) -> &'static [&'static str] {
        &[
            "servers one at a time, then agents: each drained, given the new binary, \
             restarted, Ready at the new version (a server's etcd member a voter), uncordoned",
        ]
    }

    fn upgrade(&self) -> Part {
        Part::of::<K3sUpgrade>()
    }

    fn upgrade_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        image: &str,
    ) -> Result<Value, ComponentError> {
        let plan = ClusterPlan::of(stack)?;
        let tag = tag_of(image)
            .ok_or_else(|| ComponentError::new(format!("k3s: `{image}` names no release")))?;
        let nodes = stack
            .cluster
            .iter()
            .flat_map(|c| c.nodes.iter())
            .map(|n| super::node_host(stack, &n.hostname))
            .collect::<Result<Vec<_>, _>>()?;
        let input = UpgradeInput {
            setup: plan.setup,
            target: upgrade::release_of_tag(tag),
            nodes,
            agents_at_once: plan.agents_at_once,
            drain_timeout_s: upgrade::DRAIN_TIMEOUT_S,
        };
        c::input(self.name(), &input)
    }

    fn upgrade_changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<UpgradeOutput>(self.name(), output)?.changes())
    }
}
