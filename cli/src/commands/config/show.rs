use std::path::Path;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Print the stack config as Foundry reads it, secrets as references.
///
/// Defaults are filled in. Secrets appear only as the references written in the file
/// (`${secret:path:key}`), never resolved.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry config show
  foundry config show --output json")]
pub struct Args {}

pub fn run(_: Args, printer: &Printer, flag: Option<&Path>) -> Result<u8, CliError> {
    let (_, selected) = crate::commands::existing(flag)?;
    let stack = selected.load()?;
    if printer.json() {
        let _ = printer.data(&stack);
        return Ok(exit::OK);
    }
    let text = foundry_workflows::config::render(&stack, &selected.path.display().to_string())
        .map_err(CliError::new)?;
    let _ = printer.line(text.trim_end());
    Ok(exit::OK)
}
