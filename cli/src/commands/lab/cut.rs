use crate::exit::{self, CliError};
use crate::printer::Printer;

/// The host to cut off or restore.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry lab cut host-2
  foundry lab restore host-2")]
pub struct Args {
    /// The host (`host-1`, …).
    host: String,
    /// The lab's name.
    #[arg(long, default_value = "default")]
    name: String,
}

fn done(printer: &Printer, what: &str, host: &str, lab: &str) -> u8 {
    if printer.json() {
        let _ = printer.data(&serde_json::json!({"lab": lab, "host": host, what: true}));
    } else {
        printer.note(&format!("{host} of lab {lab}: {what}"));
    }
    exit::OK
}

pub async fn cut(args: Args, printer: &Printer) -> Result<u8, CliError> {
    super::require_engine()?;
    foundry_workflows::lab::cut(&args.name, &args.host)
        .await
        .map_err(|e| CliError::new(e.message))?;
    Ok(done(printer, "cut", &args.host, &args.name))
}

pub async fn restore(args: Args, printer: &Printer) -> Result<u8, CliError> {
    super::require_engine()?;
    foundry_workflows::lab::restore(&args.name, &args.host)
        .await
        .map_err(|e| CliError::new(e.message))?;
    Ok(done(printer, "restored", &args.host, &args.name))
}
