use crate::exit::{self, CliError};
use crate::printer::Printer;

/// List lab hosts, as the Docker Engine shows them now.
///
/// ENGINE shows where the engine host has the Docker Engine's socket; in JSON, that host
/// carries the label `foundry.lab.engine=1`.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry lab list
  foundry lab list --output json")]
pub struct Args {
    /// Only this lab.
    #[arg(long)]
    name: Option<String>,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    super::require_engine()?;
    let hosts = foundry_workflows::lab::list(args.name.as_deref())
        .await
        .map_err(|e| CliError::new(e.message))?;
    if printer.json() {
        let _ = printer.data_each(&hosts);
        return Ok(exit::OK);
    }
    if hosts.is_empty() {
        printer.note("no lab hosts (`foundry lab up` makes some)");
        return Ok(exit::OK);
    }
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|h| {
            vec![
                h.labels
                    .get(foundry_workflows::lab::LAB_LABEL)
                    .cloned()
                    .unwrap_or_default(),
                h.labels
                    .get("foundry.lab.host")
                    .cloned()
                    .unwrap_or_default(),
                h.addresses.values().cloned().collect::<Vec<_>>().join(","),
                h.state.clone(),
                super::up::engine_mark(
                    h.labels
                        .get(foundry_workflows::lab::ENGINE_LABEL)
                        .map(String::as_str)
                        == Some("1"),
                    h.labels
                        .get(foundry_workflows::lab::engine::OWN_ENGINE_LABEL)
                        .map(String::as_str)
                        == Some("1"),
                ),
            ]
        })
        .collect();
    let _ = printer.table(&["LAB", "HOST", "ADDRESS", "STATE", "ENGINE"], &rows);
    Ok(exit::OK)
}
