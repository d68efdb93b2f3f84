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
    Install(InstallArgs),
    /// Each component's containers and service, asked now (all when none is named).
    #[command(after_help = "\
Exits 1 when a component is not healthy.

Examples:
  foundry component status
  foundry component status dns --output json")]
    Status(Names),
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    names: Names,
    /// Hand OpenBAO's root token over too, instead of revoking it once Foundry's own token
    /// is made (a quorum of unseal keys can always make a new one).
    #[arg(long)]
    keep_root_token: bool,
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
        ComponentCmd::Install(args) => {
            let keep = args.keep_root_token;
            install(args.names.components()?, keep, printer, config).await
        }
        ComponentCmd::Status(names) => status(names.components()?, printer, config).await,
    }
}

async fn install(
    components: Vec<Component>,
    keep_root_token: bool,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    let (home, selected) = super::existing(config)?;
    let stack = selected.load()?;
    // Every input is built first: a config that cannot place one component installs none.
    let inputs = components
        .iter()
        .map(|&c| {
            let mut input = component::install_input(&stack, home.root(), c)?;
            if c == Component::Openbao && keep_root_token {
                input["keep_root_token"] = serde_json::Value::Bool(true);
            }
            Ok((c, input))
        })
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
        let handed_files: Vec<std::path::PathBuf> = output
            .get("handover_files")
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
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
            hand_over(
                &component::handover_path(home.root(), &place.name),
                &handed_files,
                printer,
            );
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

/// OpenBAO's unseal keys (and root token, if kept), handed over one per private file: on
/// a terminal each is shown on its own and its file deleted once the person says it is
/// stored, before the next; else the files stay, and where they are is said.
fn hand_over(index: &Path, files: &[std::path::PathBuf], printer: &Printer) {
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
