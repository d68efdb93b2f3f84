//! `foundry config`: write a new stack config, check one, show it, list them.

mod init;
mod list;
mod show;
mod validate;

use std::path::Path;

use clap::Subcommand;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    Init(init::Args),
    Validate(validate::Args),
    Show(show::Args),
    List(list::Args),
}

pub async fn run(cmd: ConfigCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        ConfigCmd::Init(args) => init::run(args, printer, config),
        ConfigCmd::Validate(args) => validate::run(args, printer, config).await,
        ConfigCmd::Show(args) => show::run(args, printer, config),
        ConfigCmd::List(args) => list::run(args, printer, config),
    }
}
