use std::io::Read;
use std::path::Path;

use foundry_core::SecretValue;
use foundry_workflows::secrets::SecretPath;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Set one key of a secret in OpenBAO: asked without echo, or read from stdin.
///
/// The secret's other keys are kept. The value is never printed, logged or journaled.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry secret set foundry-core/dns:api_key
  printf %s \"$TOKEN\" | foundry secret set external/github:api_token --stdin")]
pub struct Args {
    /// `path/to/secret:key`.
    path: String,
    /// Read the value from stdin (to its end, one trailing newline dropped).
    #[arg(long)]
    stdin: bool,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let place: SecretPath = args.path.parse()?;
    let key = place.key.clone().ok_or_else(|| {
        CliError::new(format!("`{}` names no key", args.path))
            .with_hint(format!("say which key: `{}:KEY`", place.path))
    })?;
    let vault = super::vault(config)?;
    let value = if args.stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| CliError::new(format!("reading stdin: {e}")))?;
        let text = text.strip_suffix('\n').unwrap_or(&text).to_string();
        SecretValue::new(text)
    } else if crate::commands::interactive() {
        let value = dialoguer::Password::new()
            .with_prompt(format!("Value of {}:{key}", place.path))
            .interact()
            .map_err(|e| CliError::new(format!("reading the value: {e}")))?;
        SecretValue::new(value)
    } else {
        return Err(
            CliError::new("no terminal to ask the value on").with_hint("pipe it in with --stdin")
        );
    };
    if value.expose().is_empty() {
        return Err(CliError::new("the value is empty: nothing was set"));
    }
    vault.write(&place.path, &key, &value).await?;
    if printer.json() {
        let _ = printer.data(&serde_json::json!({"set": format!("{}:{key}", place.path)}));
    } else {
        let _ = printer.line(&format!(
            "set {}:{key} in OpenBAO at {}",
            place.path,
            vault.addr()
        ));
    }
    Ok(exit::OK)
}
