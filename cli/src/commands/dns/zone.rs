use std::path::Path;

use clap::Subcommand;
use foundry_workflows::dns::ZoneInput;

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum ZoneCmd {
    /// Every zone on the servers: kind, whether the external server holds it, serial, records.
    #[command(after_help = "\
Examples:
  foundry dns zone list
  foundry dns zone list --output json")]
    List,
    /// Create a zone; nothing changes when it is there already.
    ///
    /// A private zone is made on the internal server only. A public zone is made on both:
    /// outside, each of its names is a CNAME to --public-cname. A .local zone is always
    /// private.
    #[command(after_help = "\
Zones the stack config declares are reconciled by `foundry component install dns`,
which never deletes a zone: one made here and not in the config is kept. The
recursor sends the config's zones to the internal server, and other names to the
config's forwarders (to the internal server when there are none).

Examples:
  foundry dns zone create apps.lab.local
  foundry dns zone create apps.example.com --public --public-cname home.example.com")]
    Create(CreateArgs),
    /// Delete a zone and all its records from both servers.
    #[command(after_help = "\
Asks first on a terminal; without one, --yes is needed. Deleting a zone that is not
there is no error. A zone the stack config declares comes back with the next
`foundry component install dns`.

Examples:
  foundry dns zone delete apps.lab.local
  foundry dns zone delete apps.example.com --yes")]
    Delete(DeleteArgs),
}

#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// The zone's name, `apps.example.com`.
    zone: String,
    /// Also serve it from the external server, each name a CNAME to --public-cname.
    #[arg(long)]
    public: bool,
    /// The name a public zone's names point to from outside (your public address's name).
    #[arg(long, value_name = "NAME", requires = "public")]
    public_cname: Option<String>,
    /// The apex's NS records (repeat for several); default `ns1.<zone>`.
    #[arg(long = "nameserver", value_name = "NS")]
    nameservers: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// The zone's name, `apps.example.com`.
    zone: String,
    /// Delete without asking.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(cmd: ZoneCmd, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    match cmd {
        ZoneCmd::List => list(printer, config).await,
        ZoneCmd::Create(args) => create(args, printer, config).await,
        ZoneCmd::Delete(args) => delete(args, printer, config).await,
    }
}

async fn list(printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let zones = super::servers(config).await?.zones().await?;
    if printer.json() {
        let _ = printer.data_each(&zones);
        return Ok(exit::OK);
    }
    if zones.is_empty() {
        printer.note("no zones on the DNS servers");
        return Ok(exit::OK);
    }
    let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
    let rows: Vec<Vec<String>> = zones
        .iter()
        .map(|z| {
            vec![
                z.zone.clone(),
                z.kind.to_string(),
                yes(z.internal),
                yes(z.external),
                z.serial.to_string(),
                z.records.to_string(),
                z.public_cname.clone().unwrap_or_else(|| "-".into()),
                yes(z.in_config),
            ]
        })
        .collect();
    let _ = printer.table(
        &[
            "ZONE",
            "KIND",
            "INTERNAL",
            "EXTERNAL",
            "SERIAL",
            "RECORDS",
            "PUBLIC NAME",
            "CONFIG",
        ],
        &rows,
    );
    Ok(exit::OK)
}

async fn create(
    args: CreateArgs,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    let zone = ZoneInput {
        name: args.zone,
        public: args.public,
        public_cname: args.public_cname,
        nameservers: args.nameservers,
        records: Vec::new(),
    };
    let done = super::servers(config).await?.create_zone(&zone).await?;
    if printer.json() {
        let _ = printer.data(&done);
    } else {
        let kind = match &done.public_cname {
            Some(cname) => format!("public, its names pointing to {cname} from outside"),
            None => "private".to_string(),
        };
        let said = match (done.created, done.changes.is_empty()) {
            (true, _) => format!("created ({kind})"),
            (false, true) => format!("already there, unchanged ({kind})"),
            (false, false) => format!("already there ({kind}); {}", done.changes.join(", ")),
        };
        let _ = printer.line(&format!("zone {}: {said}", done.zone));
        for note in &done.notes {
            printer.note(&format!("note: {note}"));
        }
    }
    Ok(exit::OK)
}

async fn delete(
    args: DeleteArgs,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    if !args.yes {
        if !crate::commands::interactive() {
            return Err(CliError::new(format!(
                "deleting zone {} needs a confirmation, and there is no terminal to ask on",
                args.zone
            ))
            .with_hint("add --yes to delete it"));
        }
        let sure = dialoguer::Confirm::new()
            .with_prompt(format!(
                "Delete zone {} and all its records from both DNS servers?",
                args.zone
            ))
            .default(false)
            .interact()
            .map_err(|e| CliError::new(format!("reading the answer: {e}")))?;
        if !sure {
            printer.note("nothing deleted");
            return Ok(exit::OK);
        }
    }
    let done = super::servers(config)
        .await?
        .delete_zone(&args.zone)
        .await?;
    if printer.json() {
        let _ = printer.data(&done);
    } else if done.deleted.is_empty() {
        let _ = printer.line(&format!("zone {}: not there, nothing deleted", done.zone));
    } else {
        let _ = printer.line(&format!(
            "zone {}: deleted ({})",
            done.zone,
            done.deleted.join(", ")
        ));
    }
    if done.in_config && !printer.json() {
        printer.note(&format!(
            "note: the stack config declares {}: `foundry component install dns` makes it again",
            done.zone
        ));
    }
    Ok(exit::OK)
}
