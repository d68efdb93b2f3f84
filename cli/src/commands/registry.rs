//! `foundry registry`, hidden until the setup command uses it: `install` runs
//! `registry-install` from an input file and prints what it changed; `status` asks the
//! container and the registry, live; `push-k3s` puts K3s into it for the nodes to fetch.

use std::path::{Path, PathBuf};

use foundry_workflows::registry::push::{PushK3s, push_k3s};
use foundry_workflows::registry::{Endpoint, RegistryOutput, status};

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCmd {
    /// Install the registry from a `registry-install` input file (YAML or JSON).
    Install {
        #[arg(long, short = 'i')]
        input: PathBuf,
    },
    /// The registry's container, API and repositories, asked now.
    Status {
        /// The container's name.
        #[arg(long, default_value = "foundry-registry")]
        name: String,
        /// The API's address (`http://10.77.3.30:5000`).
        #[arg(long)]
        addr: String,
    },
    /// Put K3s's binary and install.sh from this machine into the stack's registry, as the
    /// OCI artifact `foundry/k3s:<release>` (`+` spelt `-`), for nodes that cannot reach
    /// the internet: with `components.k3s.source: registry` each node fetches them there.
    /// A file the registry has already is not sent again.
    #[command(after_help = "\
Examples:
  foundry registry push-k3s                            # components.k3s.binary, installer, tag
  foundry registry push-k3s --binary ./k3s --installer ./install.sh --release v1.32.4+k3s1
  foundry registry push-k3s --registry http://10.0.0.5:5000 -o json")]
    PushK3s {
        /// The k3s binary (`components.k3s.binary` when not given).
        #[arg(long, value_name = "PATH")]
        binary: Option<PathBuf>,
        /// K3s's install.sh (`components.k3s.installer` when not given).
        #[arg(long, value_name = "PATH")]
        installer: Option<PathBuf>,
        /// The binary's K3s release, `v1.32.4+k3s1` (`components.k3s.tag` when not given).
        #[arg(long, value_name = "RELEASE")]
        release: Option<String>,
        /// The registry's address, as this machine reaches it (the stack's registry
        /// component's, port 5000, when not given).
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
    },
}

pub async fn run(
    cmd: RegistryCmd,
    printer: &Printer,
    config: Option<&Path>,
) -> Result<u8, CliError> {
    match cmd {
        RegistryCmd::PushK3s {
            binary,
            installer,
            release,
            registry,
        } => {
            let loaded = super::stack::Loaded::load(config)?;
            let push = PushK3s {
                binary,
                installer,
                release,
                registry,
            };
            let pushed = push_k3s(&loaded.stack, push).await?;
            if printer.json() {
                let _ = printer.data(&pushed);
                return Ok(exit::OK);
            }
            for layer in &pushed.layers {
                let title = layer.title.as_deref().unwrap_or("config");
                let said = if layer.sent {
                    format!("sent, {} bytes", layer.size)
                } else {
                    "already there".to_string()
                };
                let _ = printer.line(&format!("{title} {}: {said}", layer.digest));
            }
            let _ = printer.line(&format!(
                "{} at {}: {}",
                pushed.reference, pushed.registry, pushed.digest
            ));
            Ok(exit::OK)
        }
        RegistryCmd::Install { input } => install(input, printer).await,
        RegistryCmd::Status { name, addr } => {
            let found = status(&Endpoint::default(), &name, &addr)
                .await
                .map_err(|e| CliError::new(e.message))?;
            let _ = printer.data(&found);
            Ok(exit::OK)
        }
    }
}

async fn install(input: PathBuf, printer: &Printer) -> Result<u8, CliError> {
    let (code, output) =
        super::start_from_file::<RegistryOutput>("registry-install", &input, printer).await?;
    let Some(output) = output else {
        return Ok(code);
    };
    let at = output.published.as_deref().unwrap_or(&output.addr);
    if printer.json() {
        let _ = printer.data(&output);
    } else if output.changed() {
        let _ = printer.line(&format!("the registry at {at} is installed"));
    } else {
        let _ = printer.line(&format!("the registry at {at}: nothing changed"));
    }
    Ok(code)
}
