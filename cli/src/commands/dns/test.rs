use std::path::Path;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Ask the internal server, the external server and the recursor for a name, side by side.
///
/// Each is asked directly over DNS (UDP port 53; 2 s, 2 tries); beside each answer is the
/// zone that answers for the name on that server.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
A public name answers with its address inside and a CNAME outside; a .local name is
not answered outside (REFUSED). Exits 1 when no server answers.

Examples:
  foundry dns test web.apps.example.com
  foundry dns test apps.lab.local --type SOA --output json")]
pub struct Args {
    /// The name to ask for.
    name: String,
    /// The record type to ask for.
    #[arg(long = "type", short = 't', value_name = "TYPE", default_value = "A")]
    rtype: String,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let found = super::servers(config)
        .await?
        .lookup(&args.name, &args.rtype)
        .await?;
    if printer.json() {
        let _ = printer.data_each(&found);
    } else {
        let rows: Vec<Vec<String>> = found
            .iter()
            .map(|l| {
                let answer = if l.answers.is_empty() {
                    l.error.clone().unwrap_or_else(|| "-".into())
                } else {
                    l.answers
                        .iter()
                        .map(|a| format!("{} {}", a.rtype, a.value))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                vec![
                    l.server.to_string(),
                    l.address.to_string(),
                    l.zone.clone().unwrap_or_else(|| "-".into()),
                    l.status.clone(),
                    answer,
                ]
            })
            .collect();
        let _ = printer.table(&["SERVER", "ADDRESS", "ZONE", "STATUS", "ANSWER"], &rows);
    }
    if found.iter().any(|l| l.answered()) {
        return Ok(exit::OK);
    }
    Err(
        CliError::new(format!("no DNS server answered for {}", args.name)).with_hint(
            "`foundry component status dns` shows whether the servers run; \
         this machine must reach their network",
        ),
    )
}
