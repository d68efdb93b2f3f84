use foundry_core::EventKind;

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render::{self, RunRow};

/// Show where a run stands.
///
/// With `--follow`, keep printing its events until it ends (the exit code then says how
/// it ended).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow status 0193ab12
  foundry workflow status 0193ab12 --follow
  foundry workflow status 0193ab12 --output json")]
pub struct Args {
    /// The run: its id, or a unique prefix of it.
    run: String,
    /// Follow the run's events until it ends.
    #[arg(long, short = 'f')]
    follow: bool,
}

fn print_view(
    printer: &Printer,
    view: &foundry_core::RunView,
    short: &str,
) -> Result<(), CliError> {
    let result = if printer.json() {
        printer.data(&RunRow::new(view))
    } else {
        render::status_lines(view, short)
            .iter()
            .try_for_each(|l| printer.line(l))
    };
    result.map_err(|_| CliError::quiet(exit::OK))
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, _) = super::engine(printer)?;
    let id = super::resolve(&engine, &args.run)?;
    let short = engine.short_id(id);
    if args.follow
        && let Ok((view, mut follow)) = engine.follow(id).await
    {
        print_view(printer, &view, &short)?;
        while let Some(event) = follow
            .next()
            .await
            .map_err(|e| CliError::new(e.to_string()))?
        {
            let quit = if printer.json() {
                printer.data(&event).is_err()
            } else {
                render::event_line(printer, &event, &short)
                    .is_some_and(|l| printer.line(&l).is_err())
            };
            if let EventKind::RunFinished { state, .. } = event.kind {
                return Ok(exit::for_state(state));
            }
            if quit {
                return Ok(exit::OK);
            }
        }
        // The driver went away without finishing: show where the run was left.
    }
    let view = engine.view(id).await?;
    print_view(printer, &view, &short)?;
    Ok(exit::OK)
}
