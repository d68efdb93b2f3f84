use std::path::Path;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// List the secrets under a path (folders end in `/`); never their values.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry secret list
  foundry secret list foundry-core/ --output json")]
pub struct Args {
    /// A folder, `foundry-core/`; the top when not given.
    path: Option<String>,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let path = args.path.unwrap_or_default();
    let folder = if path.is_empty() || path.ends_with('/') {
        path
    } else {
        format!("{path}/")
    };
    if folder.starts_with('/') || folder.split('/').any(|p| p == "..") {
        return Err(CliError::new(format!("`{folder}` is not a secret folder")));
    }
    let vault = super::vault(config)?;
    let names = vault.list(&folder).await?;
    if printer.json() {
        let items: Vec<_> = names
            .iter()
            .map(|n| serde_json::json!({"path": format!("{folder}{n}")}))
            .collect();
        let _ = printer.data_each(&items);
        return Ok(exit::OK);
    }
    if names.is_empty() {
        printer.note(&format!(
            "no secrets under `{folder}` in OpenBAO at {}",
            vault.addr()
        ));
    }
    for name in names {
        let _ = printer.line(&format!("{folder}{name}"));
    }
    Ok(exit::OK)
}
