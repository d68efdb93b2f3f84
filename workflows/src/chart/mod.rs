//! What every chart component shares: a chart installed into the cluster as a K3s
//! `HelmChart` (no helm binary), through `ApplyHelmChart`. A chart component is data, a
//! [`ChartComponent`]: its HelmChart's name, the namespace it installs into, its repo,
//! chart and pinned version (the config may name another), its default values (the
//! config's merged over them), and the objects applied server-side once the chart is
//! deployed (cert-manager's ClusterIssuer). One [`Component`] implementation serves every
//! chart, so adding a chart means adding a module with one such value and a line in
//! `stack::all`.
//!
//! The install (`chart-install`): the cluster's admin kubeconfig from OpenBAO
//! (`foundry-core/k3s`, key `kubeconfig`, resolved from the environment first, then
//! `~/.foundryvars`, then OpenBAO), each secret value the config names, the HelmChart,
//! then the objects. Its live status reads the HelmChart, the Job it names and the newest
//! release Secret; the version shown is the one the release record says it deployed. An
//! upgrade is the install with another version.

pub mod cert_manager;
pub mod contour;
pub mod objects;

use std::path::{Path, PathBuf};

use foundry_activities::kube::{
    ApplyHelmChart, ApplyObjects, ChartLive, ChartOutput, KubeAccess, KubeObject, ValuesSecret,
    chart_live, object_live, read_chart_archive,
};
use foundry_core::{
    Activity, ActivityCx, ActivityError, BoxFuture, Ctx, InDoubt, Part, RunError, Workflow,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::component::{
    self as c, Component, ComponentError, ComponentStatus, InstallOptions, Placement,
};
use crate::config::StackConfig;
use crate::config::charts::ChartConfig;
use crate::k3s::K3S_SECRET_PATH;
use crate::secrets::EnsureStackSecret;
use objects::{ApplyChartObjects, ReadyWait};

/// The namespace K3s's helm-controller watches for HelmCharts.
pub const HELMCHART_NAMESPACE: &str = "kube-system";
/// How long a chart's install Job may take.
const CHART_TIMEOUT_S: u64 = 600;

/// A chart component, as data.
pub struct ChartComponent {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub about: &'static str,
    pub needs: &'static [&'static str],
    /// The HelmChart's (and the release's) name.
    pub release: &'static str,
    /// The namespace the chart installs into.
    pub namespace: &'static str,
    pub repo: &'static str,
    pub chart: &'static str,
    /// The version Foundry pins, when the config names none.
    pub version: &'static str,
    /// Values sent unless the config says otherwise.
    pub defaults: fn() -> Value,
    /// Its part of the stack config.
    pub config: fn(&StackConfig) -> ChartConfig,
    /// Objects applied once the chart is deployed, from the config.
    pub then_apply: fn(&StackConfig) -> Result<Vec<KubeObject>, ComponentError>,
    /// How the install waits for those objects to be Ready, from the config; none when
    /// it does not.
    pub ready: fn(&StackConfig) -> Option<ReadyWait>,
}

/// `over` merged into `base`: a mapping merges key by key, anything else replaces.
pub fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, over) => *base = over,
    }
}

/// The cluster's admin kubeconfig, as a step gets it (contract: OpenBAO
/// `foundry-core/k3s`, key `kubeconfig`; never generated).
pub fn kubeconfig(stack: &StackConfig) -> EnsureStackSecret {
    EnsureStackSecret {
        path: K3S_SECRET_PATH.into(),
        key: "kubeconfig".into(),
        purpose: "cluster's admin kubeconfig".into(),
        openbao: stack.openbao_url(),
        generate: false,
        holder: None,
    }
}

/// One secret value of a chart: where it goes in the values, and where it is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecretValueInput {
    pub path: String,
    pub from: EnsureStackSecret,
}

/// `chart-install`'s input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartInput {
    /// The component, for step keys and messages.
    pub component: String,
    pub kubeconfig: EnsureStackSecret,
    pub name: String,
    pub target_namespace: String,
    pub repo: String,
    pub chart: String,
    pub version: String,
    pub values: Value,
    #[serde(default)]
    pub values_secrets: Vec<SecretValueInput>,
    #[serde(default)]
    pub then_apply: Vec<KubeObject>,
    /// The wait for `then_apply`'s objects to be Ready.
    #[serde(default)]
    pub ready: Option<ReadyWait>,
    pub timeout_s: u64,
    /// The stack config the values were read from: each attempt of the chart's step reads
    /// them again, so values fixed after a failed install are the ones a resume sends.
    #[serde(default)]
    pub config: Option<PathBuf>,
    /// An offline chart on this machine, sent as `chartContent` instead of `repo`: its
    /// version is the one inside it.
    #[serde(default)]
    pub chart_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChartInstallOutput {
    pub job: String,
    pub release: String,
    /// A new spec or new values were applied (a new install Job ran).
    pub changed: bool,
    /// The objects applied after the chart (empty when each was current).
    pub applied: Vec<String>,
}

impl ChartInstallOutput {
    pub fn changes(&self) -> Vec<String> {
        let mut changes = Vec::new();
        if self.changed {
            changes.push(format!("chart installed ({})", self.release));
        }
        changes.extend(self.applied.iter().map(|o| format!("{o} applied")));
        changes
    }
}

#[derive(Default)]
pub struct ChartInstall;

impl Workflow for ChartInstall {
    const NAME: &'static str = "chart-install";
    // 2: the objects' step waits for them to be Ready and reads them from the config.
    const VERSION: u32 = 2;
    type Input = ChartInput;
    type Output = ChartInstallOutput;

    fn check(&self, input: &ChartInput) -> Result<(), String> {
        crate::config::charts::check_kube_name(&input.name).map_err(|e| format!("name: {e}"))?;
        crate::config::charts::check_kube_name(&input.target_namespace)
            .map_err(|e| format!("target_namespace: {e}"))?;
        if !input.values.is_object() {
            return Err("values: not a mapping".into());
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, input: ChartInput) -> Result<ChartInstallOutput, RunError> {
        let who = &input.component;
        let kubeconfig = ctx
            .step(&format!("{who}/kubeconfig"), &input.kubeconfig)
            .await?;
        let access = KubeAccess {
            kubeconfig: kubeconfig.secret,
            server: None,
        };
        let mut values_secrets = Vec::new();
        for s in &input.values_secrets {
            let kept = ctx
                .step(&format!("{who}/secret/{}", s.path), &s.from)
                .await?;
            values_secrets.push(ValuesSecret {
                secret: format!("{}-foundry-values", input.name),
                key: s.path.clone(),
                path: s.path.clone(),
                value: kept.secret,
            });
        }
        let chart = ApplyHelmChart {
            access: access.clone(),
            namespace: HELMCHART_NAMESPACE.into(),
            name: input.name.clone(),
            chart: input.chart.clone(),
            repo: input.chart_file.is_none().then(|| input.repo.clone()),
            version: input.chart_file.is_none().then(|| input.version.clone()),
            target_namespace: Some(input.target_namespace.clone()),
            values: input.values.clone(),
            values_secrets,
            chart_content: input.chart_file.clone(),
            timeout_s: input.timeout_s,
        };
        let install = InstallChart {
            chart,
            component: input.component.clone(),
            config: input.config.clone(),
        };
        let done = ctx.step(&format!("{who}/chart"), &install).await?;
        let mut applied = Vec::new();
        if !input.then_apply.is_empty() {
            let objects = ApplyChartObjects {
                apply: ApplyObjects {
                    access,
                    objects: input.then_apply.clone(),
                },
                ready: input.ready.clone(),
                component: input.component.clone(),
                config: input.config.clone(),
            };
            applied = ctx.step(&format!("{who}/apply"), &objects).await?.applied;
        }
        Ok(ChartInstallOutput {
            job: done.job,
            release: done.release,
            changed: done.changed,
            applied,
        })
    }
}

/// The chart's step: `ApplyHelmChart` with the values as the stack config says them at
/// this attempt. A failed install Job is a transient error here: it lasts only until the
/// values change, which every attempt reads again (K3s's own helm-controller retries the
/// Job too); once the attempts are spent, the run pauses with the Job's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstallChart {
    pub chart: ApplyHelmChart,
    pub component: String,
    #[serde(default)]
    pub config: Option<PathBuf>,
}

/// `component`'s chart input as the stack config at `config` says it now; none when the
/// config is not known (a run started without one).
fn fresh_input(
    component: &str,
    config: Option<&Path>,
) -> Result<Option<ChartInput>, ActivityError> {
    let Some(path) = config else {
        return Ok(None);
    };
    let stack = crate::config::load(path).map_err(|e| ActivityError::permanent(e.to_string()))?;
    let said = |e: ComponentError| {
        let hint = e.hint.map(|h| format!("\nhint: {h}")).unwrap_or_default();
        ActivityError::permanent(format!("{}{hint}", e.message))
    };
    let c = crate::stack::find(component).map_err(said)?;
    let input = c
        .install_input(&stack, Path::new(""), &InstallOptions::default())
        .map_err(said)?;
    let input: ChartInput = serde_json::from_value(input)
        .map_err(|e| ActivityError::permanent(format!("{component}: not a chart's input: {e}")))?;
    Ok(Some(input))
}

impl InstallChart {
    /// The chart to apply: the values read again from the config, when it is known.
    fn current(&self) -> Result<ApplyHelmChart, ActivityError> {
        let mut chart = self.chart.clone();
        if let Some(input) = fresh_input(&self.component, self.config.as_deref())? {
            chart.values = input.values;
        }
        Ok(chart)
    }
}

impl Activity for InstallChart {
    type Output = ChartOutput;

    fn kind(&self) -> &'static str {
        "chart-install"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<ChartOutput>, ActivityError> {
        self.current()?.probe(cx).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<ChartOutput, ActivityError> {
        let chart = self.current()?;
        match chart.apply(cx).await {
            Err(e) if !e.transient => {
                let live = chart_live(
                    cx,
                    &chart.access,
                    &chart.namespace,
                    &chart.name,
                    chart
                        .target_namespace
                        .as_deref()
                        .unwrap_or(&chart.namespace),
                )
                .await;
                match live {
                    Ok(live) if live.job_state.as_deref() == Some("failed") => {
                        Err(ActivityError::transient(e.message))
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }
}

impl ChartComponent {
    fn cluster(&self, stack: &StackConfig) -> Result<String, ComponentError> {
        stack
            .cluster
            .as_ref()
            .map(|c| c.name.clone())
            .ok_or_else(|| {
                ComponentError::unplaced(format!(
                    "{}: the config declares no cluster to install it into",
                    self.name
                ))
                .hint("declare the cluster under cluster: (name, k8s_vip, nodes)")
            })
    }

    /// The version to install: the chart file's own (when it can be read: [`Self::archive`]
    /// says why not), else the config's, else the pinned one.
    fn version(&self, stack: &StackConfig) -> String {
        let config = (self.config)(stack);
        let archived = config
            .chart_file
            .as_ref()
            .and_then(|file| read_chart_archive(&file.value).ok())
            .map(|(archive, _)| archive.version);
        archived
            .or(config.version)
            .unwrap_or_else(|| self.version.to_string())
    }

    /// The offline chart the config gives, checked: an archive helm can read, of this
    /// chart, within chartContent's limit, at `version` (the one asked for).
    fn archive(
        &self,
        stack: &StackConfig,
        version: &str,
    ) -> Result<Option<PathBuf>, ComponentError> {
        let config = (self.config)(stack);
        let Some(file) = config.chart_file else {
            return Ok(None);
        };
        let field = format!("components.{}.chart_file", self.name.replace('-', "_"));
        let (archive, _) = read_chart_archive(&file.value)
            .map_err(|e| ComponentError::new(format!("{}{field}: {e}", file.place())))?;
        if archive.name != self.chart {
            return Err(ComponentError::new(format!(
                "{}{field}: {} holds the chart {} {}, not {}",
                file.place(),
                file.value.display(),
                archive.name,
                archive.version,
                self.chart
            )));
        }
        if let Some(asked) = config.version.as_deref().filter(|v| *v != archive.version) {
            return Err(ComponentError::new(format!(
                "{}{field}: {} holds {} {}, but components.{}.version asks for {asked}",
                file.place(),
                file.value.display(),
                archive.name,
                archive.version,
                self.name.replace('-', "_")
            ))
            .hint("drop version (the chart file's own is installed), or give the archive of that version"));
        }
        if version != archive.version {
            return Err(ComponentError::new(format!(
                "{} {version} was asked for, but {field} holds {}",
                self.name, archive.version
            ))
            .hint(format!(
                "put the archive of {version} at {} (`helm pull {} --version {version}`)",
                file.value.display(),
                self.chart
            )));
        }
        Ok(Some(file.value))
    }

    fn input(
        &self,
        stack: &StackConfig,
        version: String,
        config_path: Option<&PathBuf>,
    ) -> Result<ChartInput, ComponentError> {
        self.cluster(stack)?;
        let chart_file = self.archive(stack, &version)?;
        let config = (self.config)(stack);
        let mut values = (self.defaults)();
        merge(&mut values, Value::Object(config.values.0));
        let values_secrets = config
            .values_secrets
            .iter()
            .map(|(path, field)| SecretValueInput {
                path: path.to_string(),
                from: EnsureStackSecret {
                    path: field.0.path.clone(),
                    key: field.0.key.clone(),
                    purpose: format!("{} value {path}", self.name),
                    openbao: stack.openbao_url(),
                    generate: false,
                    holder: None,
                },
            })
            .collect();
        Ok(ChartInput {
            component: self.name.into(),
            kubeconfig: kubeconfig(stack),
            name: self.release.into(),
            target_namespace: self.namespace.into(),
            repo: self.repo.into(),
            chart: self.chart.into(),
            version,
            values,
            values_secrets,
            then_apply: (self.then_apply)(stack)?,
            ready: (self.ready)(stack),
            chart_file,
            timeout_s: CHART_TIMEOUT_S,
            config: config_path.map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone())),
        })
    }

    /// The chart as it is now: the kubeconfig as the stack resolves it now, in a store of
    /// this process only, and what the cluster says of the HelmChart, its Job and release.
    async fn live(
        &self,
        stack: &StackConfig,
    ) -> Result<(ActivityCx, KubeAccess, ChartLive), ComponentError> {
        let from = kubeconfig(stack);
        let (reference, store) = from
            .held()
            .await
            .map_err(|e| ComponentError::new(format!("{}: {}", self.name, e.message)))?
            .ok_or_else(|| {
                ComponentError::new(format!(
                    "{}: the cluster's admin kubeconfig (${{secret:{}:{}}}) is set nowhere",
                    self.name, from.path, from.key
                ))
                .hint("make the cluster first (`foundry cluster init`), which keeps it in OpenBAO")
            })?;
        let cx = ActivityCx::standalone(&format!("{}/status", self.name)).with_secrets(store);
        let access = KubeAccess {
            kubeconfig: reference,
            server: None,
        };
        let live = chart_live(
            &cx,
            &access,
            HELMCHART_NAMESPACE,
            self.release,
            self.namespace,
        )
        .await
        .map_err(|e| ComponentError::new(format!("{}: {}", self.name, e.message)))?;
        Ok((cx, access, live))
    }

    fn part_name(&self) -> String {
        format!("HelmChart {HELMCHART_NAMESPACE}/{}", self.release)
    }

    async fn live_status(&self, stack: &StackConfig) -> Result<ComponentStatus, ComponentError> {
        let cluster = self.cluster(stack)?;
        let (cx, access, live) = self.live(stack).await?;
        let failed = |e: foundry_core::ActivityError| {
            ComponentError::new(format!("{} in cluster {cluster}: {}", self.name, e.message))
        };
        let state = match (live.chart, live.deployed(), live.job_state.as_deref()) {
            (false, _, _) => "missing",
            (true, true, _) => "running",
            (true, false, Some("failed")) => "failed",
            (true, false, _) => "installing",
        };
        let mut parts = std::collections::BTreeMap::new();
        parts.insert(self.part_name(), state.to_string());
        let mut objects = Vec::new();
        for object in (self.then_apply)(stack)? {
            let found = object_live(&cx, &access, &object).await.map_err(failed)?;
            let state = match &found {
                None => "missing",
                Some(o) if not_ready(o) => "not ready",
                Some(_) => "running",
            };
            parts.insert(object.said(), state.into());
            objects.push(json!({"object": object.said(), "state": state}));
        }
        let mut summary = match state {
            "missing" => "no HelmChart".to_string(),
            "failed" => format!(
                "its install Job {} failed (release {})",
                live.job.clone().unwrap_or_default(),
                live.release_status.clone().unwrap_or_else(|| "none".into())
            ),
            _ => format!(
                "Job {} {}, release {} {}",
                live.job.clone().unwrap_or_default(),
                live.job_state.clone().unwrap_or_default(),
                live.release.clone().unwrap_or_else(|| "none".into()),
                live.release_status.clone().unwrap_or_default()
            ),
        };
        for (part, state) in parts.iter().skip(1) {
            summary.push_str(&format!("; {part} {state}"));
        }
        let healthy = parts.values().all(|s| s == "running");
        Ok(ComponentStatus {
            component: self.name.into(),
            host: placed_in(&cluster),
            address: None,
            healthy,
            summary,
            version: live.chart_version.clone(),
            expected_version: Some(self.version(stack)),
            detail: json!({ "chart": live, "objects": objects }),
            parts,
            more: serde_json::Map::new(),
        })
    }
}

/// The Placement host of what lives in a cluster rather than on a host.
fn placed_in(cluster: &str) -> String {
    format!("cluster {cluster}")
}

/// An object whose `Ready` condition is there and not True.
fn not_ready(object: &Value) -> bool {
    object
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] != "True")
}

impl Component for ChartComponent {
    fn name(&self) -> &'static str {
        self.name
    }

    fn aliases(&self) -> &'static [&'static str] {
        self.aliases
    }

    fn about(&self) -> &'static str {
        self.about
    }

    fn needs(&self) -> &'static [&'static str] {
        self.needs
    }

    fn placement(&self, stack: &StackConfig) -> Result<Placement, ComponentError> {
        let cluster = self.cluster(stack)?;
        Ok(Placement {
            component: self.name,
            host: placed_in(&cluster),
            address: None,
            runs: format!(
                "{} (chart {} from {}, into namespace {})",
                self.part_name(),
                self.chart,
                self.repo,
                self.namespace
            ),
            version: Some(self.version(stack)),
        })
    }

    fn install(&self) -> Part {
        Part::of::<ChartInstall>()
    }

    /// The HelmChart and each object applied after it, to be made.
    fn not_installed(
        &self,
        stack: &StackConfig,
        need: &str,
    ) -> Result<ComponentStatus, ComponentError> {
        let place = self.placement(stack)?;
        let mut parts = std::collections::BTreeMap::new();
        parts.insert(self.part_name(), "missing".to_string());
        for object in (self.then_apply)(stack)? {
            parts.insert(object.said(), "missing".to_string());
        }
        Ok(ComponentStatus::not_installed(&place, need, parts))
    }

    fn install_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        options: &InstallOptions,
    ) -> Result<Value, ComponentError> {
        let input = self.input(stack, self.version(stack), options.config.as_ref())?;
        c::input(self.name, &input)
    }

    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        Ok(c::output::<ChartInstallOutput>(self.name, output)?.changes())
    }

    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>> {
        Box::pin(self.live_status(stack))
    }

    /// The chart as an image-like reference, `chart:version`, so an upgrade is planned
    /// as every other component's (a downgrade refused).
    fn image(&self, stack: &StackConfig) -> Option<String> {
        Some(format!("{}:{}", self.chart, self.version(stack)))
    }

    fn running_image<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<Option<String>, ComponentError>> {
        Box::pin(async move {
            let (_, _, live) = self.live(stack).await?;
            Ok(live
                .deployed()
                .then_some(live.chart_version)
                .flatten()
                .map(|v| format!("{}:{v}", self.chart)))
        })
    }

    fn upgrade_input(
        &self,
        stack: &StackConfig,
        _home: &Path,
        image: &str,
    ) -> Result<Value, ComponentError> {
        let version = crate::version::tag_of(image).ok_or_else(|| {
            ComponentError::new(format!("{}: `{image}` names no version", self.name))
        })?;
        c::input(self.name, &self.input(stack, version.to_string(), None)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_merge_key_by_key_and_replace_what_is_not_a_mapping() {
        let mut base = json!({"crds": {"enabled": true, "keep": true}, "list": [1, 2]});
        merge(
            &mut base,
            json!({"crds": {"keep": false}, "list": [3], "more": {"a": 1}}),
        );
        assert_eq!(
            base,
            json!({"crds": {"enabled": true, "keep": false}, "list": [3], "more": {"a": 1}})
        );
    }

    #[test]
    fn an_object_with_ready_false_is_not_ready_and_one_without_status_is() {
        assert!(not_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        ));
        assert!(!not_ready(&json!({"spec": {}})));
    }
}
