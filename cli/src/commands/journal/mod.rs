//! `foundry journal`: one file per verb.

mod migrate;

use clap::Subcommand;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum JournalCmd {
    Migrate(migrate::Args),
}

pub async fn run(cmd: JournalCmd, printer: &Printer) -> Result<u8, CliError> {
    match cmd {
        JournalCmd::Migrate(args) => migrate::run(args, printer).await,
    }
}
