//! `foundry host keys move`: the keys Foundry made move from $FOUNDRY_HOME/keys into OpenBAO.

use std::path::Path;

use foundry_core::Workflow;
use foundry_workflows::config::StackConfig;
use foundry_workflows::keys::{KeysMove, MoveOutput, move_plan};

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCmd {
    Move(MoveArgs),
}

/// Move the hosts' login keys that Foundry made into OpenBAO.
///
/// Each key Foundry made and keeps in $FOUNDRY_HOME/keys/<host> is written to the stack's
/// OpenBAO at foundry/ssh-keys/<host> (key private_key), the host's `key:` in the stack
/// config becomes `${secret:foundry/ssh-keys/<host>:private_key}`, and the file is
/// removed: three journaled steps per host, in that order, so an interrupted move is
/// finished by `foundry workflow resume`. A different key already in OpenBAO is never
/// overwritten. A key file you gave (your own, a lab's shared key) stays where it is.
/// `foundry component install openbao` runs this by itself. Run again, it changes nothing.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry host keys move
  foundry host keys move web-1 web-2 --output json")]
pub struct MoveArgs {
    /// The hosts whose keys move, by name; every host when none is given.
    #[arg(value_name = "HOST")]
    names: Vec<String>,
}

pub async fn run(cmd: KeysCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        KeysCmd::Move(args) => {
            let (home, selected) = crate::commands::existing(config)?;
            let stack = selected.load()?;
            move_keys(
                &stack,
                &selected.path,
                home.root(),
                &args.names,
                None,
                printer,
            )
            .await
        }
    }
}

/// Moves the keys Foundry made for `names` (all when none) into OpenBAO, as one run, and
/// says where each host's key is. With `announce`, only when some key moves, saying so.
pub async fn move_keys(
    stack: &StackConfig,
    config_path: &Path,
    home: &Path,
    names: &[String],
    announce: Option<&str>,
    printer: &Printer,
) -> Result<u8, CliError> {
    let plan = move_plan(stack, config_path, home, names)?;
    if let Some(announce) = announce {
        if plan.input.is_none() {
            return Ok(exit::OK);
        }
        printer.note(announce);
    }
    let mut code = exit::OK;
    let mut moved = MoveOutput { hosts: Vec::new() };
    if let Some(input) = plan.input {
        let input = serde_json::to_value(&input)
            .map_err(|e| CliError::new(format!("the run's input: {e}")))?;
        let (engine, bar) = crate::commands::engine(printer)?;
        let driver = engine.start(<KeysMove as Workflow>::NAME, input)?;
        let (driven, output) = crate::commands::drive::drive(driver, printer, bar).await?;
        code = driven;
        if let Some(output) = output {
            moved = serde_json::from_value(output)
                .map_err(|e| CliError::new(format!("unexpected output of the move: {e}")))?;
        }
    }
    for host in &moved.hosts {
        let note = if host.changed {
            "moved"
        } else {
            "in OpenBAO already"
        };
        if printer.json() {
            let _ = printer.data(&serde_json::json!({
                "host": host.host,
                "key": format!("openbao {}", host.path),
                "moved": host.changed,
                "note": note,
            }));
        } else {
            let _ = printer.line(&format!("{}: key {note}: openbao {}", host.host, host.path));
        }
    }
    for host in &plan.left {
        if printer.json() {
            let _ = printer.data(&serde_json::json!({
                "host": host.host,
                "key": host.key,
                "moved": false,
                "note": host.reason,
            }));
        } else {
            let _ = printer.line(&format!("{}: key {}: {}", host.host, host.reason, host.key));
        }
    }
    Ok(code)
}
