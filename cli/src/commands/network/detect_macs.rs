use std::path::Path;
use std::time::Duration;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Each host's primary interface, MAC and address, asked over SSH: the table for DHCP
/// reservations.
///
/// The primary interface is the one with the default route. Beside its MAC and its IPv4
/// address now is the address the stack config gives the host: reserve that address for
/// that MAC in your router's DHCP server. Read with iproute2 (`ip -j`), which `foundry host
/// configure` installs.
///
/// Every host is asked at once (a bounded number at a time), each within --timeout. A host
/// that cannot be asked is a row with its error, and the command then exits 1.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry network detect-macs
  foundry network detect-macs --timeout 3s --output json")]
pub struct Args {
    /// How long one host may take to answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (_, stack, _) = super::load(config)?;
    let hosts = foundry_workflows::network::detect(&stack, args.timeout).await;
    let failed = hosts.iter().filter(|h| h.error.is_some()).count();
    if printer.json() {
        let _ = printer.data_each(&hosts);
    } else {
        let dash = || "-".to_string();
        let rows: Vec<Vec<String>> = hosts
            .iter()
            .map(|h| {
                vec![
                    h.host.clone(),
                    h.interface.clone().unwrap_or_else(dash),
                    h.mac.clone().unwrap_or_else(dash),
                    h.current().unwrap_or_else(dash),
                    h.desired_address.clone(),
                    h.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let _ = printer.table(
            &[
                "HOST",
                "INTERFACE",
                "MAC",
                "CURRENT ADDRESS",
                "DESIRED ADDRESS",
                "ERROR",
            ],
            &rows,
        );
    }
    if failed == 0 {
        return Ok(exit::OK);
    }
    printer.note(&format!(
        "{failed} of {} hosts could not be asked",
        hosts.len()
    ));
    Ok(exit::ERROR)
}
