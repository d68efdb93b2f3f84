use foundry_core::control;
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
    let socket = engine.home().socket_path(id);
    // Follow first, so the end of the run is not missed between the request and the follow.
    // A driver that does not answer within the bound is stopped or stuck: asking it again
    // would only wait as long once more, so the cancel is left on its socket instead.
    let follow = if args.no_wait {
        None
    } else {
        match control::follow(&socket).await {
            Ok(follow) => Some(follow),
            Err(e) if e.timed_out => return Err(unanswered(id, &socket, e).await),
            Err(_) => None,
        }
    };
    match control::cancel(&socket).await {
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
        // The request was written and is left there: the driver reads it if it wakes.
        Err(e) if e.timed_out => Err(EngineError::Unreachable {
            run: id,
            detail: format!("{}; the cancel waits on its socket", e.detail),
        }
        .into()),
        Err(_) => {
            // Nobody drives it: cancel it here, running its undo steps.
            let driver = engine.cancel_undriven(id).await?;
            crate::commands::drive::drive(driver, printer, bar)
                .await
                .map(|(code, _)| code)
        }
    }
}

/// The error for a driver that did not answer: the cancel is written to its socket
/// without waiting for an answer again, so it takes effect if the driver wakes up.
async fn unanswered(
    run: foundry_core::RunId,
    socket: &std::path::Path,
    e: control::ControlError,
) -> CliError {
    let left = control::leave_cancel(socket).await.is_ok();
    let detail = if left {
        format!(
            "{}; the cancel waits on its socket and takes effect if it runs again",
            e.detail
        )
    } else {
        e.detail
    };
    EngineError::Unreachable { run, detail }.into()
}
