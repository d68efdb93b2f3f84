//! `foundry dns`: the stack's DNS servers, worked on directly: zones, records, and what
//! each server answers for a name.

mod record;
mod test;
mod zone;

use std::path::Path;

use clap::Subcommand;
use foundry_workflows::dns::manage::DnsServers;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum DnsCmd {
    /// Zones on the stack's DNS servers: list, create, delete.
    #[command(subcommand)]
    Zone(zone::ZoneCmd),
    /// Records in the zones, one name and type (an rrset) at a time: add, list, delete.
    #[command(subcommand)]
    Record(record::RecordCmd),
    /// Ask the internal server, the external server and the recursor for a name, side by side.
    Test(test::Args),
}

pub async fn run(cmd: DnsCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        DnsCmd::Zone(cmd) => zone::run(cmd, printer, config).await,
        DnsCmd::Record(cmd) => record::run(cmd, printer, config).await,
        DnsCmd::Test(args) => test::run(args, printer, config).await,
    }
}

/// The DNS servers of the stack config this command works on, with their API key.
async fn servers(config: Option<&Path>) -> Result<DnsServers, CliError> {
    let (_, selected) = crate::commands::existing(config)?;
    let stack = selected.load()?;
    Ok(DnsServers::of_stack(&stack).await?)
}
