use std::path::Path;

use foundry_workflows::host::{ConfigureOutput, DEFAULT_PARALLEL, configure_input};

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Configure hosts for Foundry: a `foundry` user with sudo and its key, base packages, the
/// hostname.
///
/// On each host, as one journaled step per concern (each checks and changes in one round
/// trip): the user `foundry` (home /home/foundry, shell /bin/bash, group sudo);
/// /etc/sudoers.d/foundry (NOPASSWD, root:root 0440, checked by visudo); the host's
/// Foundry public key in /home/foundry/.ssh/authorized_keys; the packages sudo,
/// openssh-server, python3, procps and iproute2; /etc/hostname and the live hostname set
/// to the host's name. A durable run: interrupted, `foundry workflow resume` continues it.
/// Run again, it changes nothing and says so.
///
/// A `foundry` user that exists already with login keys other than Foundry's, or with a
/// password, is refused before anything changes: its keys (type, fingerprint, comment) and
/// its password's state are listed. `--adopt` accepts it as it is.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry host configure web-1 web-2
  foundry host configure --all --parallel 20
  foundry host configure --all --output json
  foundry host configure --adopt web-3")]
pub struct Args {
    /// The hosts to configure, by name.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    names: Vec<String>,
    /// Every host of the config.
    #[arg(long)]
    all: bool,
    /// At most this many hosts at once.
    #[arg(long, default_value_t = DEFAULT_PARALLEL)]
    parallel: usize,
    /// Accept an existing `foundry` user as it is: its other keys and its password stay,
    /// and it gets passwordless sudo.
    #[arg(long)]
    adopt: bool,
}

pub async fn run(args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    let (_, selected) = crate::commands::existing(config)?;
    let stack = selected.load()?;
    let input = configure_input(
        &stack,
        &selected.path,
        &args.names,
        args.all,
        args.parallel,
        args.adopt,
    )
    .await?;
    let input =
        serde_json::to_value(&input).map_err(|e| CliError::new(format!("the run's input: {e}")))?;
    let (engine, bar) = crate::commands::engine(printer)?;
    let driver = engine.start("host-configure", input)?;
    let (code, output) = crate::commands::drive::drive(driver, printer, bar).await?;
    let Some(output) = output.and_then(|o| serde_json::from_value::<ConfigureOutput>(o).ok())
    else {
        return Ok(code);
    };
    if printer.json() {
        let mut value = serde_json::to_value(&output).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("summary".into(), output.summary().into());
        }
        let _ = printer.data(&value);
        return Ok(code);
    }
    let rows: Vec<Vec<String>> = output
        .hosts
        .iter()
        .map(|h| {
            let changed = if h.changed.is_empty() {
                "-".to_string()
            } else {
                h.changed.join(", ")
            };
            vec![h.host.clone(), changed]
        })
        .collect();
    if printer.table(&["HOST", "CHANGED"], &rows).is_err() {
        return Ok(exit::OK);
    }
    for host in output.hosts.iter().filter(|h| !h.adopted.is_empty()) {
        let _ = printer.line(&format!(
            "{}: adopted the existing user `foundry` with: {}",
            host.host,
            host.adopted.join("; ")
        ));
    }
    let _ = printer.line(&output.summary());
    Ok(code)
}
