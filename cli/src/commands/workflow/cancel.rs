use foundry_core::{EngineError, EventKind};

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render;

/// Cancel a run: it stops at the next step boundary, then its undo steps run, newest first.
///
/// Works from any terminal while another process drives the run; a run nobody drives is
/// cancelled here.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow cancel 0193ab12
  foundry workflow cancel 0193ab12 --no-wait")]
pub struct Args {
    /// The run: its id, or a unique prefix of it.
    run: String,
    /// Ask the driving process to cancel and return at once.
    #[arg(long)]
    no_wait: bool,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, bar) = super::engine(printer)?;
    let id = super::resolve(&engine, &args.run)?;
    // Follow first, so the end of the run is not missed between the request and the follow.
    let follow = if args.no_wait {
        None
    } else {
        engine.follow(id).await.ok()
    };
    match engine.request_cancel(id).await {
        Ok(()) => {
            printer.note(&format!("cancel requested for run {id}"));
            let Some((_, mut follow)) = follow else {
                return Ok(exit::OK);
            };
            let short = engine.short_id(id);
            while let Some(event) = follow
                .next()
                .await
                .map_err(|e| CliError::new(e.to_string()))?
            {
                if !printer.json() {
                    if let Some(line) = render::event_line(printer, &event, &short) {
                        printer.note(&line);
                    }
                } else if printer.data(&event).is_err() {
                    return Ok(exit::OK);
                }
                if let EventKind::RunFinished { state, .. } = event.kind {
                    return Ok(exit::for_state(state));
                }
            }
            Ok(exit::OK)
        }
        Err(EngineError::Unreachable { .. }) => {
            // Nobody drives it: cancel it here, running its undo steps.
            let driver = engine.cancel_undriven(id).await?;
            crate::commands::drive::drive(driver, printer, bar)
                .await
                .map(|(code, _)| code)
        }
        Err(e) => Err(e.into()),
    }
}
