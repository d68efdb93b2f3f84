//! `foundry component`: the stack's components one by one, as the stack config places
//! them: `list` names them, `install` runs the named ones' installs as one durable run (in
//! the order their needs give), `upgrade` takes one to another version, `status` asks each
//! one now.

use std::path::Path;

use foundry_workflows::component::InstallOptions;
use foundry_workflows::stack;

use super::stack::Loaded;
use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum ComponentCmd {
    /// Every component Foundry knows, what it needs first, and where the config places it.
    #[command(after_help = "\
Examples:
  foundry component list
  foundry component list --output json")]
    List,
    /// Install components as the stack config places them (all, in order, when none is named).
    #[command(after_help = "\
The named components are installed as one durable run, each after what it needs: if it is
interrupted, `foundry workflow resume <run>` continues it, and running the install again
changes only what differs.

Examples:
  foundry component install
  foundry component install openbao dns
  foundry component install zot --output json")]
    Install(InstallArgs),
    /// Each component's containers and service, asked now (all when none is named).
    #[command(after_help = "\
Exits 1 when a component is not healthy.

Examples:
  foundry component status
  foundry component status dns --output json")]
    Status(Names),
    /// Upgrade one component from the version it runs to the config's (or --to's).
    #[command(after_help = "\
The running version is read where it runs; the upgrade is confirmed unless --yes, and
refused, with nothing changed, when it would jump over a version that needs steps of its
own (the message names the version to go through first). It runs as one durable run;
the component's data volumes are kept.

Examples:
  foundry component upgrade dns --dry-run
  foundry component upgrade openbao --to 2.1.0 --yes
  foundry component upgrade k3s --to v1.32.4+k3s1 --yes")]
    Upgrade(UpgradeArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpgradeArgs {
    /// openbao, dns, zot (the registry), k3s (the cluster: one minor version at a time).
    #[arg(value_name = "COMPONENT")]
    name: String,
    /// The version to go to (the image's tag; K3s's release, `v1.32.4+k3s1`), instead of
    /// the config's.
    #[arg(long, value_name = "VERSION")]
    to: Option<String>,
    #[command(flatten)]
    flags: super::stack::UpgradeFlags,
}

#[derive(Debug, clap::Args)]
pub struct InstallArgs {
    #[command(flatten)]
    names: Names,
    #[command(flatten)]
    stack: super::stack::InstallFlags,
}

#[derive(Debug, clap::Args)]
pub struct Names {
    /// openbao, dns, zot (the registry), k3s; every one the config places when none is given.
    #[arg(value_name = "COMPONENT")]
    names: Vec<String>,
}

pub async fn run(
    cmd: ComponentCmd,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    match cmd {
        ComponentCmd::List => list(printer, config),
        ComponentCmd::Install(args) if args.stack.dry_run => {
            let loaded = Loaded::load(config)?;
            let chosen = chosen(&args.names, &loaded)?;
            super::stack::plan(chosen, printer, &loaded).await
        }
        ComponentCmd::Install(args) => {
            let loaded = Loaded::load(config)?;
            let options = InstallOptions {
                keep_root_token: args.stack.keep_root_token,
                config: Some(loaded.selected.path.clone()),
            };
            let chosen = chosen(&args.names, &loaded)?;
            super::stack::install(chosen, &options, printer, &loaded).await
        }
        ComponentCmd::Upgrade(args) => {
            let c = stack::find(&args.name)?;
            let loaded = Loaded::load(config)?;
            let to = args.to.as_deref();
            super::stack::upgrade(vec![c], to, &args.flags, printer, &loaded).await
        }
        ComponentCmd::Status(names) => {
            let loaded = Loaded::load(config)?;
            let chosen = chosen(&names, &loaded)?;
            super::stack::status(chosen, printer, &loaded).await
        }
    }
}

/// The components named; when none is, every one the config places (a config without a
/// cluster places no `k3s`).
fn chosen(
    names: &Names,
    loaded: &Loaded,
) -> Result<Vec<&'static dyn foundry_workflows::component::Component>, CliError> {
    if names.names.is_empty() {
        return Ok(stack::placed(&loaded.stack));
    }
    Ok(stack::select(&names.names)?)
}

fn list(printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    // Where each runs, when there is a config to say it.
    let stack = Loaded::load(config).ok().map(|l| l.stack);
    let rows: Vec<serde_json::Value> = stack::all()
        .iter()
        .map(|c| {
            let place = stack.as_ref().and_then(|s| c.placement(s).ok());
            serde_json::json!({
                "component": c.name(),
                "about": c.about(),
                "needs": c.needs(),
                "aliases": c.aliases(),
                "workflow": c.install().name,
                "placed": place,
            })
        })
        .collect();
    if printer.json() {
        let _ = printer.data_each(&rows);
        return Ok(exit::OK);
    }
    let table: Vec<Vec<String>> = stack::all()
        .iter()
        .map(|c| {
            let place = stack.as_ref().and_then(|s| c.placement(s).ok());
            let needs = c.needs().join(", ");
            vec![
                c.name().to_string(),
                if needs.is_empty() { "-".into() } else { needs },
                place.map_or("-".into(), |p| p.said()),
                c.about().to_string(),
            ]
        })
        .collect();
    let _ = printer.table(&["COMPONENT", "NEEDS", "PLACED", "WHAT"], &table);
    Ok(exit::OK)
}
