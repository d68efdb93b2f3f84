use std::path::Path;
use std::time::Duration;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Propose the config's network section from what the hosts report; --write puts it in.
///
/// Each host is asked over SSH for its address and default gateway (as `detect-macs`
/// does). The gateway and subnet are the ones most hosts are on; the DHCP range holds no
/// static address (the gateway's, a host's, a service's); the VIP is a free address just
/// outside it, probed from a host (ARP, and ping where installed), and another one is
/// taken when something answers there; each infrastructure service gets the first host
/// when the config names none. What the config says already is kept wherever it still
/// holds, so planning again changes nothing.
///
/// --write replaces the `network:` section of the config and leaves the rest of the file
/// (its other sections and their comments) as it was; it asks first, unless --yes.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry network plan
  foundry network plan --write
  foundry network plan --write --yes --output json")]
pub struct Args {
    /// Write the proposal into the stack config.
    #[arg(long)]
    write: bool,
    /// Write without asking.
    #[arg(long, short = 'y', requires = "write")]
    yes: bool,
    /// How long one host may take to answer.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (path, stack, _) = super::load(config)?;
    let detected = foundry_workflows::network::detect(&stack, args.timeout).await;
    let proposal = foundry_workflows::network::plan(&stack, &detected).await?;
    let unchanged = proposal.changes.is_empty();
    if printer.json() {
        let _ = printer.data(&proposal);
    } else {
        for line in proposal.yaml()?.lines() {
            let _ = printer.line(line);
        }
        for note in &proposal.notes {
            printer.note(&format!("note: {note}"));
        }
        if unchanged {
            printer.note(&format!(
                "{}: the network section says this already",
                path.display()
            ));
        }
        for c in &proposal.changes {
            let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "(not set)".into());
            printer.note(&format!(
                "change: {}: {} -> {}",
                c.field,
                shown(&c.from),
                shown(&c.to)
            ));
        }
    }
    if !args.write || unchanged {
        return Ok(exit::OK);
    }
    if !args.yes {
        if !crate::commands::interactive() {
            return Err(CliError::new(format!(
                "writing the network section into {} needs a confirmation, and there is no terminal to ask on",
                path.display()
            ))
            .with_hint("add --yes to write it"));
        }
        let sure = dialoguer::Confirm::new()
            .with_prompt(format!(
                "Write this network section into {}?",
                path.display()
            ))
            .default(false)
            .interact()
            .map_err(|e| CliError::new(format!("reading the answer: {e}")))?;
        if !sure {
            printer.note("nothing written");
            return Ok(exit::OK);
        }
    }
    let kept = foundry_workflows::network::write(&path, &proposal)?;
    if kept {
        printer.note(&format!(
            "wrote the network section into {}",
            path.display()
        ));
    } else {
        printer.note(&format!(
            "wrote {} whole: its layout could not be kept around the new section, and its comments are gone",
            path.display()
        ));
    }
    Ok(exit::OK)
}
