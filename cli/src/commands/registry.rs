//! `foundry registry`, hidden until the setup command uses it: `install` runs
//! `registry-install` from an input file and prints what it changed; `status` asks the
//! container and the registry, live.

use std::path::PathBuf;

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
}

pub async fn run(cmd: RegistryCmd, printer: &Printer) -> Result<u8, CliError> {
    match cmd {
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
