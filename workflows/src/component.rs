//! What every component of the stack (OpenBAO, DNS, the registry, later the cluster and its
//! charts) is to Foundry: a [`Component`], implemented in the component's own module. The
//! stack config places it; from that come its install workflow's input, the components it
//! needs installed first, and its status, asked live where it runs (nothing is remembered
//! between runs). Which components exist is [`crate::stack::all`]'s to say.

pub mod container;

use std::net::Ipv4Addr;
use std::path::Path;

use foundry_core::{BoxFuture, Part};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::StackConfig;

/// A component of the stack.
pub trait Component: Send + Sync + 'static {
    /// The name people type and read: `openbao`, `dns`, `zot`.
    fn name(&self) -> &'static str;

    /// Other names it answers to on the command line (`powerdns`, `registry`).
    fn aliases(&self) -> &'static [&'static str] {
        &[]
    }

    /// What it is, in a few words, for lists and help.
    fn about(&self) -> &'static str;

    /// The components whose installs must be done before this one's starts.
    fn needs(&self) -> &'static [&'static str] {
        &[]
    }

    /// It keeps the stack's secrets: once it is installed, the keys Foundry made for the
    /// hosts move into it.
    fn keeps_secrets(&self) -> bool {
        false
    }

    /// Where the stack config places it: an error says what the config lacks.
    fn placement(&self, stack: &StackConfig) -> Result<Placement, ComponentError>;

    /// The workflow that installs it (again, to change what differs), run on its own or
    /// as a part of a whole stack's run.
    fn install(&self) -> Part;

    /// The install workflow's input, from the stack config.
    fn install_input(
        &self,
        stack: &StackConfig,
        home: &Path,
        options: &InstallOptions,
    ) -> Result<Value, ComponentError>;

    /// What an install run changed, from its output; empty when nothing did.
    fn changes(&self, output: Value) -> Result<Vec<String>, ComponentError>;

    /// As it is now, asked of where it runs and of its service.
    fn status<'a>(
        &'a self,
        stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<ComponentStatus, ComponentError>>;

    /// Its status when it cannot be asked because `need`, a component it needs, is not
    /// installed yet (its secrets are kept there, or it runs there): nothing of it can
    /// be there, so every part is to be made. By default one part, what it runs.
    fn not_installed(
        &self,
        stack: &StackConfig,
        need: &str,
    ) -> Result<ComponentStatus, ComponentError> {
        let place = self.placement(stack)?;
        let mut parts = std::collections::BTreeMap::new();
        parts.insert(place.runs.clone(), "missing".to_string());
        Ok(ComponentStatus::not_installed(&place, need, parts))
    }

    /// The data volumes it keeps where the stack config places it (they outlive its
    /// containers, and go only with a lab).
    fn volumes(&self, _stack: &StackConfig) -> Vec<String> {
        Vec::new()
    }

    /// The image the stack config pins it to (its version is the image's tag); none for a
    /// component that runs no image, which is then never upgraded.
    fn image(&self, _stack: &StackConfig) -> Option<String> {
        None
    }

    /// The image its running service was created from, asked now of where it runs (never
    /// of a file): none when nothing runs.
    fn running_image<'a>(
        &'a self,
        _stack: &'a StackConfig,
    ) -> BoxFuture<'a, Result<Option<String>, ComponentError>> {
        Box::pin(async { Ok(None) })
    }

    /// The versions an upgrade must stop at, oldest first: going from an older one to a
    /// newer one passes through each (see [`UpgradeStop`]).
    fn upgrade_stops(&self) -> &'static [UpgradeStop] {
        &[]
    }

    /// An upgrade goes one minor version at a time (Kubernetes' version skew policy):
    /// `1.31.x -> 1.33.y` is refused, naming `1.32` to go through first.
    fn one_minor_at_a_time(&self) -> bool {
        false
    }

    /// What an upgrade does beyond putting the new image in place, for the plan people
    /// confirm (OpenBAO: unsealed again with the kept keys).
    fn upgrade_steps(&self) -> &'static [&'static str] {
        &[]
    }

    /// The workflow that takes it from its running version to `image`'s, its data kept: by
    /// default its install, whose container comes back on the new image (the spec's hash
    /// covers the image) with its volumes.
    fn upgrade(&self) -> Part {
        self.install()
    }

    /// The upgrade workflow's input, to run `image`: by default the install's input with
    /// that image.
    fn upgrade_input(
        &self,
        stack: &StackConfig,
        home: &Path,
        image: &str,
    ) -> Result<Value, ComponentError> {
        let mut input = self.install_input(stack, home, &InstallOptions::default())?;
        match input.get_mut("image") {
            Some(slot) => *slot = Value::String(image.to_string()),
            None => {
                return Err(ComponentError::new(format!(
                    "{}: its install names no image to upgrade",
                    self.name()
                )));
            }
        }
        Ok(input)
    }

    /// What an upgrade run changed, from its output; empty when nothing did.
    fn upgrade_changes(&self, output: Value) -> Result<Vec<String>, ComponentError> {
        self.changes(output)
    }
}

/// What a person asks of an install beyond the config.
#[derive(Clone, Debug, Default)]
pub struct InstallOptions {
    /// OpenBAO: hand the root token over too, instead of revoking it.
    pub keep_root_token: bool,
    /// The stack config the install is built from, so that a step can read it again when
    /// the run is resumed (a chart's values, fixed after its install failed).
    pub config: Option<std::path::PathBuf>,
}

/// Where a component runs, as the stack config says: on which host, reached at which
/// address, as what.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Placement {
    pub component: &'static str,
    /// The host, or `cluster <name>` for what lives in a cluster (a chart).
    pub host: String,
    /// The address its service answers at, when it has one of its own.
    pub address: Option<Ipv4Addr>,
    /// What runs there: `container foundry-openbao`.
    pub runs: String,
    /// The version the config expects, when it names one.
    pub version: Option<String>,
}

impl Placement {
    /// `openbao on infra-1 (10.77.0.240)`; `contour in cluster lab` for what lives in a
    /// cluster, whose `host` is `cluster <name>`.
    pub fn said(&self) -> String {
        if let Some(cluster) = self.host.strip_prefix("cluster ") {
            return format!("{} in cluster {cluster}", self.component);
        }
        match self.address {
            Some(address) => format!("{} on {} ({address})", self.component, self.host),
            None => format!("{} on {}", self.component, self.host),
        }
    }
}

/// A component as it is now.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ComponentStatus {
    pub component: String,
    pub host: String,
    pub address: Option<Ipv4Addr>,
    /// Everything it runs runs, and the service answers, ready to serve.
    pub healthy: bool,
    /// One line for people: what runs and what the service says.
    pub summary: String,
    /// The version the service reports.
    pub version: Option<String>,
    /// The version the config expects, when it names one.
    pub expected_version: Option<String>,
    /// What the containers and the service said, in full.
    pub detail: Value,
    /// What runs, by what it is (`container foundry-openbao`), with its state
    /// (`running`, `exited`, … or `missing`).
    pub parts: std::collections::BTreeMap<String, String>,
    /// What only this component has to say (OpenBAO: `token`, its token's life).
    #[serde(flatten)]
    pub more: serde_json::Map<String, Value>,
}

impl ComponentStatus {
    /// A component placed at `place` that is not installed, not asked because `need` is
    /// not installed either: `parts`, each missing.
    pub fn not_installed(
        place: &Placement,
        need: &str,
        parts: std::collections::BTreeMap<String, String>,
    ) -> ComponentStatus {
        ComponentStatus {
            component: place.component.into(),
            host: place.host.clone(),
            address: place.address,
            healthy: false,
            summary: format!("not installed: {need}, which it needs, is not installed yet"),
            version: None,
            expected_version: place.version.clone(),
            detail: Value::Null,
            parts,
            more: serde_json::Map::new(),
        }
    }

    /// What an install would do now, as this status shows it: each missing part made,
    /// each stopped one started, a service that does not answer as it should repaired,
    /// and a version other than the config's changed. Empty when there is nothing to do.
    pub fn plan(&self) -> Vec<String> {
        let mut plan: Vec<String> = self
            .parts
            .iter()
            .filter(|(_, state)| *state != "running")
            .map(|(part, state)| match state.as_str() {
                "missing" => format!("create {part}"),
                "failed" => format!("install {part} again (its last install failed)"),
                other => format!("start {part} ({other})"),
            })
            .collect();
        if plan.is_empty() && !self.healthy {
            plan.push(format!("repair: {}", self.summary));
        }
        if let (Some(running), Some(wanted)) = (&self.version, &self.expected_version)
            && running != wanted
        {
            plan.push(format!("change version {running} to {wanted}"));
        }
        plan
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ComponentError {
    pub message: String,
    pub hint: Option<String>,
    /// The config places the component nowhere (rather than placing it wrongly).
    pub unplaced: bool,
}

impl ComponentError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ComponentError {
            message: message.into(),
            hint: None,
            unplaced: false,
        }
    }

    /// The config places the component nowhere.
    pub(crate) fn unplaced(message: impl Into<String>) -> Self {
        ComponentError {
            unplaced: true,
            ..ComponentError::new(message)
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// Reads a component's install output as its workflow's output type.
pub(crate) fn output<T: serde::de::DeserializeOwned>(
    component: &str,
    output: Value,
) -> Result<T, ComponentError> {
    serde_json::from_value(output)
        .map_err(|e| ComponentError::new(format!("{component}: unexpected install output: {e}")))
}

/// Serializes a component's install input.
pub(crate) fn input<T: Serialize>(component: &str, input: &T) -> Result<Value, ComponentError> {
    serde_json::to_value(input).map_err(|e| ComponentError::new(format!("{component}: {e}")))
}

/// A version an upgrade may not jump over: going from an older version to a newer one
/// passes through it, because reaching it takes steps of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpgradeStop {
    /// As the component's image tags spell it (`4.7.0`, `v2.0.0`).
    pub version: &'static str,
    /// What reaching it takes, for people.
    pub steps: &'static str,
    /// Foundry's upgrade takes those steps itself; when it does not, an upgrade that
    /// reaches this version is refused too, and a person takes them (upstream's notes
    /// say how), after which Foundry goes on from there.
    pub by_foundry: bool,
}
