//! One module per noun, one file per verb.

pub mod cluster;
pub mod component;
pub mod config;
pub mod dns;
pub mod drive;
pub mod host;
pub mod journal;
pub mod lab;
pub mod network;
pub mod openbao;
pub mod registry;
pub mod secret;
pub mod setup;
pub mod stack;
pub mod workflow;

use std::sync::Arc;

use std::path::Path;

use foundry_core::{Engine, Home};
use foundry_workflows::config::{ConfigError, Selected};
use indicatif::ProgressBar;

use crate::exit::CliError;
use crate::printer::Printer;
use crate::prompt::TerminalInput;

/// The engine of this user's Foundry home, with a progress line when a person watches.
pub(crate) fn engine(printer: &Printer) -> Result<(Engine, Option<ProgressBar>), CliError> {
    let (engine, bar, _) = engine_asking(printer, false)?;
    Ok((engine, bar))
}

/// [`engine`], and who answers its runs' questions (`yes`: a question's default, unasked).
pub(crate) fn engine_asking(
    printer: &Printer,
    yes: bool,
) -> Result<(Engine, Option<ProgressBar>, Arc<TerminalInput>), CliError> {
    let home = Home::from_env()?;
    let bar = (!printer.json() && printer.stderr_tty).then(ProgressBar::new_spinner);
    let input = Arc::new(TerminalInput::new(bar.clone()).with_defaults(yes));
    let engine = Engine::new(home, foundry_workflows::registry(), input.clone());
    Ok((engine, bar, input))
}

/// Starts `workflow` with the input in `path` (YAML or JSON) and drives it here: the exit
/// code, and the run's output when it completed.
pub(crate) async fn start_from_file<T: serde::de::DeserializeOwned>(
    workflow: &str,
    path: &std::path::PathBuf,
    printer: &Printer,
) -> Result<(u8, Option<T>), CliError> {
    let input = workflow::read_input(path)?;
    let (engine, bar) = engine(printer)?;
    let driver = engine.start(workflow, input)?;
    let (code, output) = drive::drive(driver, printer, bar).await?;
    Ok((code, output.and_then(|o| serde_json::from_value(o).ok())))
}

/// The stack config this command works on (`--config`, `FOUNDRY_CONFIG`, or the only one
/// in the home), and the home.
pub(crate) fn select(flag: Option<&Path>) -> Result<(Home, Selected), CliError> {
    let home = Home::from_env()?;
    let selected = foundry_workflows::config::select(flag, home.root())?;
    Ok((home, selected))
}

/// The config, which must exist already.
pub(crate) fn existing(flag: Option<&Path>) -> Result<(Home, Selected), CliError> {
    let (home, selected) = select(flag)?;
    if !selected.exists {
        let err: CliError = match flag {
            Some(path) => ConfigError::Read {
                path: path.to_path_buf(),
                detail: "no such file".into(),
            }
            .into(),
            None if std::env::var_os(foundry_workflows::config::CONFIG_ENV).is_some() => {
                ConfigError::Read {
                    path: selected.path.clone(),
                    detail: "no such file".into(),
                }
                .into()
            }
            None => ConfigError::Missing {
                dir: home.root().to_path_buf(),
            }
            .into(),
        };
        return Err(err);
    }
    Ok((home, selected))
}

/// Asks `question` on a terminal unless `yes` (`--yes`); refuses without a terminal.
pub(crate) fn confirm(yes: bool, question: &str) -> Result<(), crate::exit::CliError> {
    use crate::exit::CliError;
    if yes {
        return Ok(());
    }
    if !interactive() {
        return Err(CliError::new(format!(
            "nothing was done: `{question}` needs a yes, and there is no terminal to ask on"
        ))
        .with_hint("add --yes"));
    }
    let agreed = dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .unwrap_or(false);
    if agreed {
        Ok(())
    } else {
        Err(CliError::new("nothing was done"))
    }
}

/// A person can answer questions on this terminal.
pub(crate) fn interactive() -> bool {
    use std::io::IsTerminal;
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}
