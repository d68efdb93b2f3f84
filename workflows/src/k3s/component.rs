//! K3s as a component of the stack: `components.k3s`, placed on the first control-plane
//! node of `cluster.nodes`. Its install is `cluster init`; its status is asked of the
//! cluster's API, through the kubeconfig kept in OpenBAO.

use std::path::Path;

use foundry_activities::kube::{KubeAccess, cluster_nodes};
use foundry_core::{ActivityCx, BoxFuture, Part};
use serde_json::{Value, json};

use super::init::{InitInput, InitOutput, K3sInit};
use super::upgrade::{self, K3sUpgrade, UpgradeInput, UpgradeOutput};
use super::{ClusterPlan, api_url};
use crate::component::{
    self as c, Component, ComponentError, ComponentStatus, InstallOptions, Placement,
};
use crate::config::StackConfig;
use crate::upgrade::Version;

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
}

impl Component for K3s {
    fn name(&self) -> &'static str {
        "k3s"
    }

    fn aliases(&self) -> &'static [&'static str] {
        &["cluster"]
    }

    fn about(&self) -> &'static str {
        "the K3s cluster (its first server; `foundry cluster node add` joins the others)"
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
        Part::of::<K3sInit>()
    }

    fn install_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        _options: &InstallOptions,
    ) -> Result<Value, ComponentError> {
        c::input(self.name(), &self.init_input(stack, false)?)
    }

    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<InitOutput>(self.name(), output)?.changes())
    }

    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>> {
        Box::pin(async move {
            let place = self.placement(stack)?;
            let plan = ClusterPlan::of(stack)?;
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
            let server = format!("K3s server on {}", plan.first.name);
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
                    [(server, "missing".to_string())].into(),
                ));
            };
            let access = KubeAccess {
                kubeconfig: reference,
                server: Some(api_url(&plan.first.address)),
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
                        [(server, "not answering".to_string())].into(),
                    ));
                }
            };
            let ready = nodes.iter().filter(|n| n.ready).count();
            let first = nodes.iter().find(|n| n.name == plan.first.name);
            let version = first.map(|n| n.kubelet_version.clone());
            let healthy = first.is_some_and(|n| n.ready);
            Ok(status(
                healthy,
                format!("{ready} of {} nodes Ready", nodes.len()),
                version,
                json!({ "nodes": nodes }),
                [(
                    server,
                    if healthy { "running" } else { "not ready" }.to_string(),
                )]
                .into(),
            ))
        })
    }

    // Upgrades (`k3s-upgrade`): the release as an image-like reference, `k3s:<tag>`, so an
    // upgrade is planned as every other component's; one minor version at a time.

    /// `k3s:` and the config's `components.k3s.tag` spelt as a tag (`v1.32.4-k3s1`).
    fn image(&self, stack: &StackConfig) -> Option<String> {
        let tag = stack.components.as_ref().and_then(|c| c.k3s.tag.clone());
        let tag = tag
            .as_deref()
            .map_or("unset".into(), upgrade::tag_of_release);
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
                .map(|n| upgrade::tag_of_release(&n.kubelet_version))
                .min_by(|a, b| match (Version::parse(a), Version::parse(b)) {
                    (Some(a), Some(b)) => a.cmp(&b),
                    _ => a.cmp(b),
                });
            Ok(oldest.map(|tag| format!("k3s:{tag}")))
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
        let tag = crate::upgrade::tag_of(image)
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
