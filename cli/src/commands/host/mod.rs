//! `foundry host`: add hosts, configure them, list them live, open a shell on one.

mod add;
mod configure;
pub(crate) mod keys;
mod list;
mod ssh;

use std::path::Path;

use clap::Subcommand;
use foundry_workflows::config::ConfigError;
use foundry_workflows::host::HostError;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    Add(add::Args),
    Configure(configure::Args),
    List(list::Args),
    /// Where the hosts' login keys are kept: move Foundry's own into OpenBAO.
    #[command(subcommand)]
    Keys(keys::KeysCmd),
    Ssh(ssh::Args),
}

pub async fn run(cmd: HostCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        HostCmd::Add(args) => add::run(args, printer, config).await,
        HostCmd::Configure(args) => configure::run(args, printer, config).await,
        HostCmd::List(args) => list::run(args, printer, config).await,
        HostCmd::Keys(cmd) => keys::run(cmd, printer, config).await,
        HostCmd::Ssh(args) => ssh::run(args, config).await,
    }
}

impl From<HostError> for CliError {
    fn from(e: HostError) -> Self {
        let mut err = CliError::new(e.message);
        err.hint = e.hint;
        err
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        HostError::from(e).into()
    }
}
