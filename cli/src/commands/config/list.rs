use std::path::Path;

use foundry_core::Home;
use serde::Serialize;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// List the stack configs in $FOUNDRY_HOME, the one in use marked.
///
/// Each is read and checked: the list says whether it is valid.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry config list
  foundry config list --output json")]
pub struct Args {}

#[derive(Serialize)]
struct Entry {
    name: String,
    path: String,
    selected: bool,
    hosts: Option<usize>,
    error: Option<String>,
}

pub fn run(_: Args, printer: &Printer, flag: Option<&Path>) -> Result<u8, CliError> {
    let home = Home::from_env()?;
    let chosen = foundry_workflows::config::select(flag, home.root())
        .ok()
        .filter(|s| s.exists)
        .map(|s| s.path);
    let entries: Vec<Entry> = foundry_workflows::config::list(home.root())?
        .into_iter()
        .map(|path| {
            let loaded = foundry_workflows::config::load(&path);
            Entry {
                name: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                selected: chosen.as_deref() == Some(path.as_path()),
                hosts: loaded.as_ref().ok().map(|c| c.hosts.len()),
                error: loaded.err().map(|e| e.to_string()),
                path: path.display().to_string(),
            }
        })
        .collect();
    if printer.json() {
        let _ = printer.data_each(&entries);
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        printer.note(&format!(
            "no stack configs in {} (`foundry config init` writes one)",
            home.root().display()
        ));
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                if e.selected { "*" } else { "" }.into(),
                e.name.clone(),
                e.hosts.map_or("-".into(), |n| n.to_string()),
                if e.error.is_some() {
                    "invalid"
                } else {
                    "valid"
                }
                .into(),
                e.path.clone(),
            ]
        })
        .collect();
    let _ = printer.table(&["", "NAME", "HOSTS", "CHECK", "PATH"], &rows);
    Ok(exit::OK)
}
