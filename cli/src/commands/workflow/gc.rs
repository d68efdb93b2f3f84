use std::time::Duration;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Forget runs that ended long ago: completed, cancelled, failed, paused or waiting runs
/// not touched for `--older-than`. Interrupted runs are kept: they can be resumed.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow gc
  foundry workflow gc --older-than 1h")]
pub struct Args {
    /// Age past which an ended run is forgotten (`30m`, `12h`, `7days`).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    older_than: Duration,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, _) = super::engine(printer)?;
    let removed = engine.gc(args.older_than)?;
    if printer.json() {
        for id in &removed {
            if printer.data(&serde_json::json!({"removed": id})).is_err() {
                break;
            }
        }
    } else {
        let _ = printer.line(&format!("removed {} run(s)", removed.len()));
    }
    Ok(exit::OK)
}
