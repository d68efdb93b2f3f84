use foundry_core::{Decision, EngineError, RunState};

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Continue an interrupted, paused or failed run where it stopped.
///
/// Steps already done are not run again; a step that was interrupted is checked first
/// (its effect may be there already); a step waiting for a retry keeps its schedule.
/// A step that must not run twice unchecked and was interrupted pauses the run until you
/// check it and say what happened: `--done` if it took effect, `--redo` if it did not.
/// Refused while another process drives the run.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow resume 0193ab12
  foundry workflow resume 0193ab12 --done migrate#0
  foundry workflow resume 0193ab12 --redo migrate#0
  foundry workflow resume 0193ab12 --output json")]
pub struct Args {
    /// The run: its id, or a unique prefix of it.
    run: String,
    /// A step in doubt whose effect you found there: recorded done without running it.
    #[arg(long, value_name = "STEP")]
    done: Vec<String>,
    /// A step in doubt whose effect you found missing: run again.
    #[arg(long, value_name = "STEP")]
    redo: Vec<String>,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, bar) = super::engine(printer)?;
    let id = super::resolve(&engine, &args.run)?;
    let mut driver = match engine.resume(id).await {
        Ok(driver) => driver,
        // Resuming until done is a fine script: a completed run needs nothing more.
        Err(EngineError::Finished {
            state: RunState::Completed,
            ..
        }) => {
            printer.note(&format!("run {id} already completed: nothing to resume"));
            return Ok(exit::OK);
        }
        Err(e) => return Err(e.into()),
    };
    let decided = args.done.iter().map(|s| (s, Decision::Done));
    for (step, decision) in decided.chain(args.redo.iter().map(|s| (s, Decision::Redo))) {
        driver.decide(step, decision)?;
    }
    crate::commands::drive::drive(driver, printer, bar)
        .await
        .map(|(code, _)| code)
}
