use std::path::Path;
use std::time::Duration;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// List the hosts of the stack config, each asked live: reachable, and its SSH latency.
///
/// KEY says where the host's login key is kept: `file PATH`, or `openbao PATH` once
/// Foundry's own keys moved into OpenBAO (`foundry host keys move`).
///
/// Every host is asked at once (a bounded number at a time), each within --timeout: it
/// logs in with the host's key, checking its host key, and runs one command.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry host list
  foundry host list --timeout 2s --output json")]
pub struct Args {
    /// How long one host may take to answer.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (_, selected) = crate::commands::existing(config)?;
    let stack = selected.load()?;
    let hosts = foundry_workflows::host::status(&stack, args.timeout).await;
    if printer.json() {
        let _ = printer.data_each(&hosts);
        return Ok(exit::OK);
    }
    if hosts.is_empty() {
        printer.note(&format!(
            "no hosts in {} (`foundry host add` adds one)",
            selected.path.display()
        ));
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.host.clone(),
                format!("{}@{}:{}", h.user, h.address, h.port),
                h.key.clone(),
                if h.reachable { "yes" } else { "no" }.into(),
                h.latency_ms
                    .map(|ms| format!("{ms}ms"))
                    .unwrap_or_else(|| "-".into()),
                h.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let _ = printer.table(
        &["HOST", "LOGIN", "KEY", "REACHABLE", "LATENCY", "ERROR"],
        &rows,
    );
    Ok(exit::OK)
}
