//! `foundry setup`: the whole stack from the stack config as one durable run (`setup`):
//! the hosts configured, every component installed in order, the hosts' keys moved into
//! OpenBAO, and a last look at each component. An unfinished setup of the same config is
//! resumed rather than started again.

use std::path::Path;

use foundry_core::{EngineError, RunId, RunState, Workflow};
use foundry_workflows::setup::{Setup, SetupInput, SetupOutput};

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Set up the whole stack the config describes, on its hosts, as one resumable run.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
First, each host the config names under `hosts:` without the login key and host key
`foundry host add` records is asked for (its address, user, a key file or a password,
whether to trust its host key) and added as `host add` adds one; each answer is kept by
the run (a password only by reference), so a resumed setup never asks again. Without a
terminal, FOUNDRY_INPUT_<HOST>_<ADDRESS|USER|KEY|PASSWORD|TRUST> answer (TRUST: `yes`
or the host key's SHA256 fingerprint), and --yes takes the config's address and user.

The phases: the hosts configured for Foundry, each component installed (OpenBAO, then
PowerDNS with its zones, the registry), the hosts' keys moved into OpenBAO, and a last
look at every component. The run is durable: interrupted anywhere (Ctrl-C, a lost
connection, a reboot), `foundry setup` again resumes it where it stopped; run once more
after it completes, it changes nothing and says so.

Examples:
  foundry setup
  foundry setup --config ~/.foundry/lab-default.yaml --yes
  foundry setup --resume
  foundry setup --reset --yes
  foundry setup --dry-run")]
pub struct Args {
    /// Resume the unfinished setup of this config, and fail when there is none (without
    /// it, an unfinished setup is resumed anyway, and a new one starts when there is none).
    #[arg(long, conflicts_with = "reset")]
    resume: bool,
    /// Give up the unfinished setup of this config and start again (what is installed
    /// stays; the new run finds it).
    #[arg(long)]
    reset: bool,
    /// Answer yes to every question, and take the config's answer where it has one (for
    /// scripts and CI).
    #[arg(long, short = 'y')]
    yes: bool,
    /// Hand OpenBAO's root token over too, instead of revoking it once Foundry's own token
    /// is made.
    #[arg(long)]
    keep_root_token: bool,
    /// Accept a `foundry` user that exists already on a host.
    #[arg(long)]
    adopt: bool,
    /// Print what the stack's installs would change, asked live, and change nothing.
    #[arg(long, conflicts_with_all = ["resume", "reset"])]
    dry_run: bool,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (home, selected) = super::existing(config).map_err(|e| {
        e.with_hint("write one with `foundry config init`, or make a lab with `foundry lab up`")
    })?;
    // A config that does not read stops here, before anything is changed.
    let stack = selected.load()?;
    if args.dry_run {
        let placed = foundry_workflows::stack::placed(&stack);
        let loaded = super::stack::Loaded {
            home,
            selected,
            stack,
        };
        return super::stack::plan(placed, printer, &loaded).await;
    }
    let (engine, bar, input) = super::engine_asking(printer, args.yes)?;
    let unfinished = unfinished(&engine, &selected.path).await?;
    let driver = match (unfinished, args.resume, args.reset) {
        (Some(run), _, true) => {
            confirm_reset(&engine, run, args.yes, printer).await?;
            start(&engine, &selected.path, &args)?
        }
        (Some(run), _, false) => {
            printer.note(&format!(
                "resuming the unfinished setup {} of {}",
                engine.short_id(run),
                selected.path.display()
            ));
            engine.resume(run).await?
        }
        (None, true, _) => {
            return Err(CliError::new(format!(
                "no unfinished setup of {} to resume",
                selected.path.display()
            ))
            .with_hint("`foundry setup` starts one"));
        }
        (None, false, _) => start(&engine, &selected.path, &args)?,
    };
    let run = driver.run_id();
    let (code, output) = super::drive::drive(driver, printer, bar).await?;
    let Some(output) = output else {
        if let Some(first) = input.unanswered().first() {
            let mut err = CliError::new(format!(
                "the setup needs an answer and nobody is here to give it: {}",
                first.prompt
            ))
            .with_hint(format!(
                "set {} (a setup's questions are answered by FOUNDRY_INPUT_<HOST>_<ADDRESS|USER|KEY|PASSWORD|TRUST>; with --yes the config answers the address and the user), or add the host first with `foundry host add`; then `foundry setup` goes on where it stopped",
                first.env()
            ));
            err.code = code;
            return Err(err);
        }
        if code != exit::OK && !printer.json() {
            printer.note(
                "the setup stopped; `foundry setup` resumes it where it stopped once the cause is fixed",
            );
        }
        return Ok(code);
    };
    let output: SetupOutput = serde_json::from_value(output)
        .map_err(|e| CliError::new(format!("unexpected output of the setup: {e}")))?;
    // The config as it is now: the keys' move may have rewritten it.
    let stack = foundry_workflows::config::load(&selected.path).unwrap_or(stack);
    summary(&stack, &output, &run.to_string(), printer)?;
    Ok(code)
}

/// The unfinished setup of the config at `path`, when there is one.
async fn unfinished(engine: &foundry_core::Engine, path: &Path) -> Result<Option<RunId>, CliError> {
    let wanted = serde_json::json!(path);
    super::drive::newest_unfinished(engine, |info, _| {
        info.workflow == Setup::NAME && info.input.get("config") == Some(&wanted)
    })
    .await
}

fn start(
    engine: &foundry_core::Engine,
    path: &Path,
    args: &Args,
) -> Result<foundry_core::Driver, CliError> {
    let input = SetupInput {
        config: path.to_path_buf(),
        keep_root_token: args.keep_root_token,
        parallel: 10,
        adopt: args.adopt,
    };
    let input = serde_json::to_value(&input).map_err(|e| CliError::new(e.to_string()))?;
    Ok(engine.start(Setup::NAME, input)?)
}

/// Cancels the unfinished setup `run` once the person agrees (or `--yes` said so).
async fn confirm_reset(
    engine: &foundry_core::Engine,
    run: RunId,
    yes: bool,
    printer: &Printer,
) -> Result<(), CliError> {
    let short = engine.short_id(run);
    if !yes {
        if !super::interactive() {
            return Err(CliError::new(format!(
                "--reset gives up the unfinished setup {short}, and nobody is here to confirm it"
            ))
            .with_hint("add --yes"));
        }
        let agreed = dialoguer::Confirm::new()
            .with_prompt(format!(
                "Give up the unfinished setup {short} and start again? What is installed stays"
            ))
            .default(false)
            .interact()
            .unwrap_or(false);
        if !agreed {
            return Err(CliError::quiet(exit::ERROR));
        }
    }
    match engine.cancel_undriven(run).await {
        Ok(driver) => {
            let (code, _) = super::drive::drive(driver, printer, None).await?;
            if code != exit::OK && code != exit::for_state(RunState::Cancelled) {
                return Err(CliError::new(format!(
                    "the unfinished setup {short} could not be given up"
                )));
            }
        }
        Err(EngineError::Finished { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    printer.note(&format!("gave up the unfinished setup {short}"));
    Ok(())
}

/// What the setup did, and what runs where.
fn summary(
    stack: &foundry_workflows::config::StackConfig,
    output: &SetupOutput,
    run: &str,
    printer: &Printer,
) -> Result<(), CliError> {
    let hosts_changed = output.hosts.hosts.iter().any(|h| !h.changed.is_empty())
        || output.added.iter().any(|a| a.config_changed);
    if !printer.json() {
        for added in output.added.iter().filter(|a| a.config_changed) {
            let _ = printer.line(&format!(
                "host {} added: {}@{}:{}, key {} ({})",
                added.host, added.user, added.address, added.port, added.key, added.key_fingerprint
            ));
        }
        let _ = printer.line(&format!("hosts: {}", output.hosts.summary()));
    }
    let written = &output.network.plan.written;
    if let (false, false) = (written.is_empty(), printer.json()) {
        let fields: Vec<&str> = written.iter().map(|c| c.field.as_str()).collect();
        let _ = printer.line(&format!(
            "network: planned and wrote {} into the config",
            fields.join(", ")
        ));
    }
    let components_changed = super::stack::report(stack, &output.stack, run, printer)?;
    let moved = output
        .keys
        .as_ref()
        .is_some_and(|k| k.hosts.iter().any(|h| h.changed));
    if let (Some(keys), false) = (&output.keys, printer.json()) {
        for host in keys.hosts.iter().filter(|h| h.changed) {
            let _ = printer.line(&format!(
                "{}: key moved into openbao {}",
                host.host, host.path
            ));
        }
    }
    let changed = hosts_changed || !written.is_empty() || components_changed || moved;
    if printer.json() {
        let _ = printer.data(&serde_json::json!({
            "setup": run,
            "changed": changed,
            "hosts": output.hosts.hosts.len(),
            "status": output.status,
        }));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = output
        .status
        .iter()
        .map(|s| {
            vec![
                s.component.clone(),
                s.host.clone(),
                s.address.map_or("-".into(), |a| a.to_string()),
                if s.healthy { "healthy" } else { "unhealthy" }.into(),
                s.version.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let _ = printer.line("");
    let _ = printer.table(
        &["COMPONENT", "HOST", "ADDRESS", "HEALTH", "VERSION"],
        &rows,
    );
    let _ = printer.line(if changed {
        "\nsetup complete"
    } else {
        "\nsetup complete: nothing changed"
    });
    Ok(())
}
