use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render::{self, RunRow};

/// List runs: those in progress, or all with `--all`.
///
/// Works while runs are being driven: a driven run is asked for its state over its
/// control socket.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow list
  foundry workflow list --all --output json")]
pub struct Args {
    /// Also list completed and cancelled runs.
    #[arg(long, short = 'a')]
    all: bool,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, _) = super::engine(printer)?;
    let runs = engine.list().await?;
    let ids: Vec<_> = runs.iter().map(|(id, _)| *id).collect();
    let shorts = foundry_core::model::unique_prefixes(&ids);
    let mut rows = Vec::new();
    let mut unreadable = 0;
    for ((id, view), short) in runs.into_iter().zip(shorts) {
        match view {
            Ok(view) => {
                if !args.all && view.state().is_finished() {
                    continue;
                }
                let row = RunRow::new(&view);
                if printer.json() {
                    if printer.data(&row).is_err() {
                        return Ok(exit::OK);
                    }
                } else {
                    rows.push(vec![
                        short.clone(),
                        row.workflow,
                        row.state,
                        format!("{}/{}", row.steps.done, row.steps.total),
                        row.current_step.unwrap_or_else(|| "-".into()),
                        render::ago(view.snapshot.meta.updated_at),
                    ]);
                }
            }
            Err(e) => {
                unreadable += 1;
                if printer.json() {
                    let obj = serde_json::json!({"run": id, "error": e.to_string()});
                    if printer.data(&obj).is_err() {
                        return Ok(exit::OK);
                    }
                } else {
                    rows.push(vec![
                        short.clone(),
                        "?".into(),
                        "unreadable".into(),
                        "-".into(),
                        "-".into(),
                        "-".into(),
                    ]);
                    printer.note(&format!("warning: {e}"));
                }
            }
        }
    }
    if !printer.json() {
        if rows.is_empty() {
            let more = if args.all {
                ""
            } else {
                " (`--all` shows finished ones)"
            };
            printer.note(&format!("no runs{more}"));
        } else {
            let _ = printer.table(
                &["RUN", "WORKFLOW", "STATE", "STEPS", "AT", "UPDATED"],
                &rows,
            );
        }
    }
    Ok(if unreadable > 0 {
        exit::ERROR
    } else {
        exit::OK
    })
}
