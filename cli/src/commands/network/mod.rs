//! `foundry network`: the hosts' network as they report it, the addresses the stack needs
//! planned from that into the config, and checked live.

mod detect_macs;
mod plan;
mod validate;

use std::path::Path;

use clap::Subcommand;
use foundry_workflows::network::NetworkError;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum NetworkCmd {
    Plan(plan::Args),
    DetectMacs(detect_macs::Args),
    Validate(validate::Args),
}

pub async fn run(
    cmd: NetworkCmd,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    match cmd {
        NetworkCmd::Plan(args) => plan::run(args, printer, config).await,
        NetworkCmd::DetectMacs(args) => detect_macs::run(args, printer, config).await,
        NetworkCmd::Validate(args) => validate::run(args, printer, config).await,
    }
}

impl From<NetworkError> for CliError {
    fn from(e: NetworkError) -> Self {
        let mut err = CliError::new(e.message);
        err.hint = e.hint;
        err
    }
}

/// The stack config, which must exist, read as the `network` commands read it.
fn load(
    config: Option<&Path>,
) -> Result<
    (
        std::path::PathBuf,
        foundry_workflows::config::StackConfig,
        Option<String>,
    ),
    CliError,
> {
    let (_, selected) = crate::commands::existing(config)?;
    let (stack, refused) = foundry_workflows::network::load(&selected.path)?;
    if stack.hosts.is_empty() {
        return Err(
            CliError::new(format!("no hosts in {}", selected.path.display()))
                .with_hint("`foundry host add NAME --address A` adds one"),
        );
    }
    Ok((selected.path, stack, refused))
}
