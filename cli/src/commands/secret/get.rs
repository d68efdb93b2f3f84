use std::path::Path;

use foundry_workflows::secrets::SecretPath;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Show a secret's value (one key, or every key of it), after you confirm.
///
/// The value goes to stdout only. Without a terminal to confirm on, --yes is needed.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry secret get foundry-core/dns:api_key
  foundry secret get foundry-core/dns --yes --output json")]
pub struct Args {
    /// `path/to/secret`, or `path/to/secret:key` for one key.
    path: String,
    /// Show it without asking.
    #[arg(long, short = 'y')]
    yes: bool,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let place: SecretPath = args.path.parse()?;
    if !args.yes {
        if !crate::commands::interactive() {
            return Err(CliError::new(format!(
                "showing {} needs a confirmation, and there is no terminal to ask on",
                args.path
            ))
            .with_hint("add --yes to show it anyway"));
        }
        let shown = dialoguer::Confirm::new()
            .with_prompt(format!("Show the value of {} on this screen?", args.path))
            .default(false)
            .interact()
            .map_err(|e| CliError::new(format!("reading the answer: {e}")))?;
        if !shown {
            return Ok(exit::OK);
        }
    }
    let vault = super::vault(config)?;
    let values = vault.read(&place.path).await?;
    let chosen: Vec<_> = values
        .iter()
        .filter(|(k, _)| place.key.as_ref().is_none_or(|want| want == *k))
        .collect();
    if chosen.is_empty() {
        return Err(CliError::new(format!(
            "OpenBAO at {} has no secret {}",
            vault.addr(),
            args.path
        ))
        .with_hint("`foundry secret list` shows what there is"));
    }
    if printer.json() {
        let map: serde_json::Map<String, serde_json::Value> = chosen
            .iter()
            .map(|(k, v)| {
                (
                    (*k).clone(),
                    serde_json::Value::String(v.expose().to_string()),
                )
            })
            .collect();
        let _ = printer.data(&map);
    } else if let (Some(_), [(_, value)]) = (&place.key, chosen.as_slice()) {
        let _ = printer.line(value.expose());
    } else {
        for (k, v) in chosen {
            let _ = printer.line(&format!("{k}={}", v.expose()));
        }
    }
    Ok(exit::OK)
}
