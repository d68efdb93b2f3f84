//! `foundry lab`: a local lab of real Debian hosts with sshd, in containers.

mod cut;
mod down;
mod list;
mod up;

use clap::Subcommand;
use foundry_core::Home;

use crate::exit::CliError;
use crate::printer::Printer;

#[derive(Debug, Subcommand)]
pub enum LabCmd {
    Up(up::Args),
    Down(down::Args),
    List(list::Args),
    /// Cut a lab host off its network, as a pulled cable would, to rehearse a dropped
    /// connection; `foundry lab restore` puts it back.
    Cut(cut::Args),
    /// Put a cut lab host back on its network, at its address.
    Restore(cut::Args),
}

pub async fn run(cmd: LabCmd, printer: &Printer) -> Result<u8, CliError> {
    match cmd {
        LabCmd::Up(args) => up::run(args, printer).await,
        LabCmd::Down(args) => down::run(args, printer).await,
        LabCmd::List(args) => list::run(args, printer).await,
        LabCmd::Cut(args) => cut::cut(args, printer).await,
        LabCmd::Restore(args) => cut::restore(args, printer).await,
    }
}

/// Where a lab keeps its key, and the stack config its hosts are written to.
fn lab_paths(name: &str) -> Result<(std::path::PathBuf, std::path::PathBuf), CliError> {
    let root = Home::from_env()?.root().to_path_buf();
    Ok((
        root.join("labs").join(name),
        root.join(format!("lab-{name}.yaml")),
    ))
}

/// Fails with a hint when no Docker Engine answers on this machine.
fn require_engine() -> Result<(), CliError> {
    let socket = std::path::Path::new("/var/run/docker.sock");
    if std::os::unix::net::UnixStream::connect(socket).is_ok() {
        return Ok(());
    }
    Err(CliError::new(format!(
        "no Docker Engine answers at {}: the lab runs its hosts as containers",
        socket.display()
    ))
    .with_hint("`bash scripts/peers.sh` installs Debian's docker.io and starts dockerd"))
}
