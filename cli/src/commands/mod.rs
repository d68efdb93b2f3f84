//! One module per noun, one file per verb.

pub mod drive;
pub mod host;
pub mod lab;
pub mod openbao;
pub mod workflow;

use std::sync::Arc;

use foundry_core::{Engine, Home};
use indicatif::ProgressBar;

use crate::exit::CliError;
use crate::printer::Printer;
use crate::prompt::TerminalInput;

/// The engine of this user's Foundry home, with a progress line when a person watches.
pub(crate) fn engine(printer: &Printer) -> Result<(Engine, Option<ProgressBar>), CliError> {
    let home = Home::from_env()?;
    let bar = (!printer.json() && printer.stderr_tty).then(ProgressBar::new_spinner);
    let input = Arc::new(TerminalInput::new(bar.clone()));
    Ok((Engine::new(home, foundry_workflows::registry(), input), bar))
}
