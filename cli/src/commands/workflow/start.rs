use std::io::Read;
use std::path::PathBuf;

use crate::exit::CliError;
use crate::printer::Printer;

/// Start a run of a workflow and drive it here.
///
/// The input is a YAML or JSON file. The run is journaled as it goes: if this process is
/// stopped, `foundry workflow resume <run>` continues exactly where it was.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry workflow start local --input plan.yaml
  cat plan.json | foundry workflow start local --input -
  foundry workflow start local --input plan.yaml --output json   # events as JSON lines

The `local` workflow runs a plan on this machine:
  steps:
    - key: greet
      run: [sh, -c, 'echo hello >> /tmp/greeting']
      probe: [grep, -qx, hello, /tmp/greeting]   # effect already there?
    - key: config
      file: {path: /tmp/app.conf, content: \"port = 8080\\n\", mode: 0o600}")]
pub struct Args {
    /// The workflow to start (`local`, `engine-bench`).
    workflow: String,
    /// The run's input: a YAML or JSON file, or `-` for stdin.
    #[arg(long, short = 'i')]
    input: Option<PathBuf>,
}

/// A run's input from a YAML or JSON file, or from stdin for `-`.
pub(crate) fn read_input(path: &PathBuf) -> Result<serde_json::Value, CliError> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::new(format!("reading the input from stdin: {e}")))?;
        ("stdin".to_string(), text)
    } else {
        let text = std::fs::read(path)
            .map_err(|e| CliError::new(format!("reading {}: {e}", path.display())))?;
        let text = String::from_utf8(text)
            .map_err(|_| CliError::new(format!("reading {}: not UTF-8 text", path.display())))?;
        (path.display().to_string(), text)
    };
    if text.trim().is_empty() {
        return Err(CliError::new(format!("{name}: the input is empty")));
    }
    serde_saphyr::from_str(&text).map_err(|e| {
        let message = e.to_string();
        let message = message.strip_prefix("error: ").unwrap_or(&message);
        CliError::new(format!("{name}: {message}"))
    })
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    let input = match &args.input {
        Some(path) => read_input(path)?,
        None => serde_json::Value::Null,
    };
    let (engine, bar) = super::engine(printer)?;
    let driver = engine.start(&args.workflow, input).map_err(|e| {
        let from = args
            .input
            .as_ref()
            .map(|p| format!(" (from {})", p.display()))
            .unwrap_or_default();
        let hint = e.hint();
        let mut err = CliError::from(e);
        err.message.push_str(&from);
        err.hint = hint;
        err
    })?;
    crate::commands::drive::drive(driver, printer, bar)
        .await
        .map(|(code, _)| code)
}
