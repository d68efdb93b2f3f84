//! `foundry stack`: every component the stack config places, as one: `install` runs them
//! as one durable run in the order their needs give, `status` asks each one now,
//! `validate` checks that the config places each one and that its install would start.

use std::path::Path;

use foundry_workflows::component::{Component, ComponentError, ComponentStatus, InstallOptions};
use foundry_workflows::stack::{self, StackInstall};
use foundry_workflows::upgrade::{self, UpgradePlan};

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum StackCmd {
    /// Install every component the stack config places, in order, as one run.
    #[command(after_help = "\
The run is durable: if it is interrupted, `foundry workflow resume <run>` continues it
where it stopped, and installing again changes only what differs. Components that need
nothing of each other are installed side by side.

Examples:
  foundry stack install
  foundry stack install --output json")]
    Install(InstallFlags),
    /// Each placed component, asked now where it runs.
    #[command(after_help = "\
Exits 1 when a component is not healthy.

Examples:
  foundry stack status
  foundry stack status --output json")]
    Status,
    /// Check that the config places each component and that each install would start.
    #[command(after_help = "\
Nothing is changed or contacted. Exits 1 when a component cannot be installed as
configured, saying what to set.

Examples:
  foundry stack validate
  foundry stack validate --output json")]
    Validate,
    /// What an install would change now, asked live of each placed component.
    #[command(after_help = "\
Each component is asked where it runs: a missing container is to be created, a stopped
one started, a service that does not answer as it should repaired, a version other than
the config's changed. Nothing is changed. Exits 0 either way; `--output json` gives one
object per component with its `plan`.

Examples:
  foundry stack plan
  foundry stack plan --output json")]
    Plan,
    /// Upgrade each placed component from the version it runs to the config's, as one run.
    #[command(after_help = "\
Each component's running version is read where it runs (the tag of the image its container
was created from) and shown beside the config's. Each upgrade is confirmed on its own
unless --yes; without a terminal, --yes is needed. An upgrade that would jump over a
version needing steps of its own is refused, naming the version to go through first, and
nothing is changed. The chosen upgrades run as one durable run in the order the
components' needs give: if it is interrupted, `foundry workflow resume <run>` continues
it. Data volumes are kept.

Examples:
  foundry stack upgrade --dry-run
  foundry stack upgrade --yes
  foundry stack upgrade --yes --output json")]
    Upgrade(UpgradeFlags),
}

#[derive(Debug, clap::Args)]
pub struct UpgradeFlags {
    /// Upgrade every component the plan shows without asking.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print each component's running and target versions, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct InstallFlags {
    /// Hand OpenBAO's root token over too, instead of revoking it once Foundry's own token
    /// is made (a quorum of unseal keys can always make a new one).
    #[arg(long)]
    pub keep_root_token: bool,
    /// Print what the install would change, asked live, and change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl From<ComponentError> for CliError {
    fn from(e: ComponentError) -> Self {
        let mut err = CliError::new(e.message);
        err.hint = e.hint;
        err
    }
}

/// The stack config a command works on, read once: its home, where it is, what it says.
pub(crate) struct Loaded {
    pub home: foundry_core::Home,
    pub selected: foundry_workflows::config::Selected,
    pub stack: foundry_workflows::config::StackConfig,
}

impl Loaded {
    /// The config (`--config`, `FOUNDRY_CONFIG`, or the home's only one), which must exist
    /// and read.
    pub(crate) fn load(config: Option<&Path>) -> Result<Loaded, CliError> {
        let (home, selected) = super::existing(config)?;
        let stack = selected.load()?;
        Ok(Loaded {
            home,
            selected,
            stack,
        })
    }
}

pub async fn run(cmd: StackCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let loaded = Loaded::load(config)?;
    let (selected, stack) = (&loaded.selected, &loaded.stack);
    let placed = stack::placed_some(stack, &selected.path)?;
    match cmd {
        StackCmd::Install(args) if args.dry_run => plan(placed, printer, &loaded).await,
        StackCmd::Install(args) => {
            let options = InstallOptions {
                keep_root_token: args.keep_root_token,
                config: Some(selected.path.clone()),
            };
            install(placed, &options, printer, &loaded).await
        }
        StackCmd::Plan => plan(placed, printer, &loaded).await,
        StackCmd::Status => status(placed, printer, &loaded).await,
        StackCmd::Validate => validate(printer, &loaded),
        StackCmd::Upgrade(flags) => upgrade(placed, None, &flags, printer, &loaded).await,
    }
}

/// Upgrades `components` to `to` (else to the config's versions): the plan shown, each
/// confirmed unless `--yes`, a refused one refusing the whole, the chosen ones run as one
/// `stack-upgrade` run.
pub(crate) async fn upgrade(
    components: Vec<&'static dyn Component>,
    to: Option<&str>,
    flags: &UpgradeFlags,
    printer: &Printer,
    loaded: &Loaded,
) -> Result<u8, CliError> {
    let mut plans = Vec::new();
    for c in components {
        plans.push((c, upgrade::plan(&loaded.stack, c, to).await?));
    }
    if printer.json() {
        let shown: Vec<&UpgradePlan> = plans.iter().map(|(_, p)| p).collect();
        let _ = printer.data_each(&shown);
    } else {
        for (_, p) in &plans {
            let _ = printer.line(&format!("{} on {}: {}", p.component, p.host, p.said()));
            for step in &p.steps {
                let _ = printer.line(&format!("  then: {step}"));
            }
        }
    }
    let refused: Vec<&upgrade::Refusal> = plans
        .iter()
        .filter(|(_, p)| p.change)
        .filter_map(|(_, p)| p.refused.as_ref())
        .collect();
    if let Some(first) = refused.first() {
        let said: Vec<&str> = refused.iter().map(|r| r.message.as_str()).collect();
        let mut err = CliError::new(format!("nothing was upgraded: {}", said.join("; ")));
        err.hint = first.hint.clone();
        return Err(err);
    }
    let to_change: Vec<(&'static dyn Component, UpgradePlan)> =
        plans.into_iter().filter(|(_, p)| p.change).collect();
    if to_change.is_empty() {
        printer.note("nothing to upgrade: every component runs the version asked for");
        return Ok(exit::OK);
    }
    if flags.dry_run {
        return Ok(exit::OK);
    }
    let chosen = if flags.yes {
        to_change
    } else {
        if !super::interactive() {
            let names: Vec<&str> = to_change.iter().map(|(c, _)| c.name()).collect();
            return Err(CliError::new(format!(
                "nothing was upgraded: upgrading {} needs a yes, and there is no terminal to ask on",
                names.join(", ")
            ))
            .with_hint("add --yes to upgrade as the plan above says"));
        }
        let mut chosen = Vec::new();
        for (c, p) in to_change {
            let agreed = dialoguer::Confirm::new()
                .with_prompt(format!(
                    "Upgrade {} on {}: {}?",
                    p.component,
                    p.host,
                    p.said()
                ))
                .default(false)
                .interact()
                .unwrap_or(false);
            if agreed {
                chosen.push((c, p));
            }
        }
        chosen
    };
    if chosen.is_empty() {
        printer.note("nothing upgraded");
        return Ok(exit::OK);
    }
    let input = upgrade::stack_input(&loaded.stack, loaded.home.root(), &chosen)?;
    // The same command after a kill or a pause goes on with the unfinished run of the same
    // upgrade: no second run, no node done again.
    let (run, (code, output)) = super::drive::start_or_resume(
        <upgrade::StackUpgrade as foundry_core::Workflow>::NAME,
        serde_json::to_value(&input).map_err(|e| CliError::new(e.to_string()))?,
        printer,
    )
    .await?;
    let Some(outputs) = output else {
        return Ok(code);
    };
    let outputs: stack::StackOutput =
        serde_json::from_value(outputs).map_err(|e| CliError::new(e.to_string()))?;
    let mut said = Vec::new();
    for (c, p) in &chosen {
        let Some(output) = outputs.get(c.name()) else {
            continue;
        };
        let changes = c.upgrade_changes(output.clone())?;
        if printer.json() {
            said.push(serde_json::json!({
                "component": c.name(),
                "host": p.host,
                "run": run,
                "upgraded": true,
                "from": p.running,
                "to": p.target,
                "changes": changes,
            }));
        } else {
            let what = match changes.is_empty() {
                true => "nothing changed".to_string(),
                false => changes.join(", "),
            };
            let _ = printer.line(&format!(
                "{} on {}: upgraded {}: {what}",
                c.name(),
                p.host,
                p.said()
            ));
        }
    }
    if printer.json() {
        let _ = printer.data_each(&said);
    }
    Ok(code)
}

/// Installs `components` (in install order) as one `stack-install` run, and says what
/// each changed.
pub(crate) async fn install(
    components: Vec<&'static dyn Component>,
    options: &InstallOptions,
    printer: &Printer,
    loaded: &Loaded,
) -> Result<u8, CliError> {
    let Loaded {
        home,
        selected,
        stack,
    } = loaded;
    let input = stack::install_input(stack, home.root(), &components, options)?;
    let (engine, bar) = super::engine(printer)?;
    let driver = engine.start(
        <StackInstall as foundry_core::Workflow>::NAME,
        serde_json::to_value(&input).map_err(|e| CliError::new(e.to_string()))?,
    )?;
    let run = driver.run_id();
    let (code, output) = super::drive::drive(driver, printer, bar).await?;
    let Some(outputs) = output else {
        return Ok(code);
    };
    let outputs: stack::StackOutput =
        serde_json::from_value(outputs).map_err(|e| CliError::new(e.to_string()))?;
    report(stack, &outputs, &run.to_string(), printer)?;
    if code != exit::OK {
        return Ok(code);
    }
    if components.iter().any(|c| c.keeps_secrets()) {
        return move_keys(&selected.path, home.root(), printer).await;
    }
    Ok(exit::OK)
}

/// Says what each component's install (in `outputs`, by component) changed, and hands
/// OpenBAO's keys over when its install made them; whether anything changed.
pub(crate) fn report(
    stack: &foundry_workflows::config::StackConfig,
    outputs: &stack::StackOutput,
    run: &str,
    printer: &Printer,
) -> Result<bool, CliError> {
    let mut said = Vec::new();
    let mut changed = false;
    for c in stack::all() {
        let Some(output) = outputs.get(c.name()) else {
            continue;
        };
        let place = c.placement(stack)?;
        let handed_over = output.get("handed_over").and_then(|v| v.as_bool()) == Some(true);
        let handed_files: Vec<std::path::PathBuf> =
            field(output, "handover_files").unwrap_or_default();
        let handover: Option<std::path::PathBuf> = field(output, "handover");
        let changes = c.changes(output.clone())?;
        changed |= !changes.is_empty();
        if printer.json() {
            said.push(serde_json::json!({
                "component": c.name(),
                "host": place.host,
                "address": place.address,
                "run": run,
                "changed": !changes.is_empty(),
                "changes": changes,
            }));
        } else if changes.is_empty() {
            let _ = printer.line(&format!("{}: nothing changed", place.said()));
        } else {
            let _ = printer.line(&format!("{}: {}", place.said(), changes.join(", ")));
        }
        if let (true, false, Some(index)) = (handed_over, printer.json(), handover) {
            hand_over(&index, &handed_files, printer);
        }
    }
    if printer.json() {
        let _ = printer.data_each(&said);
    }
    Ok(changed)
}

/// A field of an install's output, when it has it.
fn field<T: serde::de::DeserializeOwned>(output: &serde_json::Value, name: &str) -> Option<T> {
    output
        .get(name)
        .cloned()
        .and_then(|v| serde_json::from_value(v).ok())
}

/// Once OpenBAO is up, the hosts' keys Foundry made move into it (when there is any).
async fn move_keys(config: &Path, home: &Path, printer: &Printer) -> Result<u8, CliError> {
    // The config as it is now: an earlier move may have rewritten it.
    let stack = foundry_workflows::config::load(config)?;
    let announce = "OpenBAO is up: the hosts' keys Foundry made move into it";
    super::host::keys::move_keys(&stack, config, home, &[], Some(announce), printer).await
}

/// OpenBAO's unseal keys (and root token, if kept), handed over one per private file: on
/// a terminal each is shown on its own and its file deleted once the person says it is
/// stored, before the next; else the files stay, and where they are is said.
pub(crate) fn hand_over(index: &Path, files: &[std::path::PathBuf], printer: &Printer) {
    let listed: Vec<String> = files.iter().map(|f| format!("  {}", f.display())).collect();
    let where_ = format!(
        "OpenBAO's unseal keys are in these files, one secret each, readable only by you \
         (what they are: {}): store each somewhere safe, then delete its file\n{}",
        index.display(),
        listed.join("\n")
    );
    let terminal = {
        use std::io::IsTerminal;
        super::interactive() && std::io::stdout().is_terminal()
    };
    if !terminal {
        return printer.note(&where_);
    }
    let keys = files
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with("-root-token.txt"))
        .count();
    for (i, file) in files.iter().enumerate() {
        let Ok(secret) = std::fs::read_to_string(file) else {
            return printer.note(&where_);
        };
        let label = if i < keys {
            format!("Unseal Key {} of {keys}", i + 1)
        } else {
            "Initial Root Token".to_string()
        };
        let _ = printer.line(&format!("\n{label}: {}", secret.trim()));
        let stored = dialoguer::Confirm::new()
            .with_prompt("Stored it somewhere safe? Its file is then deleted")
            .default(false)
            .interact()
            .unwrap_or(false);
        if !stored {
            return printer.note(&where_);
        }
        if let Err(e) = std::fs::remove_file(file) {
            printer.note(&format!(
                "could not delete {}: {e}; delete it yourself",
                file.display()
            ));
        }
    }
    let _ = std::fs::remove_file(index);
    printer.note("every key is stored and its file deleted: Foundry keeps no copy of the keys");
}

/// Each of `components` as it is now, asked where it runs.
async fn statuses(
    components: Vec<&'static dyn Component>,
    loaded: &Loaded,
) -> Result<Vec<ComponentStatus>, CliError> {
    let mut found = Vec::new();
    for c in components {
        found.push(c.status(&loaded.stack).await?);
    }
    Ok(found)
}

/// Each of `components` as it is now; exit 1 when one is not healthy.
pub(crate) async fn status(
    components: Vec<&'static dyn Component>,
    printer: &Printer,
    loaded: &Loaded,
) -> Result<u8, CliError> {
    let found = statuses(components, loaded).await?;
    if printer.json() {
        let _ = printer.data_each(&found);
    } else {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|s| {
                let version = match (&s.version, &s.expected_version) {
                    (Some(v), Some(want)) if v != want => format!("{v} (config wants {want})"),
                    (Some(v), _) => v.clone(),
                    (None, _) => "-".into(),
                };
                vec![
                    s.component.to_string(),
                    s.host.clone(),
                    s.address.map_or("-".into(), |a| a.to_string()),
                    if s.healthy { "healthy" } else { "unhealthy" }.into(),
                    version,
                    s.summary.clone(),
                ]
            })
            .collect();
        let _ = printer.table(
            &["COMPONENT", "HOST", "ADDRESS", "HEALTH", "VERSION", "STATE"],
            &rows,
        );
    }
    let healthy = found.iter().all(|s| s.healthy);
    Ok(if healthy { exit::OK } else { exit::ERROR })
}

/// What installing `components` would change now, asked live; exit 0 either way.
pub(crate) async fn plan(
    components: Vec<&'static dyn Component>,
    printer: &Printer,
    loaded: &Loaded,
) -> Result<u8, CliError> {
    let mut planned = Vec::new();
    for status in stack::plan(&loaded.stack, &components).await? {
        let plan = status.plan();
        planned.push(serde_json::json!({
            "component": status.component,
            "host": status.host,
            "address": status.address,
            "plan": plan,
        }));
    }
    if printer.json() {
        let _ = printer.data_each(&planned);
        return Ok(exit::OK);
    }
    let mut nothing = true;
    for p in &planned {
        let name = p["component"].as_str().unwrap_or_default();
        let host = p["host"].as_str().unwrap_or_default();
        let steps: Vec<&str> = p["plan"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        if steps.is_empty() {
            let _ = printer.line(&format!("{name} on {host}: nothing to do"));
        } else {
            nothing = false;
            let _ = printer.line(&format!("{name} on {host}:"));
            for step in steps {
                let _ = printer.line(&format!("  {step}"));
            }
        }
    }
    if nothing {
        let _ = printer.line("nothing to do");
    }
    Ok(exit::OK)
}

/// Whether the config places each component and each install would start: one row each.
fn validate(printer: &Printer, loaded: &Loaded) -> Result<u8, CliError> {
    let (home, stack) = (&loaded.home, &loaded.stack);
    let options = InstallOptions::default();
    let rows: Vec<serde_json::Value> = stack::all()
        .iter()
        .map(|c| match stack::check(stack, home.root(), *c, &options) {
            Ok(place) => serde_json::json!({
                "component": c.name(),
                "ok": true,
                "placed": true,
                "host": place.host,
                "runs": place.runs,
            }),
            Err(e) if e.unplaced => serde_json::json!({
                "component": c.name(),
                "ok": true,
                "placed": false,
            }),
            Err(e) => serde_json::json!({
                "component": c.name(),
                "ok": false,
                "error": e.message,
                "hint": e.hint,
            }),
        })
        .collect();
    let ok = rows.iter().all(|r| r["ok"] == true);
    if printer.json() {
        let _ = printer.data_each(&rows);
    } else {
        for r in &rows {
            let line = match (r["ok"] == true, r["placed"] == true) {
                (true, false) => format!(
                    "skip  {}: placed on no host",
                    r["component"].as_str().unwrap_or_default()
                ),
                (true, true) => format!(
                    "ok    {}: {} on {}",
                    r["component"].as_str().unwrap_or_default(),
                    r["runs"].as_str().unwrap_or_default(),
                    r["host"].as_str().unwrap_or_default()
                ),
                (false, _) => {
                    let hint = r["hint"]
                        .as_str()
                        .map(|h| format!("\n      hint: {h}"))
                        .unwrap_or_default();
                    format!(
                        "FAIL  {}: {}{hint}",
                        r["component"].as_str().unwrap_or_default(),
                        r["error"].as_str().unwrap_or_default()
                    )
                }
            };
            let _ = printer.line(&line);
        }
    }
    Ok(if ok { exit::OK } else { exit::ERROR })
}
