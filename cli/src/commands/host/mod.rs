//! `foundry host`: add hosts, configure them, list them live, open a shell on one.

mod add;
mod configure;
mod list;
mod ssh;

use std::path::Path;

use clap::Subcommand;
use foundry_core::Home;
use foundry_workflows::config::{ConfigError, Selected};
use foundry_workflows::host::HostError;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    Add(add::Args),
    Configure(configure::Args),
    List(list::Args),
    Ssh(ssh::Args),
}

pub async fn run(cmd: HostCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        HostCmd::Add(args) => add::run(args, printer, config).await,
        HostCmd::Configure(args) => configure::run(args, printer, config).await,
        HostCmd::List(args) => list::run(args, printer, config).await,
        HostCmd::Ssh(args) => ssh::run(args, config),
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

/// The stack config this command works on (`--config`, `FOUNDRY_CONFIG`, or the only one
/// in the home), and the home.
fn select(flag: Option<&Path>) -> Result<(Home, Selected), CliError> {
    let home = Home::from_env()?;
    let selected = foundry_workflows::config::select(flag, home.root())?;
    Ok((home, selected))
}

/// The config, which must exist already.
fn existing(flag: Option<&Path>) -> Result<(Home, Selected), CliError> {
    let (home, selected) = select(flag)?;
    if !selected.exists {
        let err: CliError = match flag {
            Some(path) => ConfigError::Read {
                path: path.to_path_buf(),
                detail: "no such file".into(),
            }
            .into(),
            None if std::env::var_os(foundry_workflows::config::CONFIG_ENV).is_some() => {
                ConfigError::Read {
                    path: selected.path.clone(),
                    detail: "no such file".into(),
                }
                .into()
            }
            None => ConfigError::Missing {
                dir: home.root().to_path_buf(),
            }
            .into(),
        };
        return Err(err);
    }
    Ok((home, selected))
}

/// A person can answer questions on this terminal.
fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}
