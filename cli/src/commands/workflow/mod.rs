//! `foundry workflow`: one file per verb.

mod cancel;
mod drive;
mod gc;
mod list;
mod resume;
mod show;
mod start;
mod status;

use std::sync::Arc;

use clap::Subcommand;
use foundry_core::{Engine, Home, RunId};
use indicatif::ProgressBar;

use crate::exit::CliError;
use crate::printer::Printer;
use crate::prompt::TerminalInput;

#[derive(Debug, Subcommand)]
pub enum WorkflowCmd {
    Start(start::Args),
    List(list::Args),
    Status(status::Args),
    Show(show::Args),
    Resume(resume::Args),
    Cancel(cancel::Args),
    Gc(gc::Args),
}

pub async fn run(cmd: WorkflowCmd, printer: &Printer) -> Result<u8, CliError> {
    match cmd {
        WorkflowCmd::Start(args) => start::run(args, printer).await,
        WorkflowCmd::List(args) => list::run(args, printer).await,
        WorkflowCmd::Status(args) => status::run(args, printer).await,
        WorkflowCmd::Show(args) => show::run(args, printer).await,
        WorkflowCmd::Resume(args) => resume::run(args, printer).await,
        WorkflowCmd::Cancel(args) => cancel::run(args, printer).await,
        WorkflowCmd::Gc(args) => gc::run(args, printer).await,
    }
}

/// The engine of this user's Foundry home, with a progress line when a person watches.
pub(crate) fn engine(printer: &Printer) -> Result<(Engine, Option<ProgressBar>), CliError> {
    let home = Home::from_env()?;
    let bar = (!printer.json() && printer.stderr_tty).then(ProgressBar::new_spinner);
    let input = Arc::new(TerminalInput::new(bar.clone()));
    Ok((Engine::new(home, foundry_workflows::registry(), input), bar))
}

/// The run named by a full id or a unique prefix of one.
pub(crate) fn resolve(engine: &Engine, run: &str) -> Result<RunId, CliError> {
    Ok(engine.resolve(run)?)
}
