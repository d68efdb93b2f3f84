use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Move the unfinished runs (their steps and retry schedules) from the journal in use
/// (`FOUNDRY_JOURNAL`, else the home's files) to another, to resume them there.
///
/// A run a live process drives is left where it is. Each run is removed from the source
/// only once the target has committed it; finished runs stay.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry journal migrate --to postgres://team@127.0.0.1:5432/foundry
  FOUNDRY_JOURNAL=postgres://team@127.0.0.1:5432/foundry foundry journal migrate --to redb")]
pub struct Args {
    /// Where to: `redb` (this home's files) or a `postgres://user@host:port/database` URL
    /// (its password in ~/.pgpass, never in the URL).
    #[arg(long, value_name = "JOURNAL")]
    to: String,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, _) = super::super::engine(printer)?;
    let target = foundry_core::engine::journal_store_named(&args.to, engine.home());
    let done = engine.migrate(target).await?;
    if printer.json() {
        let moved = done
            .moved
            .iter()
            .map(|run| serde_json::json!({"run": run, "moved": true}));
        let driven = done
            .driven
            .iter()
            .map(|(run, lease)| serde_json::json!({"run": run, "moved": false, "driver": lease}));
        for line in moved.chain(driven) {
            if printer.data(&line).is_err() {
                break;
            }
        }
    } else {
        let _ = printer.line(&format!("moved {} unfinished run(s)", done.moved.len()));
        for run in &done.moved {
            let _ = printer.line(&format!("  {run}"));
        }
        for (run, lease) in &done.driven {
            let by = lease
                .as_ref()
                .map_or_else(|| "another process".to_string(), ToString::to_string);
            let _ = printer.line(&format!("left {run}: driven by {by}"));
        }
    }
    if done.driven.is_empty() {
        Ok(exit::OK)
    } else {
        let mut err = CliError::new(format!(
            "{} run(s) driven by a live process were left where they are",
            done.driven.len()
        ))
        .with_hint("run `foundry journal migrate` again once they stop (or finish)");
        err.code = exit::RUN_DRIVEN_ELSEWHERE;
        Err(err)
    }
}
