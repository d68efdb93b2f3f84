use foundry_core::Millis;

use crate::exit::{self, CliError};
use crate::printer::{self, Printer};
use crate::render::{self, RunDetail, RunRow};

/// Show a run and each of its steps: state, attempts, next attempt, last error, duration.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Step states: done; running; in doubt (interrupted: its probe decides on resume);
pending (failed, waiting for its next attempt); failed.

Examples:
  foundry workflow show 0193ab12
  foundry workflow show 0193ab12 --output json | jq '.step_list[] | select(.state != \"done\")'")]
pub struct Args {
    /// The run: its id, or a unique prefix of it.
    run: String,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let (engine, _) = super::engine(printer)?;
    let id = super::resolve(&engine, &args.run)?;
    let view = engine.view(id).await?;
    let steps = view.steps(Millis::now());
    let result = if printer.json() {
        printer.data(&RunDetail {
            run: RunRow::new(&view),
            step_list: steps,
        })
    } else {
        let mut lines = render::status_lines(&view, &engine.short_id(id));
        if !steps.is_empty() {
            lines.push(String::new());
            lines.extend(printer::table(
                &render::STEP_HEADER,
                &render::step_rows(&steps),
            ));
        }
        lines.iter().try_for_each(|l| printer.line(l))
    };
    let _ = result;
    Ok(exit::OK)
}
