use foundry_core::{Engine, EngineError, EventKind, RunId, Verification};

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render::{self, RunRow};

/// Show where a run stands.
///
/// With `--follow`, keep printing its events until it ends (the exit code then says how
/// it ended). With `--verify`, probe again, read-only, the effect of every step of an
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
