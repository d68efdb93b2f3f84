use foundry_core::control;
use foundry_core::model::Lease;
use foundry_core::{Cancel, Engine, EngineError, Event, EventKind, RunId};

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render;

/// Cancel a run: it stops at the next step boundary, then its undo steps run, newest first.
///
/// Works from any terminal while another process drives the run, and from another
/// machine sharing the journal (PostgreSQL), whose driver finds the cancel at its next
/// heartbeat; a run nobody drives is cancelled here.
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
        Err(_) => elsewhere(&engine, id, args.no_wait, printer, bar).await,
    }
}

/// What `cancel` did with a run driven on another machine, as `--output json` says it.
#[derive(serde::Serialize)]
struct Asked<'a> {
    run: RunId,
    /// `asked`: recorded in the shared journal for the driver.
    cancel: &'static str,
    driver: &'a Lease,
}

/// How many times the run is asked for again when its driver goes away unfinished: the
/// next look finds it undriven (cancelled here) or driven by a process that took it over,
/// which finds the cancel as it takes the run.
const ASKS: usize = 3;

/// No driver answers on this home's socket: nobody drives the run (it is cancelled here,
/// running its undo steps), or a driver on another machine sharing the journal does (the
/// cancel is recorded for it, and its end is followed through the journal).
async fn elsewhere(
    engine: &Engine,
    id: RunId,
    no_wait: bool,
    printer: &Printer,
    bar: Option<indicatif::ProgressBar>,
) -> Result<u8, CliError> {
    let short = engine.short_id(id);
    let mut bar = bar;
    let mut asked = false;
    // The run as it was before the cancel was asked: its driver may hear the ask (at once,
    // through the journal's notification) before this process looks again, and the
    // follower's events are what changed since this view, the cancel's among them.
    let mut before = engine.view(id).await.ok();
    for _ in 0..ASKS {
        let driver = match engine.cancel(id).await {
            Ok(Cancel::Here(driver)) => {
                return crate::commands::drive::drive(*driver, printer, bar.take())
                    .await
                    .map(|(code, _)| code);
            }
            Ok(Cancel::Asked { driver }) => driver,
            // Its driver ended it between two looks.
            Err(EngineError::Finished { state, .. }) if asked => {
                return Ok(ended(engine, id, &short, printer, state).await);
            }
            Err(e) => return Err(e.into()),
        };
        if !asked {
            printer.note(&format!(
                "cancel of run {short} asked of its driver, {driver}, through the shared journal: it stops at its next heartbeat (within {} s), then runs its undo steps",
                foundry_core::lease::heartbeat_every().as_secs().max(1)
            ));
            if printer.json()
                && printer
                    .data(&Asked {
                        run: id,
                        cancel: "asked",
                        driver: &driver,
                    })
                    .is_err()
            {
                return Ok(exit::OK);
            }
        }
        asked = true;
        if no_wait {
            return Ok(exit::OK);
        }
        let view = match before.take() {
            Some(view) if !view.state().is_finished() => view,
            _ => engine.view(id).await?,
        };
        if view.state().is_finished() {
            return Ok(ended(engine, id, &short, printer, view.state()).await);
        }
        if let Some(code) = super::status::follow_from(engine, view, &short, printer).await? {
            return Ok(code);
        }
        // Its driver went away unfinished: asked again, or cancelled here.
    }
    Err(EngineError::Run {
        run: id,
        detail: format!("its driver went away {ASKS} times before the cancel took effect"),
    }
    .into())
}

/// Says how a run ended that its driver finished before it could be followed; the exit
/// code of that end.
async fn ended(
    engine: &Engine,
    id: RunId,
    short: &str,
    printer: &Printer,
    state: foundry_core::RunState,
) -> u8 {
    let error = engine
        .view(id)
        .await
        .ok()
        .and_then(|v| v.snapshot.meta.error.clone());
    let event = Event {
        run: id,
        at: foundry_core::Millis::now(),
        kind: EventKind::RunFinished { state, error },
    };
    super::status::said(printer, &event, short).unwrap_or_else(|| exit::for_state(state))
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
