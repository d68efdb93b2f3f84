//! `foundry openbao`, hidden until the setup command uses it: `install` runs
//! `openbao-install` from a JSON input file and prints what it changed; `status` asks the
//! container and the server, live.

use std::path::PathBuf;

use foundry_workflows::openbao::{Endpoint, OpenbaoOutput, status};

use crate::exit::{self, CliError};
use crate::printer::Printer;

#[derive(Debug, clap::Subcommand)]
pub enum OpenbaoCmd {
    /// Install OpenBAO from an `openbao-install` input file (JSON).
    Install {
        #[arg(long, short = 'i')]
        input: PathBuf,
    },
    /// OpenBAO's container and health, asked now.
    Status {
        /// The container's name.
        #[arg(long)]
        name: String,
        /// The API's address (`http://10.77.3.20:8200`).
        #[arg(long)]
        addr: String,
    },
}

pub async fn run(cmd: OpenbaoCmd, printer: &Printer) -> Result<u8, CliError> {
    match cmd {
        OpenbaoCmd::Install { input } => install(input, printer).await,
        OpenbaoCmd::Status { name, addr } => {
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
        super::start_from_file::<OpenbaoOutput>("openbao-install", &input, printer).await?;
    let Some(output) = output else {
        return Ok(code);
    };
    if printer.json() {
        let _ = printer.data(&output);
    } else if output.changed() {
        let _ = printer.line(&format!("OpenBAO at {} is installed", output.addr));
    } else {
        let _ = printer.line(&format!("OpenBAO at {}: nothing changed", output.addr));
    }
    Ok(code)
}
