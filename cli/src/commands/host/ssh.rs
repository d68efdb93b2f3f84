use std::os::unix::process::CommandExt;
use std::path::Path;

use crate::exit::CliError;

/// Open a shell on a host (or run a command there) with the system `ssh`.
///
/// Uses the host's key and a known_hosts file Foundry writes from the stack config
/// ($FOUNDRY_HOME/known_hosts), with StrictHostKeyChecking=yes. `ssh` replaces foundry, so
/// the terminal is yours, and its exit status is the command's.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry host ssh web-1
  foundry host ssh web-1 -- sudo journalctl -n 20")]
pub struct Args {
    /// The host, by name.
    name: String,
    /// A command to run instead of a shell, each word passed as it is.
    #[arg(last = true)]
    command: Vec<String>,
}

pub async fn run(args: Args, config: Option<&Path>) -> Result<u8, CliError> {
    let (home, selected) = crate::commands::existing(config)?;
    let stack = selected.load()?;
    let ssh = foundry_workflows::host::ssh_command(&stack, home.root(), &args.name, &args.command)
        .await?;
    let mut command = ssh.command();
    // A key held in this process's memory lives only while foundry does: ssh runs as a child.
    let err = if ssh.key.is_some() {
        match command.status() {
            Ok(status) => {
                return Ok(status
                    .code()
                    .and_then(|c| u8::try_from(c).ok())
                    .unwrap_or(255));
            }
            Err(e) => e,
        }
    } else {
        command.exec()
    };
    Err(
        CliError::new(format!("cannot run `{}`: {err}", ssh.program))
            .with_hint("install the OpenSSH client (Debian: openssh-client)"),
    )
}
