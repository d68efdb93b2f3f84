use foundry_core::{Engine, EngineError, Event, EventKind, RunId, Verification};

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render::{self, RunRow};

/// Show where a run stands.
///
/// With `--follow`, keep printing its events until it ends (the exit code then says how
/// it ended); a run driven on another machine sharing the journal is followed by reading
/// the journal every half second. With `--verify`, probe again, read-only, the effect of every step of an
/// unfinished run that completed, and mark each one whose effect is gone (a container
/// removed by hand since, say): exit 1 when one has drifted or could not be checked.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Verification: `present` (its effect is there), `DRIFTED` (gone since the step completed),
`unchecked` (its activity has no probe that can tell: it runs again instead, or a person
decides), `could not check` (the probe had no answer). Nothing runs and nothing is
written; a resumed run does not redo a completed step, so after a drift start over
(`foundry setup --reset`, for a setup) and the new run's probes find what is left.

Examples:
  foundry workflow status 0193ab12
  foundry workflow status 0193ab12 --follow
  foundry workflow status 0193ab12 --verify
  foundry workflow status 0193ab12 --output json")]
pub struct Args {
    /// The run: its id, or a unique prefix of it.
    run: String,
    /// Follow the run's events until it ends.
    #[arg(long, short = 'f', conflicts_with = "verify")]
    follow: bool,
    /// Probe the effects of the completed steps of an unfinished run again, and mark any
    /// drift.
    #[arg(long)]
    verify: bool,
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
    if args.verify {
        return verify(&engine, id, &short, printer).await;
    }
    if args.follow {
        match engine.follow(id).await {
            Ok((view, mut follow)) => {
                print_view(printer, &view, &short)?;
                while let Some(event) = follow
                    .next()
                    .await
                    .map_err(|e| CliError::new(e.to_string()))?
                {
                    if let Some(code) = said(printer, &event, &short) {
                        return Ok(code);
                    }
                }
                // The driver went away without finishing: show where the run was left.
            }
            // No driver answers here: one on another machine sharing the journal is
            // followed through the journal.
            Err(_) => {
                if let Some(code) = follow_journal(&engine, id, &short, printer).await? {
                    return Ok(code);
                }
            }
        }
    }
    let view = engine.view(id).await?;
    print_view(printer, &view, &short)?;
    Ok(exit::OK)
}

/// Prints `event`; the exit code to end with, once the run finished or the output is gone.
pub(super) fn said(printer: &Printer, event: &Event, short: &str) -> Option<u8> {
    let quit = if printer.json() {
        printer.data(event).is_err()
    } else {
        render::event_line(printer, event, short).is_some_and(|l| printer.line(&l).is_err())
    };
    if let EventKind::RunFinished { state, .. } = event.kind {
        return Some(exit::for_state(state));
    }
    quit.then_some(exit::OK)
}

/// How often the journal is read when following a run driven on another machine.
const JOURNAL_POLL: std::time::Duration = std::time::Duration::from_millis(500);

/// Follows a run a driver elsewhere drives by reading its journal every [`JOURNAL_POLL`],
/// for as long as that driver holds it: each step's changes as events, then its end (the
/// exit code). None when no driver holds it, or once its driver is gone unfinished.
async fn follow_journal(
    engine: &Engine,
    id: RunId,
    short: &str,
    printer: &Printer,
) -> Result<Option<u8>, CliError> {
    let view = engine.view(id).await?;
    if view.driver.is_none() || view.state().is_finished() {
        return Ok(None);
    }
    print_view(printer, &view, short)?;
    follow_from(engine, view, short, printer).await
}

/// Follows, from `view`, a run a driver elsewhere drives, as [`follow_journal`] does.
pub(super) async fn follow_from(
    engine: &Engine,
    mut view: foundry_core::RunView,
    short: &str,
    printer: &Printer,
) -> Result<Option<u8>, CliError> {
    let id = view.id();
    loop {
        tokio::time::sleep(JOURNAL_POLL).await;
        let next = engine.view(id).await?;
        for event in next.events_since(&view) {
            if let Some(code) = said(printer, &event, short) {
                return Ok(Some(code));
            }
        }
        if next.driver.is_none() {
            return Ok(None);
        }
        view = next;
    }
}

/// A verification as JSON: the run's status and what each completed step's probe found.
#[derive(serde::Serialize)]
struct Verified<'a> {
    #[serde(flatten)]
    run: RunRow,
    verification: &'a Verification,
}

async fn verify(
    engine: &Engine,
    id: RunId,
    short: &str,
    printer: &Printer,
) -> Result<u8, CliError> {
    let verification = engine.verify(id).await.map_err(|e| match e {
        EngineError::Finished { run, state } => CliError::new(format!(
            "run {run} is {state}: only an unfinished run's steps can be verified"
        ))
        .with_hint(
            "what is deployed is always asked live: `foundry stack status`, `foundry stack plan`",
        ),
        e => e.into(),
    })?;
    let view = engine.view(id).await?;
    let result = if printer.json() {
        printer.data(&Verified {
            run: RunRow::new(&view),
            verification: &verification,
        })
    } else {
        let mut lines = render::status_lines(&view, short);
        lines.push(String::new());
        lines.extend(render::verification_lines(&verification, short));
        lines.iter().try_for_each(|l| printer.line(l))
    };
    result.map_err(|_| CliError::quiet(exit::OK))?;
    let sound = verification.drifted().next().is_none() && verification.failed().next().is_none();
    Ok(if sound { exit::OK } else { exit::ERROR })
}
