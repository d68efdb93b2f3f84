//! `local`: a plan of steps: commands (argv) run on this machine or, over SSH, on a host of
//! the stack config (detached where they are long), files, and questions.
//! It serves users' own local automation and the engine's crash tests.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use foundry_activities::local::{CommandOutput, EnsureFile, RemoveFile, RunCommand};
use foundry_activities::ssh::{SshDetached, SshExec, SshTarget};
use foundry_core::{
    Activity, ActivityCx, ActivityError, Answer, Ctx, InDoubt, Question, RetryPolicy, RunError,
    SecretValue, Workflow,
};
use serde::{Deserialize, Serialize};

use crate::config::StackConfig;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The stack config whose hosts `host:` steps name.
    #[serde(default)]
    pub config: Option<PathBuf>,
    pub steps: Vec<PlanStep>,
}

/// One step: exactly one of `run`, `file`, `ask`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    pub key: String,
    /// A program and its arguments (no shell unless you name one).
    #[serde(default)]
    pub run: Option<Vec<String>>,
    /// For `run`: a read-only check whose exit status 0 means the effect is there.
    #[serde(default)]
    pub probe: Option<Vec<String>>,
    /// For `run`: a command that reverses it, run if the plan is cancelled.
    #[serde(default)]
    pub undo: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// For `run` (and its `undo`): what the command reads on stdin. A secret answer goes
    /// here (or, for a local step, in `env`), never in an argument, where the process list
    /// shows it.
    #[serde(default)]
    pub stdin: Option<String>,
    #[serde(default)]
    pub cwd: Option<PathBuf>,
    #[serde(default)]
    pub file: Option<FileSpec>,
    #[serde(default)]
    pub ask: Option<Question>,
    #[serde(default)]
    pub retry: Option<RetryPolicy>,
    /// For `run`: the config host to run it on, over SSH, instead of this machine.
    #[serde(default)]
    pub host: Option<String>,
    /// For `run` on a host: with `sudo`.
    #[serde(default)]
    pub sudo: bool,
    /// For `run` on a host: detached, so a dropped connection or a restart of Foundry does
    /// not stop it; the step reattaches and reads its exit code.
    #[serde(default)]
    pub detach: bool,
    /// For `run` without `probe`: what happens when Foundry stopped while the command ran
    /// and nothing can tell whether it took effect.
    #[serde(default)]
    pub in_doubt: Unprobed,
}

/// What a plan's command without a probe does when it is found in doubt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unprobed {
    /// It runs again: the command must be harmless to run twice.
    #[default]
    Rerun,
    /// It never runs twice unchecked: the run pauses on it until a person says whether it
    /// took effect (`workflow resume --done <step>`) or not (`--redo <step>`).
    Pause,
}

/// A plan's command with the in-doubt class its step declares.
struct Declared<A> {
    command: A,
    pause: bool,
}

impl<A: Activity<Output = CommandOutput>> Activity for Declared<A> {
    type Output = CommandOutput;

    fn kind(&self) -> &'static str {
        self.command.kind()
    }

    fn in_doubt(&self) -> InDoubt {
        if self.pause {
            InDoubt::Pause
        } else {
            self.command.in_doubt()
        }
    }

    fn verifiable(&self) -> bool {
        self.command.verifiable()
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.command.retry_policy()
    }

    /// A person said it took effect: it succeeded, as far as anyone can tell.
    fn assumed_done(&self) -> Option<CommandOutput> {
        self.pause.then_some(CommandOutput {
            exit_code: 0,
            probed: true,
        })
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CommandOutput>, ActivityError> {
        self.command.probe(cx).await
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CommandOutput, ActivityError> {
        self.command.apply(cx).await
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    pub path: PathBuf,
    pub content: String,
    #[serde(default = "default_mode")]
    pub mode: u32,
}

fn default_mode() -> u32 {
    0o644
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PlanOutput {
    pub steps: usize,
}

pub struct LocalPlan;

/// `${input:NAME}` references in `text`.
fn references(text: &str) -> impl Iterator<Item = &str> {
    text.match_indices("${input:").filter_map(move |(at, m)| {
        let rest = &text[at + m.len()..];
        rest.find('}').map(|end| &rest[..end])
    })
}

impl PlanStep {
    fn texts(&self) -> impl Iterator<Item = &str> {
        let argv = self
            .run
            .iter()
            .chain(self.probe.iter())
            .chain(self.undo.iter())
            .flatten();
        argv.map(String::as_str)
            .chain(self.env.values().map(String::as_str))
            .chain(self.stdin.as_deref())
            .chain(self.file.iter().map(|f| f.content.as_str()))
    }

    fn actions(&self) -> usize {
        usize::from(self.run.is_some())
            + usize::from(self.file.is_some())
            + usize::from(self.ask.is_some())
    }
}

/// Answers so far, by ask key; secret ones revealed only for substitution.
struct Answers(HashMap<String, Answer>);

impl Answers {
    fn substitute(&self, ctx: &Ctx, step: &str, text: &str) -> Result<String, RunError> {
        let mut out = text.to_string();
        for name in references(text) {
            let value = match self.0.get(name) {
                Some(Answer::Text(v)) => v.clone(),
                Some(Answer::Secret(r)) => ctx.reveal(r)?.expose().to_string(),
                None => {
                    return Err(RunError::workflow(format!(
                        "step {step}: ${{input:{name}}} has no answer"
                    )));
                }
            };
            out = out.replace(&format!("${{input:{name}}}"), &value);
        }
        Ok(out)
    }

    fn argv(&self, ctx: &Ctx, step: &str, argv: &[String]) -> Result<Vec<String>, RunError> {
        argv.iter().map(|a| self.substitute(ctx, step, a)).collect()
    }

    /// The step's `stdin`, answers substituted: kept as a secret, since it may hold one.
    fn stdin(
        &self,
        ctx: &Ctx,
        key: &str,
        step: &PlanStep,
    ) -> Result<Option<SecretValue>, RunError> {
        step.stdin
            .as_deref()
            .map(|text| self.substitute(ctx, key, text).map(SecretValue::new))
            .transpose()
    }
}

impl Workflow for LocalPlan {
    const NAME: &'static str = "local";
    const VERSION: u32 = 1;
    type Input = Plan;
    type Output = PlanOutput;

    fn check(&self, plan: &Plan) -> Result<(), String> {
        let mut seen: Vec<&str> = Vec::new();
        let mut asked: Vec<&str> = Vec::new();
        // The asks whose answers are secret.
        let mut secret: Vec<&str> = Vec::new();
        for (i, step) in plan.steps.iter().enumerate() {
            let at = format!("steps[{i}] (key `{}`)", step.key);
            if step.key.trim().is_empty() {
                return Err(format!("steps[{i}]: `key` is empty"));
            }
            if seen.contains(&step.key.as_str()) {
                return Err(format!(
                    "{at}: the key is used twice; keys name steps and must be unique"
                ));
            }
            seen.push(&step.key);
            if step.actions() != 1 {
                return Err(format!("{at}: give exactly one of `run`, `file`, `ask`"));
            }
            for argv in [&step.run, &step.probe, &step.undo].into_iter().flatten() {
                if argv.is_empty() {
                    return Err(format!("{at}: a command needs at least a program"));
                }
            }
            if step.run.is_none()
                && (step.probe.is_some() || step.undo.is_some() || step.stdin.is_some())
            {
                return Err(format!(
                    "{at}: `probe`, `undo` and `stdin` belong to a `run` step"
                ));
            }
            if step.in_doubt == Unprobed::Pause && (step.run.is_none() || step.probe.is_some()) {
                return Err(format!(
                    "{at}: `in_doubt` belongs to a `run` step without `probe` (a probe decides)"
                ));
            }
            if step.in_doubt == Unprobed::Pause && step.detach {
                return Err(format!(
                    "{at}: a detached step finds its command by name: drop `in_doubt`"
                ));
            }
            match &step.host {
                Some(_) if step.run.is_none() => {
                    return Err(format!("{at}: `host` belongs to a `run` step"));
                }
                Some(_) if plan.config.is_none() => {
                    return Err(format!(
                        "{at}: `host` names a host of the stack config: give the plan a `config`"
                    ));
                }
                Some(_) if step.undo.is_some() || step.cwd.is_some() || !step.env.is_empty() => {
                    return Err(format!(
                        "{at}: `undo`, `cwd` and `env` are for local steps, not `host` ones"
                    ));
                }
                Some(_) if step.detach && step.probe.is_some() => {
                    return Err(format!(
                        "{at}: a detached step finds its command by name: drop `probe`"
                    ));
                }
                Some(_) if step.detach && step.stdin.is_some() => {
                    return Err(format!(
                        "{at}: a detached command outlives the connection its stdin would \
                         come through: drop `stdin` or `detach`"
                    ));
                }
                None if step.sudo || step.detach => {
                    return Err(format!("{at}: `sudo` and `detach` need a `host`"));
                }
                _ => {}
            }
            for name in step.texts().flat_map(references) {
                if !asked.contains(&name) {
                    return Err(format!(
                        "{at}: ${{input:{name}}} refers to no earlier `ask` step"
                    ));
                }
            }
            let argv = [&step.run, &step.probe, &step.undo].into_iter().flatten();
            for name in argv.flatten().flat_map(|a| references(a)) {
                if secret.contains(&name) {
                    return Err(format!(
                        "{at}: ${{input:{name}}} is a secret answer: in a command's \
                         arguments, any user of the machine could read it in the process \
                         list\nhint: give it on the command's stdin (`stdin: \"${{input:{name}}}\\n\"`){}",
                        if step.host.is_none() {
                            ", or in `env`"
                        } else {
                            ""
                        }
                    ));
                }
            }
            if let Some(question) = &step.ask {
                asked.push(&step.key);
                if question.secret {
                    secret.push(&step.key);
                }
            }
        }
        Ok(())
    }

    async fn run(&self, ctx: Ctx, plan: Plan) -> Result<PlanOutput, RunError> {
        let mut answers = Answers(HashMap::new());
        let config = stack_config(&plan)?;
        for step in &plan.steps {
            let key = step.key.as_str();
            if let Some(question) = &step.ask {
                let answer = ctx.ask(key, question.clone()).await?;
                answers.0.insert(key.to_string(), answer);
            } else if let (Some(argv), Some(host)) = (&step.run, &step.host) {
                let target = host_target(config.as_ref(), host)?;
                let argv = answers.argv(&ctx, key, argv)?;
                let policy = step.retry.clone().unwrap_or_default();
                let pause = step.in_doubt == Unprobed::Pause;
                if step.detach {
                    let mut cmd = SshDetached::new(target, argv);
                    cmd.sudo = step.sudo;
                    cmd.policy = policy;
                    ctx.step(key, &cmd).await?;
                } else {
                    let mut cmd = SshExec::new(target, argv);
                    cmd.sudo = step.sudo;
                    cmd.policy = policy;
                    cmd.stdin = answers.stdin(&ctx, key, step)?;
                    cmd.probe = step
                        .probe
                        .as_ref()
                        .map(|p| answers.argv(&ctx, key, p))
                        .transpose()?;
                    let command = Declared {
                        command: cmd,
                        pause,
                    };
                    ctx.step(key, &command).await?;
                }
            } else if let Some(argv) = &step.run {
                let mut cmd = RunCommand::new(answers.argv(&ctx, key, argv)?);
                cmd.probe = step
                    .probe
                    .as_ref()
                    .map(|p| answers.argv(&ctx, key, p))
                    .transpose()?;
                cmd.cwd = step.cwd.clone();
                cmd.stdin = answers.stdin(&ctx, key, step)?;
                for (name, value) in &step.env {
                    cmd.env
                        .insert(name.clone(), answers.substitute(&ctx, key, value)?);
                }
                if let Some(policy) = &step.retry {
                    cmd.policy = policy.clone();
                }
                let undo = step.undo.as_ref();
                let cmd = Declared {
                    command: cmd,
                    pause: step.in_doubt == Unprobed::Pause,
                };
                match undo {
                    Some(undo) => {
                        let mut undo_cmd = RunCommand::new(answers.argv(&ctx, key, undo)?);
                        undo_cmd.cwd = step.cwd.clone();
                        undo_cmd.env = cmd.command.env.clone();
                        undo_cmd.stdin = cmd.command.stdin.clone();
                        ctx.step_with_undo(key, &cmd, undo_cmd).await?;
                    }
                    None => {
                        ctx.step(key, &cmd).await?;
                    }
                }
            } else if let Some(file) = &step.file {
                let content = answers.substitute(&ctx, key, &file.content)?;
                let ensure = EnsureFile {
                    path: file.path.clone(),
                    content: SecretValue::new(content),
                    mode: file.mode,
                };
                let undo = RemoveFile {
                    path: file.path.clone(),
                };
                ctx.step_with_undo(key, &ensure, undo).await?;
            }
        }
        Ok(PlanOutput {
            steps: plan.steps.len(),
        })
    }
}

/// The plan's stack config, read once per run, when some step runs on a host.
fn stack_config(plan: &Plan) -> Result<Option<(&Path, StackConfig)>, RunError> {
    if plan.steps.iter().all(|s| s.host.is_none()) {
        return Ok(None);
    }
    let path = plan
        .config
        .as_deref()
        .ok_or_else(|| RunError::workflow("the plan names no `config`"))?;
    let config = crate::config::load(path).map_err(|e| RunError::workflow(e.to_string()))?;
    Ok(Some((path, config)))
}

/// The SSH target of `host` in the plan's stack config.
fn host_target(config: Option<&(&Path, StackConfig)>, host: &str) -> Result<SshTarget, RunError> {
    let (path, config) = config.ok_or_else(|| RunError::workflow("the plan names no `config`"))?;
    let entry = config.host(host).ok_or_else(|| {
        let names: Vec<&str> = config.hosts.iter().map(|h| h.name.as_str()).collect();
        RunError::workflow(format!(
            "no host `{host}` in {}; it has: {}",
            path.display(),
            names.join(", ")
        ))
    })?;
    config
        .ssh_target(entry)
        .map_err(|e| RunError::workflow(format!("{}\nhint: {}", e.message, e.hint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(json: serde_json::Value) -> Result<(), String> {
        let plan: Plan = serde_json::from_value(json).map_err(|e| e.to_string())?;
        LocalPlan.check(&plan)
    }

    #[test]
    fn check_refuses_bad_plans_with_the_step_named() {
        let dup = plan(serde_json::json!({"steps": [
            {"key": "a", "run": ["true"]}, {"key": "a", "run": ["true"]}
        ]}));
        assert!(
            dup.expect_err("refused")
                .contains("steps[1] (key `a`): the key is used twice")
        );
        let two = plan(serde_json::json!({"steps": [
            {"key": "a", "run": ["true"], "file": {"path": "/tmp/x", "content": ""}}
        ]}));
        assert!(two.expect_err("refused").contains("exactly one of"));
        let dangling = plan(serde_json::json!({"steps": [
            {"key": "a", "run": ["echo", "${input:pw}"]}
        ]}));
        assert!(
            dangling
                .expect_err("refused")
                .contains("${input:pw} refers to no earlier `ask` step")
        );
        let unknown = plan(serde_json::json!({"steps": [{"key": "a", "runn": ["true"]}]}));
        assert!(
            unknown
                .expect_err("refused")
                .contains("unknown field `runn`")
        );
        let probed = plan(serde_json::json!({"steps": [
            {"key": "a", "run": ["true"], "probe": ["true"], "in_doubt": "pause"}
        ]}));
        assert!(
            probed
                .expect_err("refused")
                .contains("`in_doubt` belongs to a `run` step without `probe`")
        );
        let asked = plan(serde_json::json!({"steps": [
            {"key": "a", "ask": {"prompt": "Name"}, "in_doubt": "pause"}
        ]}));
        assert!(asked.expect_err("refused").contains("`in_doubt` belongs"));
        let unknown_class = plan(serde_json::json!({"steps": [
            {"key": "a", "run": ["true"], "in_doubt": "probe"}
        ]}));
        assert!(
            unknown_class
                .expect_err("refused")
                .contains("expected `rerun` or `pause`")
        );
        let ok = plan(serde_json::json!({"steps": [
            {"key": "once", "run": ["true"], "in_doubt": "pause"},
            {"key": "again", "run": ["true"], "in_doubt": "rerun"},
            {"key": "pw", "ask": {"prompt": "Password"}},
            {"key": "a", "run": ["echo", "${input:pw}"]}
        ]}));
        assert_eq!(ok, Ok(()));
    }

    #[test]
    fn a_secret_answer_is_refused_in_an_argv_and_taken_on_stdin() {
        let ask = serde_json::json!({"key": "pw", "ask": {"prompt": "Password", "secret": true}});
        for field in ["run", "probe", "undo"] {
            let mut step = serde_json::json!({"key": "a", "run": ["true"]});
            step[field] = serde_json::json!(["sh", "-c", "x", "sh", "--pw=${input:pw}"]);
            let refused = plan(serde_json::json!({"steps": [ask.clone(), step]}));
            let e = refused.expect_err("refused");
            assert!(
                e.contains("steps[1] (key `a`): ${input:pw} is a secret answer")
                    && e.contains("hint: give it on the command's stdin"),
                "{field}: {e}"
            );
        }
        let on_stdin = plan(serde_json::json!({"steps": [ask.clone(),
            {"key": "a", "run": ["sh", "-c", "read -r pw"], "stdin": "${input:pw}\n",
             "env": {"PW": "${input:pw}"}}
        ]}));
        assert_eq!(on_stdin, Ok(()));
        // A text answer may still be an argument.
        let text = plan(serde_json::json!({"steps": [
            {"key": "name", "ask": {"prompt": "Name"}},
            {"key": "a", "run": ["echo", "${input:name}"]}
        ]}));
        assert_eq!(text, Ok(()));
        let stray = plan(serde_json::json!({"steps": [ask.clone(),
            {"key": "a", "file": {"path": "/tmp/x", "content": ""}, "stdin": "x"}
        ]}));
        assert!(
            stray
                .expect_err("refused")
                .contains("belong to a `run` step")
        );
        let detached = plan(serde_json::json!({"config": "/c.yaml", "steps": [
            {"key": "a", "run": ["true"], "host": "h", "detach": true, "stdin": "x"}
        ]}));
        assert!(
            detached
                .expect_err("refused")
                .contains("drop `stdin` or `detach`")
        );
    }
}
