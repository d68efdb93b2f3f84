//! `foundry secret`: the stack's secrets in OpenBAO: set one, show one, list them.

mod get;
mod list;
mod recover;
mod set;

use std::path::Path;

use clap::Subcommand;
use foundry_workflows::secrets::{SecretsError, Vault};

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    Get(get::Args),
    Set(set::Args),
    List(list::Args),
    RecoverToken(recover::Args),
}

pub async fn run(cmd: SecretCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        SecretCmd::Get(args) => get::run(args, printer, config).await,
        SecretCmd::Set(args) => set::run(args, printer, config).await,
        SecretCmd::List(args) => list::run(args, printer, config).await,
        SecretCmd::RecoverToken(args) => recover::run(args, printer, config).await,
    }
}

impl From<SecretsError> for CliError {
    fn from(e: SecretsError) -> Self {
        let mut err = CliError::new(e.message);
        err.hint = e.hint;
        err
    }
}

/// OpenBAO of the stack config this command works on.
fn vault(config: Option<&Path>) -> Result<Vault, CliError> {
    let (home, selected) = crate::commands::existing(config)?;
    let stack = selected.load()?;
    Ok(Vault::of_stack(&stack, home.root())?)
}
