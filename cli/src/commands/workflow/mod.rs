//! `foundry workflow`: one file per verb.

mod cancel;
mod gc;
mod list;
mod resume;
mod show;
mod start;
mod status;

use clap::Subcommand;

use foundry_core::{Engine, RunId};
pub(crate) use start::read_input;

use crate::exit::CliError;
use crate::printer::Printer;

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

pub(crate) use super::engine;

/// The run named by a full id or a unique prefix of one.
pub(crate) fn resolve(engine: &Engine, run: &str) -> Result<RunId, CliError> {
    Ok(engine.resolve(run)?)
}
