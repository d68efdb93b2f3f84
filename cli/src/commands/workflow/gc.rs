use std::time::Duration;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Forget runs that ended long ago: completed, cancelled, failed, paused or waiting runs
/// not touched for `--older-than`. Interrupted runs are kept: they can be resumed.
///
/// Also removes kept secrets no run will read again: those of a run that finished or
/// whose journal is gone (a run removes its own when it ends; a process killed at its end
/// leaves them behind).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow gc
  foundry workflow gc --older-than 1h
  foundry workflow gc --dry-run --output json")]
pub struct Args {
    /// Age past which an ended run is forgotten (`30m`, `12h`, `7days`).
    #[arg(long, default_value = "7days", value_parser = humantime::parse_duration)]
    older_than: Duration,
    /// Say what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, _) = super::engine(printer)?;
    let collected = engine.gc(args.older_than, args.dry_run)?;
    if printer.json() {
        let runs = collected
            .runs
            .iter()
            .map(|id| serde_json::json!({"removed": id, "dry_run": args.dry_run}));
        let secrets = collected.secrets.iter().map(|path| {
            serde_json::json!({"removed_secrets": path.display().to_string(), "dry_run": args.dry_run})
        });
        for line in runs.chain(secrets) {
            if printer.data(&line).is_err() {
                break;
            }
        }
    } else {
        let verb = if args.dry_run {
            "would remove"
        } else {
            "removed"
        };
        let _ = printer.line(&format!("{verb} {} run(s)", collected.runs.len()));
        let _ = printer.line(&format!(
            "{verb} {} kept secret(s) no run will read again",
            collected.secrets.len()
        ));
        for path in &collected.secrets {
            let _ = printer.line(&format!("  {}", path.display()));
        }
    }
    Ok(exit::OK)
}
