//! `foundry component`: the infrastructure services (OpenBAO, PowerDNS, the registry) as
//! the stack config places them: `install` runs each one's install workflow, `status`
//! asks each one's containers and service, now.

use std::path::Path;

use foundry_workflows::component::{self, Component, ComponentError};

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum ComponentCmd {
    /// Install components as the stack config places them (all, in order, when none is named).
    #[command(after_help = "\
Each install is a durable run: if it is interrupted, `foundry workflow resume <run>`
continues it, and running the install again changes only what differs.

Examples:
  foundry component install
  foundry component install openbao dns
  foundry component install zot --output json")]
    Install(Names),
    /// Each component's containers and service, asked now (all when none is named).
    #[command(after_help = "\
Exits 1 when a component is not healthy.

Examples:
  foundry component status
  foundry component status dns --output json")]
    Status(Names),
}

#[derive(Debug, clap::Args)]
pub struct Names {
    /// openbao, dns, zot (the registry); every one when none is given.
    #[arg(value_name = "COMPONENT")]
    names: Vec<String>,
}

impl From<ComponentError> for CliError {
    fn from(e: ComponentError) -> Self {
        let mut err = CliError::new(e.message);
        err.hint = e.hint;
        err
    }
}

impl Names {
    /// The named components in install order, each once.
    fn components(&self) -> Result<Vec<Component>, CliError> {
        if self.names.is_empty() {
            return Ok(Component::ALL.to_vec());
        }
        let mut chosen = self
            .names
            .iter()
            .map(|n| n.parse::<Component>())
            .collect::<Result<Vec<_>, _>>()?;
        chosen.sort();
        chosen.dedup();
        Ok(chosen)
    }
}

pub async fn run(
    cmd: ComponentCmd,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    match cmd {
        ComponentCmd::Install(names) => install(names.components()?, printer, config).await,
        ComponentCmd::Status(names) => status(names.components()?, printer, config).await,
    }
}

async fn install(
    components: Vec<Component>,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    let (home, selected) = super::existing(config)?;
    let stack = selected.load()?;
    // Every input is built first: a config that cannot place one component installs none.
    let inputs = components
        .iter()
        .map(|&c| Ok((c, component::install_input(&stack, home.root(), c)?)))
        .collect::<Result<Vec<_>, ComponentError>>()?;
    for (c, input) in inputs {
        let place = component::placement(&stack, c)?;
        let (engine, bar) = super::engine(printer)?;
        let driver = engine.start(c.workflow(), input)?;
        let run = driver.run_id();
        let (code, output) = super::drive::drive(driver, printer, bar).await?;
        let Some(output) = output else {
            return Ok(code);
        };
        let handed_over = output.get("handed_over").and_then(|v| v.as_bool()) == Some(true);
        let changes = component::changes(c, output)?;
        if printer.json() {
            let _ = printer.data(&serde_json::json!({
                "component": c.name(),
                "host": place.host,
                "address": place.address,
                "run": run.to_string(),
                "changed": !changes.is_empty(),
                "changes": changes,
            }));
        } else if changes.is_empty() {
            let _ = printer.line(&format!(
                "{} on {} ({}): nothing changed",
                c.name(),
                place.host,
                place.address
            ));
        } else {
            let _ = printer.line(&format!(
                "{} on {} ({}): {}",
                c.name(),
                place.host,
                place.address,
                changes.join(", ")
            ));
        }
        if handed_over && !printer.json() {
            hand_over(&component::handover_path(home.root(), &place.name), printer);
        }
        if code != exit::OK {
            return Ok(code);
        }
        if c == Component::Openbao {
            let code = move_keys(&selected.path, home.root(), printer).await?;
            if code != exit::OK {
                return Ok(code);
            }
        }
    }
    Ok(exit::OK)
}

/// Once OpenBAO is up, the hosts' keys Foundry made move into it (when there is any).
async fn move_keys(config: &Path, home: &Path, printer: &Printer) -> Result<u8, CliError> {
    // The config as it is now: an earlier move may have rewritten it.
    let stack = foundry_workflows::config::load(config)?;
    let announce = "OpenBAO is up: the hosts' keys Foundry made move into it";
    super::host::keys::move_keys(&stack, config, home, &[], Some(announce), printer).await
}

/// OpenBAO's unseal keys and root token, handed over in a private file: on a terminal they
/// are shown there, and the file is deleted once the person says they are stored; else the
/// file stays, and where it is is said.
fn hand_over(handover: &Path, printer: &Printer) {
    let where_ = format!(
        "OpenBAO's unseal keys and root token are in {} (readable only by you): store them \
         somewhere safe, then delete the file",
        handover.display()
    );
    let terminal = {
        use std::io::IsTerminal;
        super::interactive() && std::io::stdout().is_terminal()
    };
    let text = match std::fs::read_to_string(handover) {
        Ok(text) if terminal => text,
        _ => return printer.note(&where_),
    };
    let _ = printer.line(&format!("\n{}", text.trim_end()));
    let stored = dialoguer::Confirm::new()
        .with_prompt("Stored them somewhere safe? The file holding them is then deleted")
        .default(false)
        .interact()
        .unwrap_or(false);
    if !stored {
        return printer.note(&where_);
    }
    match std::fs::remove_file(handover) {
        Ok(()) => printer.note(&format!(
            "deleted {}: Foundry keeps no copy of the keys",
            handover.display()
        )),
        Err(e) => printer.note(&format!(
            "could not delete {}: {e}; delete it yourself",
            handover.display()
        )),
    }
}

async fn status(
    components: Vec<Component>,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    let (_, selected) = super::existing(config)?;
    let stack = selected.load()?;
    let mut found = Vec::new();
    for c in components {
        found.push(component::status(&stack, c).await?);
    }
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
                    s.address.to_string(),
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
