use std::path::Path;
use std::time::Duration;

use foundry_workflows::network::Status;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Check the network: every address set, the VIP unique and unused, no static address in
/// the DHCP range, every host reachable, DNS answering.
///
/// One line per check, pass or fail, saying what it looked at and where: `required` (the
/// gateway, subnet, DHCP range, VIP and the hosts of OpenBAO, DNS and the registry are
/// set), `config` (the config's own checks), `vip-unique` (no host, service or the gateway
/// has the VIP), `static-outside-dhcp`, `reachable` (each host over SSH), `vip-unused`
/// (nothing answers at the VIP: ARP, and ping where installed, from a host that answered)
/// and `dns` (the DNS server the config places answers each infrastructure zone's SOA;
/// skipped while nothing answers DNS there, before PowerDNS is installed).
///
/// Exits 1 when a check fails.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry network validate
  foundry network validate --output json")]
pub struct Args {
    /// How long one host may take to answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (_, stack, refused) = super::load(config)?;
    let checks =
        foundry_workflows::network::validate(&stack, refused.as_deref(), args.timeout).await;
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    if printer.json() {
        let _ = printer.data_each(&checks);
    } else {
        // Lines rather than a table: a check's detail is never cut.
        let width = checks.iter().map(|c| c.check.len()).max().unwrap_or(0);
        for c in &checks {
            let status = match c.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            let line = format!(
                "{status}  {:<width$}  {}: {}",
                c.check,
                c.subject,
                crate::printer::sanitized(&c.detail)
            );
            if printer.line(&line).is_err() {
                return Ok(exit::OK);
            }
        }
        let mut hints: Vec<&str> = checks
            .iter()
            .filter(|c| c.status != Status::Pass)
            .filter_map(|c| c.hint.as_deref())
            .collect();
        hints.dedup();
        for hint in hints {
            printer.note(&format!("{} {hint}", printer.paint("hint:", "1;36")));
        }
    }
    if failed == 0 {
        return Ok(exit::OK);
    }
    printer.note(&format!("{failed} of {} checks failed", checks.len()));
    Ok(exit::ERROR)
}
