//! `setup`: the whole stack from a stack config, as one durable run, in phases: the hosts
//! configured for Foundry (`hosts/`), the network's addresses planned where the config
//! lacks them and validated (`network/`, in `network/phase.rs`), every component the config
//! places, each after what it needs (`stack/`), the hosts' keys Foundry made moved into OpenBAO (`keys/`), and a
//! last look at every component (`verify`). Each phase's input is read from the config by
//! a step of its own (`<phase>/read`), when the phase starts: a config that cannot work
//! stops the run before that phase changes anything, and a resumed setup goes on with what
//! it read instead of asking the config again.
//!
//! Before the phases, `add/` (`wizard.rs`): every host the config names without the key
//! and host key `host add` records is asked for (address, user, key file or password,
//! whether to trust its host key) and added as `host add` adds one.

mod wizard;

use std::path::PathBuf;

use foundry_core::{Activity, ActivityCx, ActivityError, Ctx, InDoubt, Part, RunError, Workflow};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::component::{ComponentStatus, InstallOptions};
use crate::config::StackConfig;
use crate::host::{ConfigureOutput, HostConfigure};
use crate::keys::{KeysMove, LeftAlone, MoveOutput};
use crate::network::phase::NetworkOutput;
use crate::stack::{StackInstall, StackOutput};

fn default_parallel() -> usize {
    10
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetupInput {
    /// The stack config, read by each phase when it starts.
    pub config: PathBuf,
    /// Hand OpenBAO's root token over too, instead of revoking it.
    #[serde(default)]
    pub keep_root_token: bool,
    /// Hosts configured at once.
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// Accept a `foundry` user that exists already on a host.
    #[serde(default)]
    pub adopt: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SetupOutput {
    /// The hosts the wizard added (asked for, then added as `host add` does).
    #[serde(default)]
    pub added: Vec<crate::host::Added>,
    pub hosts: ConfigureOutput,
    /// What the network phase wrote into the config, and its checks.
    #[serde(default)]
    pub network: NetworkOutput,
    /// Each component's install output, by component.
    pub stack: StackOutput,
    /// The keys moved into OpenBAO (none when no key was Foundry's to move).
    pub keys: Option<MoveOutput>,
    pub keys_left: Vec<LeftAlone>,
    /// Every placed component as the last look found it: all healthy.
    pub status: Vec<ComponentStatus>,
}

/// A phase of a setup, whose input is read from the config when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Hosts,
    Stack,
    Keys,
}

/// Reads a phase's input from the stack config. Reading twice is harmless.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ReadPhase {
    pub config: PathBuf,
    pub phase: Phase,
    pub keep_root_token: bool,
    pub parallel: usize,
    pub adopt: bool,
}

/// What a phase read: its workflow's input, and (keys) the hosts whose keys stay.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PhaseInput {
    pub input: Option<Value>,
    #[serde(default)]
    pub left: Vec<LeftAlone>,
}

impl ReadPhase {
    fn config(&self) -> Result<StackConfig, ActivityError> {
        crate::config::load(&self.config).map_err(|e| ActivityError::permanent(e.to_string()))
    }
}

/// A phase's input as JSON.
fn json<T: Serialize>(input: &T) -> Result<Option<Value>, ActivityError> {
    serde_json::to_value(input)
        .map(Some)
        .map_err(|e| ActivityError::permanent(e.to_string()))
}

/// An error with its hint, as a step's permanent error says it.
fn said(message: String, hint: Option<String>) -> ActivityError {
    ActivityError::permanent(match hint {
        Some(hint) => format!("{message}\nhint: {hint}"),
        None => message,
    })
}

impl Activity for ReadPhase {
    type Output = PhaseInput;

    fn kind(&self) -> &'static str {
        "read-config"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<PhaseInput>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<PhaseInput, ActivityError> {
        let stack = self.config()?;
        let home =
            foundry_core::Home::from_env().map_err(|e| ActivityError::permanent(e.to_string()))?;
        match self.phase {
            Phase::Hosts => {
                let input = crate::host::configure_input(
                    &stack,
                    &self.config,
                    &[],
                    true,
                    self.parallel,
                    self.adopt,
                )
                .await
                .map_err(|e| said(e.message, e.hint))?;
                Ok(PhaseInput {
                    input: json(&input)?,
                    left: Vec::new(),
                })
            }
            Phase::Stack => {
                let placed = crate::stack::placed_some(&stack, &self.config)
                    .map_err(|e| said(e.message, e.hint))?;
                let options = InstallOptions {
                    keep_root_token: self.keep_root_token,
                    config: Some(self.config.clone()),
                };
                let input = crate::stack::install_input(&stack, home.root(), &placed, &options)
                    .map_err(|e| said(e.message, e.hint))?;
                Ok(PhaseInput {
                    input: json(&input)?,
                    left: Vec::new(),
                })
            }
            Phase::Keys => {
                let plan = crate::keys::move_plan(&stack, &self.config, home.root(), &[])
                    .map_err(|e| said(e.message, e.hint))?;
                Ok(PhaseInput {
                    input: plan.input.as_ref().map(json).transpose()?.flatten(),
                    left: plan.left,
                })
            }
        }
    }
}

/// The last look: every placed component, asked now where it runs, and the DNS server
/// answering each infrastructure zone. One not yet healthy is asked again (a service may
/// take a moment to answer after its container starts).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Verify {
    pub config: PathBuf,
}

impl Activity for Verify {
    type Output = Vec<ComponentStatus>;

    fn kind(&self) -> &'static str {
        "verify"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Vec<ComponentStatus>>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, _cx: &ActivityCx) -> Result<Vec<ComponentStatus>, ActivityError> {
        let stack = std::sync::Arc::new(
            crate::config::load(&self.config)
                .map_err(|e| ActivityError::permanent(e.to_string()))?,
        );
        // Every component is asked at once; the answers are read in the stack's order.
        let mut asking = tokio::task::JoinSet::new();
        let placed = crate::stack::placed(&stack);
        for (i, c) in placed.iter().copied().enumerate() {
            let stack = stack.clone();
            asking.spawn(async move { (i, c.status(&stack).await) });
        }
        // And DNS asked meanwhile; its answer is said after the components'.
        let dns = crate::network::phase::dns_answers(&stack);
        let statuses = async {
            let mut answers: Vec<Option<_>> = placed.iter().map(|_| None).collect();
            while let Some(answer) = asking.join_next().await {
                let (i, status) = answer.map_err(|e| {
                    ActivityError::permanent(format!("asking a component's status: {e}"))
                })?;
                if let Some(slot) = answers.get_mut(i) {
                    *slot = Some(status);
                }
            }
            Ok::<_, ActivityError>(answers)
        };
        let (answers, dns) = tokio::join!(statuses, dns);
        let answers = answers?;
        let mut found = Vec::new();
        for status in answers.into_iter().flatten() {
            let status = status.map_err(|e| ActivityError::transient(e.message))?;
            if !status.healthy {
                return Err(ActivityError::transient(format!(
                    "{} on {} is not healthy: {}",
                    status.component, status.host, status.summary
                )));
            }
            found.push(status);
        }
        dns?;
        Ok(found)
    }
}

#[derive(Default)]
pub struct Setup;

impl Setup {
    /// Reads `phase`'s input, then runs `part` on it in the phase's scope: `None` when
    /// the phase has nothing to do.
    async fn phase(
        ctx: &Ctx,
        input: &SetupInput,
        phase: Phase,
        name: &str,
        part: Part,
    ) -> Result<(Option<Value>, Vec<LeftAlone>), RunError> {
        let read = ReadPhase {
            config: input.config.clone(),
            phase,
            keep_root_token: input.keep_root_token,
            parallel: input.parallel,
            adopt: input.adopt,
        };
        let read = ctx.step(&format!("{name}/read"), &read).await?;
        let Some(phase_input) = read.input else {
            return Ok((None, read.left));
        };
        let output = part.run(ctx.scope(name), phase_input).await?;
        Ok((Some(output), read.left))
    }
}

/// Reads a phase's output as its workflow's output type.
fn output<T: serde::de::DeserializeOwned>(phase: &str, output: Value) -> Result<T, RunError> {
    serde_json::from_value(output)
        .map_err(|e| RunError::workflow(format!("the {phase} phase's output: {e}")))
}

impl Workflow for Setup {
    const NAME: &'static str = "setup";
    const VERSION: u32 = 3;
    type Input = SetupInput;
    type Output = SetupOutput;

    fn check(&self, input: &SetupInput) -> Result<(), String> {
        if input.parallel == 0 {
            return Err("parallel 0: configure at least one host at a time".into());
        }
        crate::config::load(&input.config)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn run(&self, ctx: Ctx, input: SetupInput) -> Result<SetupOutput, RunError> {
        let added = wizard::add_new_hosts(&ctx, &input.config).await?;
        // Nothing of the hosts phase changes what answers at the VIP: the network phase's
        // probe of it runs meanwhile (and again after, when it could not tell).
        if let Ok(stack) = crate::config::load(&input.config) {
            crate::network::probe_vip_ahead(&stack);
        }
        let (hosts, _) = Self::phase(
            &ctx,
            &input,
            Phase::Hosts,
            "hosts",
            Part::of::<HostConfigure>(),
        )
        .await?;
        let hosts: ConfigureOutput = output("hosts", hosts.unwrap_or(Value::Null))?;
        let network = crate::network::phase::run(&ctx, &input.config).await?;
        let (stack, _) = Self::phase(
            &ctx,
            &input,
            Phase::Stack,
            "stack",
            Part::of::<StackInstall>(),
        )
        .await?;
        let stack: StackOutput = output("stack", stack.unwrap_or(Value::Null))?;
        let (keys, keys_left) =
            Self::phase(&ctx, &input, Phase::Keys, "keys", Part::of::<KeysMove>()).await?;
        let keys: Option<MoveOutput> = keys.map(|k| output("keys", k)).transpose()?;
        let status = ctx
            .step(
                "verify",
                &Verify {
                    config: input.config.clone(),
                },
            )
            .await?;
        Ok(SetupOutput {
            added,
            hosts,
            network,
            stack,
            keys,
            keys_left,
            status,
        })
    }
}
