use std::path::Path;

use clap::Subcommand;
use foundry_workflows::dns::manage::RecordChange;

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum RecordCmd {
    /// Set a name's records of one type to exactly these values.
    ///
    /// The values replace the ones there (as PowerDNS's REPLACE does); nothing is sent
    /// when they are the same. In a public zone, the external server gets the name's
    /// CNAME to the zone's public name.
    #[command(after_help = "\
NAME is relative to --zone, or fully qualified; without --zone, the zone is the
longest one on the internal server that holds NAME.

Examples:
  foundry dns record add web.apps.lab.local A 10.0.0.5
  foundry dns record add web A 10.0.0.5 10.0.0.6 --zone apps.lab.local --ttl 60
  foundry dns record add @ TXT '\"v=spf1 -all\"' --zone apps.example.com")]
    Add(AddArgs),
    /// The records of a zone (every zone when none is given), as each server holds them.
    #[command(after_help = "\
A public zone's records are shown twice: the internal server's, and the external
server's CNAMEs.

Examples:
  foundry dns record list apps.lab.local
  foundry dns record list --output json")]
    List(ListArgs),
    /// Delete a name's records of one type.
    #[command(after_help = "\
In a public zone, the external server's CNAME for the name goes too once the name has
no record left inside. Deleting what is not there is no error.

Examples:
  foundry dns record delete web.apps.lab.local A
  foundry dns record delete web A --zone apps.lab.local")]
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// `web` (relative to --zone), `@` (the zone itself), or `web.apps.lab.local`.
    name: String,
    /// A, AAAA, CNAME, TXT, MX, SRV, …
    #[arg(value_name = "TYPE")]
    rtype: String,
    /// The records' values, as PowerDNS writes them (TXT in quotes); after `--` when one
    /// starts with `-`.
    #[arg(value_name = "VALUE", required = true)]
    values: Vec<String>,
    /// The zone (default: the longest zone on the internal server that holds NAME).
    #[arg(long)]
    zone: Option<String>,
    /// Seconds (default: the records' TTL when they exist, else 300).
    #[arg(long)]
    ttl: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Every zone when not given.
    zone: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// `web` (relative to --zone), `@` (the zone itself), or `web.apps.lab.local`.
    name: String,
    /// A, AAAA, CNAME, TXT, MX, SRV, …
    #[arg(value_name = "TYPE")]
    rtype: String,
    /// The zone (default: the longest zone on the internal server that holds NAME).
    #[arg(long)]
    zone: Option<String>,
}

pub async fn run(cmd: RecordCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        RecordCmd::Add(args) => add(args, printer, config).await,
        RecordCmd::List(args) => list(args, printer, config).await,
        RecordCmd::Delete(args) => delete(args, printer, config).await,
    }
}

async fn add(args: AddArgs, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let change = RecordChange {
        name: args.name,
        rtype: args.rtype,
        values: args.values,
        zone: args.zone,
        ttl: args.ttl,
    };
    let done = super::servers(config).await?.set_records(&change).await?;
    if printer.json() {
        let _ = printer.data(&done);
        return Ok(exit::OK);
    }
    let outside = done
        .external
        .as_ref()
        .map(|e| format!("; outside: CNAME {} {}", e.cname, e.outcome.as_str()))
        .unwrap_or_default();
    let _ = printer.line(&format!(
        "{} {}: {}{outside}",
        done.name,
        done.rtype,
        done.outcome.as_str()
    ));
    Ok(exit::OK)
}

async fn list(args: ListArgs, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let rrsets = super::servers(config)
        .await?
        .records(args.zone.as_deref())
        .await?;
    if printer.json() {
        let _ = printer.data_each(&rrsets);
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = rrsets
        .iter()
        .map(|r| {
            vec![
                r.zone.clone(),
                r.server.to_string(),
                r.name.clone(),
                r.rtype.clone(),
                r.ttl.to_string(),
                r.values.join(", "),
            ]
        })
        .collect();
    let _ = printer.table(&["ZONE", "SERVER", "NAME", "TYPE", "TTL", "VALUES"], &rows);
    Ok(exit::OK)
}

async fn delete(
    args: DeleteArgs,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    let done = super::servers(config)
        .await?
        .delete_records(&args.name, &args.rtype, args.zone.as_deref())
        .await?;
    if printer.json() {
        let _ = printer.data(&done);
    } else if done.deleted.is_empty() {
        let _ = printer.line(&format!(
            "{} {}: not there, nothing deleted",
            done.name, done.rtype
        ));
    } else {
        let _ = printer.line(&format!(
            "{} {}: deleted ({})",
            done.name,
            done.rtype,
            done.deleted.join(", ")
        ));
    }
    Ok(exit::OK)
}
