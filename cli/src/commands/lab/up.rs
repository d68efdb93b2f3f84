use foundry_workflows::lab::LabOutput;

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render;

/// Stand up a local lab of Debian hosts with sshd, on a private Docker network.
///
/// The first time, builds the lab's host image from Debian's packages (debootstrap; about
/// a minute). Each host has an `admin` user with sudo and the lab's SSH key. A durable
/// run: interrupted, `foundry workflow resume` continues it. Run it again to add hosts.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry lab up
  foundry lab up --hosts 10 --name big --subnet 10.77.5.0/24
  ssh -i ~/.foundry/labs/default/id_ed25519 admin@10.77.0.11")]
pub struct Args {
    /// How many hosts.
    #[arg(long, default_value_t = 3)]
    hosts: u32,
    /// The lab's name.
    #[arg(long, default_value = "default")]
    name: String,
    /// The lab's network: hosts get .11, .12, …
    #[arg(long, default_value = "10.77.0.0/24")]
    subnet: String,
    /// The Debian mirror the image is built from.
    #[arg(
        long,
        env = "FOUNDRY_LAB_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    mirror: String,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    super::require_engine()?;
    let (engine, bar) = crate::commands::engine(printer)?;
    let (dir, config) = super::lab_paths(&args.name)?;
    let input = serde_json::json!({
        "name": args.name,
        "hosts": args.hosts,
        "subnet": args.subnet,
        "dir": dir,
        "config": config,
        "mirror": args.mirror,
    });
    let driver = engine.start("lab-up", input)?;
    let (code, output) = crate::commands::drive::drive(driver, printer, bar).await?;
    let Some(lab) = output.and_then(|o| serde_json::from_value::<LabOutput>(o).ok()) else {
        return Ok(code);
    };
    if !printer.json() {
        let rows: Vec<Vec<String>> = lab
            .hosts
            .iter()
            .map(|h| vec![h.name.clone(), h.address.clone(), h.user.clone()])
            .collect();
        for line in render::table(&["HOST", "ADDRESS", "USER"], &rows) {
            let _ = printer.line(&line);
        }
        if let Some(first) = lab.hosts.first() {
            printer.note(&format!(
                "hosts in {}; log in with: ssh -i {} {}@{}",
                lab.config.display(),
                lab.key.display(),
                first.user,
                first.address
            ));
        }
    }
    Ok(if code == exit::OK { exit::OK } else { code })
}
