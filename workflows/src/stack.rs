//! The stack: every component this build knows, in the order their needs give, and
//! `stack-install`, which installs the components the stack config places as one durable
//! run: a component starts once every component it needs is done, independent ones run
//! side by side, and the journal knows "OpenBAO done, DNS next".

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::LazyLock;

use foundry_core::fanout::FailurePolicy;
use foundry_core::{Ctx, RunError, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::component::{Component, ComponentError, ComponentStatus, InstallOptions};
use crate::config::StackConfig;

/// Every component, each after the components it needs.
pub fn all() -> &'static [&'static dyn Component] {
    static ALL: LazyLock<Vec<&'static dyn Component>> = LazyLock::new(|| {
        let known: Vec<&'static dyn Component> = vec![
            &crate::openbao::component::Openbao,
            &crate::dns::component::Dns,
            &crate::registry::component::Zot,
            &crate::k3s::component::K3s,
            &crate::chart::contour::CONTOUR,
            &crate::chart::cert_manager::CERT_MANAGER,
        ];
        ordered(known).unwrap_or_else(|cycle| panic!("the components' needs {cycle}"))
    });
    &ALL
}

/// `components` each after what it needs (among them), else in the order given; an error
/// names a need that is unknown or goes round in a circle.
fn ordered(components: Vec<&'static dyn Component>) -> Result<Vec<&'static dyn Component>, String> {
    let names: BTreeSet<&str> = components.iter().map(|c| c.name()).collect();
    let mut done: Vec<&'static dyn Component> = Vec::new();
    let mut left = components;
    while !left.is_empty() {
        let before = left.len();
        let mut waiting = Vec::new();
        for c in left {
            if let Some(unknown) = c.needs().iter().find(|n| !names.contains(*n)) {
                return Err(format!(
                    "name `{unknown}`, which is no component ({})",
                    c.name()
                ));
            }
            if c.needs()
                .iter()
                .all(|n| done.iter().any(|d| d.name() == *n))
            {
                done.push(c);
            } else {
                waiting.push(c);
            }
        }
        if waiting.len() == before {
            let circle: Vec<&str> = waiting.iter().map(|c| c.name()).collect();
            return Err(format!("go round in a circle: {}", circle.join(", ")));
        }
        left = waiting;
    }
    Ok(done)
}

/// The component named (or aliased) `name`.
pub fn find(name: &str) -> Result<&'static dyn Component, ComponentError> {
    all()
        .iter()
        .copied()
        .find(|c| c.name() == name || c.aliases().contains(&name))
        .ok_or_else(|| {
            let known: Vec<&str> = all().iter().map(|c| c.name()).collect();
            ComponentError::new(format!(
                "no component `{name}`: expected one of {}",
                known.join(", ")
            ))
        })
}

/// The components named, each once, in install order; every one when none is named.
pub fn select(names: &[String]) -> Result<Vec<&'static dyn Component>, ComponentError> {
    if names.is_empty() {
        return Ok(all().to_vec());
    }
    let chosen = names
        .iter()
        .map(|n| find(n).map(|c| c.name()))
        .collect::<Result<BTreeSet<_>, _>>()?;
    Ok(all()
        .iter()
        .copied()
        .filter(|c| chosen.contains(c.name()))
        .collect())
}

/// The components the stack config places: every one it gives a host (placed wrongly,
/// its install says what is wrong).
pub fn placed(stack: &StackConfig) -> Vec<&'static dyn Component> {
    all()
        .iter()
        .copied()
        .filter(|c| c.placement(stack).err().is_none_or(|e| !e.unplaced))
        .collect()
}

/// Where the config places `c`, once its install's input is built and checked as the
/// install would (nothing is contacted).
pub fn check(
    stack: &StackConfig,
    home: &Path,
    c: &dyn Component,
    options: &InstallOptions,
) -> Result<crate::component::Placement, ComponentError> {
    let place = c.placement(stack)?;
    let input = c.install_input(stack, home, options)?;
    c.install()
        .check(&input)
        .map_err(|e| ComponentError::new(format!("{}: {e}", c.name())))?;
    Ok(place)
}

/// [`placed`], refusing a config (read from `path`) that places no component at all.
pub fn placed_some(
    stack: &StackConfig,
    path: &Path,
) -> Result<Vec<&'static dyn Component>, ComponentError> {
    let placed = placed(stack);
    if placed.is_empty() {
        return Err(ComponentError::new(format!(
            "{} places no component on a host",
            path.display()
        ))
        .hint("name their hosts under network: (openbao_hosts, dns_hosts, zot_hosts)"));
    }
    Ok(placed)
}

/// What installing each of `components` (in install order) would change now, as each
/// one's live status says. A component whose status cannot be asked while a component it
/// needs is itself not healthy (its secrets are kept in OpenBAO, its cluster is not made)
/// is planned as not installed ([`Component::not_installed`]): before OpenBAO exists, a
/// plan shows every component to be installed rather than failing on the first that
/// needs OpenBAO's CA or token.
pub async fn plan(
    stack: &StackConfig,
    components: &[&'static dyn Component],
) -> Result<Vec<ComponentStatus>, ComponentError> {
    let mut unhealthy: BTreeSet<&str> = BTreeSet::new();
    let mut planned = Vec::new();
    for c in components {
        let status = match c.status(stack).await {
            Ok(status) => status,
            Err(e) => match c.needs().iter().find(|n| unhealthy.contains(*n)) {
                Some(need) => c.not_installed(stack, need)?,
                None => return Err(e),
            },
        };
        if !status.healthy {
            unhealthy.insert(c.name());
        }
        planned.push(status);
    }
    Ok(planned)
}

/// One component's part of a stack's run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackPart {
    pub component: String,
    /// Its install workflow and that workflow's version when the run was started.
    pub workflow: String,
    pub version: u32,
    pub input: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackInput {
    pub parts: Vec<StackPart>,
}

/// Each component's install output, by component.
pub type StackOutput = BTreeMap<String, Value>;

/// The input of a stack's run installing `components` as the stack config places them.
/// Every input is built first: a config that cannot place one component installs none.
pub fn install_input(
    stack: &StackConfig,
    home: &Path,
    components: &[&'static dyn Component],
    options: &InstallOptions,
) -> Result<StackInput, ComponentError> {
    let parts = components
        .iter()
        .map(|c| {
            let install = c.install();
            Ok(StackPart {
                component: c.name().into(),
                workflow: install.name.into(),
                version: install.version,
                input: c.install_input(stack, home, options)?,
            })
        })
        .collect::<Result<Vec<_>, ComponentError>>()?;
    Ok(StackInput { parts })
}

/// `c`'s workflow named `workflow`: its install, or its upgrade (a `stack-upgrade` run's
/// parts, [`crate::upgrade`]).
fn part_named(c: &dyn Component, workflow: &str) -> Option<foundry_core::Part> {
    [c.install(), c.upgrade()]
        .into_iter()
        .find(|p| p.name == workflow)
}

#[derive(Default)]
pub struct StackInstall;

impl StackInstall {
    /// The parts in waves: each wave's parts need only parts of earlier waves (or
    /// components not in this run, which are taken as installed).
    fn waves(input: &StackInput) -> Result<Vec<Vec<StackPart>>, String> {
        let in_run: BTreeSet<&str> = input.parts.iter().map(|p| p.component.as_str()).collect();
        let mut done: BTreeSet<String> = BTreeSet::new();
        let mut left = input.parts.clone();
        let mut waves = Vec::new();
        while !left.is_empty() {
            let (ready, waiting): (Vec<StackPart>, Vec<StackPart>) =
                left.into_iter().partition(|p| {
                    find(&p.component).is_ok_and(|c| {
                        c.needs()
                            .iter()
                            .all(|n| !in_run.contains(n) || done.contains(*n))
                    })
                });
            if ready.is_empty() {
                let names: Vec<&str> = waiting.iter().map(|p| p.component.as_str()).collect();
                return Err(format!("no order installs {}", names.join(", ")));
            }
            done.extend(ready.iter().map(|p| p.component.clone()));
            waves.push(ready);
            left = waiting;
        }
        Ok(waves)
    }
}

impl Workflow for StackInstall {
    const NAME: &'static str = "stack-install";
    const VERSION: u32 = 1;
    type Input = StackInput;
    type Output = StackOutput;

    fn check(&self, input: &StackInput) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for part in &input.parts {
            let c = find(&part.component).map_err(|e| e.message)?;
            if !seen.insert(c.name()) {
                return Err(format!("{} is named twice", c.name()));
            }
            let Some(install) = part_named(c, &part.workflow) else {
                return Err(format!(
                    "{}: installed by {} and upgraded by {}, not {}",
                    c.name(),
                    c.install().name,
                    c.upgrade().name,
                    part.workflow
                ));
            };
            install
                .check(&part.input)
                .map_err(|e| format!("{}: {e}", c.name()))?;
        }
        Self::waves(input).map(|_| ())
    }

    async fn run(&self, ctx: Ctx, input: StackInput) -> Result<StackOutput, RunError> {
        // A run started by another build replays only if each part's steps are the same.
        for part in &input.parts {
            let c = find(&part.component).map_err(|e| RunError::workflow(e.message))?;
            let install = part_named(c, &part.workflow).ok_or_else(|| {
                RunError::workflow(format!("{}: no workflow {}", c.name(), part.workflow))
            })?;
            if install.version != part.version {
                return Err(RunError::workflow(format!(
                    "this run was started by a Foundry whose {} was version {}; this one's is \
                     version {}: cancel the run (`foundry workflow cancel`) and install again",
                    part.workflow, part.version, install.version
                )));
            }
        }
        let mut outputs = StackOutput::new();
        for wave in Self::waves(&input).map_err(RunError::workflow)? {
            let policy = if wave.len() == 1 {
                FailurePolicy::FailFast
            } else {
                FailurePolicy::CollectAll
            };
            let names: Vec<String> = wave.iter().map(|p| p.component.clone()).collect();
            let items = wave
                .into_iter()
                .map(|p| (p.component.clone(), p))
                .collect::<Vec<_>>();
            let limit = items.len();
            let done = ctx
                .fan_out_ok(items, limit, policy, |ctx, part: StackPart| async move {
                    let c = find(&part.component).map_err(|e| RunError::workflow(e.message))?;
                    let workflow = part_named(c, &part.workflow).ok_or_else(|| {
                        RunError::workflow(format!("{}: no workflow {}", c.name(), part.workflow))
                    })?;
                    workflow.run(ctx, part.input).await
                })
                .await?;
            outputs.extend(names.into_iter().zip(done));
        }
        Ok(outputs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_component_comes_after_what_it_needs_and_is_found_by_its_names() {
        let names: Vec<&str> = all().iter().map(|c| c.name()).collect();
        for (i, c) in all().iter().enumerate() {
            for need in c.needs() {
                let at = names.iter().position(|n| n == need).expect("known need");
                assert!(at < i, "{} needs {need}, which comes later", c.name());
            }
            assert_eq!(find(c.name()).map(|f| f.name()).ok(), Some(c.name()));
            for alias in c.aliases() {
                assert_eq!(find(alias).map(|f| f.name()).ok(), Some(c.name()));
            }
        }
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(
            find("etcd")
                .err()
                .is_some_and(|e| e.message.contains("openbao"))
        );
    }

    #[test]
    fn a_selection_is_in_install_order_each_once() {
        let chosen = select(&[
            "zot".into(),
            "dns".into(),
            "registry".into(),
            "openbao".into(),
        ])
        .expect("known");
        let names: Vec<&str> = chosen.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["openbao", "dns", "zot"]);
    }

    struct Fake(&'static str, &'static [&'static str]);

    impl Component for Fake {
        fn name(&self) -> &'static str {
            self.0
        }
        fn about(&self) -> &'static str {
            "a component of this test"
        }
        fn needs(&self) -> &'static [&'static str] {
            self.1
        }
        fn placement(
            &self,
            _: &StackConfig,
        ) -> Result<crate::component::Placement, ComponentError> {
            Err(ComponentError::new("nowhere"))
        }
        fn install(&self) -> foundry_core::Part {
            foundry_core::Part::of::<StackInstall>()
        }
        fn install_input(
            &self,
            _: &StackConfig,
            _: &Path,
            _: &InstallOptions,
        ) -> Result<Value, ComponentError> {
            Ok(Value::Null)
        }
        fn changes(&self, _: Value) -> Result<Vec<String>, ComponentError> {
            Ok(Vec::new())
        }
        fn status<'a>(
            &'a self,
            _: &'a StackConfig,
        ) -> foundry_core::BoxFuture<'a, Result<crate::component::ComponentStatus, ComponentError>>
        {
            Box::pin(async { Err(ComponentError::new("nowhere")) })
        }
    }

    #[test]
    fn needs_order_the_components_and_a_circle_or_an_unknown_need_is_named() {
        static A: Fake = Fake("a", &["b"]);
        static B: Fake = Fake("b", &[]);
        static C: Fake = Fake("c", &["a", "b"]);
        let order = ordered(vec![&C, &A, &B]).expect("ordered");
        let names: Vec<&str> = order.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["b", "a", "c"]);
        static X: Fake = Fake("x", &["y"]);
        static Y: Fake = Fake("y", &["x"]);
        let circle = ordered(vec![&X, &Y, &B]).err().expect("a circle");
        assert!(circle.contains("circle: x, y"), "{circle}");
        static Z: Fake = Fake("z", &["nothing"]);
        let unknown = ordered(vec![&Z]).err().expect("unknown");
        assert!(unknown.contains("`nothing`"), "{unknown}");
    }

    #[test]
    fn a_stack_runs_in_waves_of_what_is_ready() {
        let part = |c: &str| StackPart {
            component: c.into(),
            workflow: String::new(),
            version: 0,
            input: Value::Null,
        };
        let input = StackInput {
            parts: vec![part("zot"), part("dns"), part("openbao")],
        };
        let waves: Vec<Vec<String>> = StackInstall::waves(&input)
            .expect("waves")
            .into_iter()
            .map(|w| w.into_iter().map(|p| p.component).collect())
            .collect();
        assert_eq!(waves, [vec!["zot", "openbao"], vec!["dns"]]);
        // DNS alone: OpenBAO is not in the run, so it is taken as installed.
        let alone = StackInput {
            parts: vec![part("dns")],
        };
        assert_eq!(StackInstall::waves(&alone).expect("waves").len(), 1);
    }
}
