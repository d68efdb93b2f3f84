use foundry_workflows::lab::LabOutput;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Stand up a local lab of Debian hosts with sshd, on a private Docker network.
///
/// The first time, builds the lab's host image from Debian's packages (debootstrap; about
/// a minute). Each host has an `admin` user with sudo and the lab's SSH key. A durable
/// run: interrupted, `foundry workflow resume` continues it. Run it again to add hosts.
///
/// One host, the engine host (host-1 unless `--engine-host` names another), gets this
/// machine's Docker Engine socket at /var/run/docker.sock, and `admin` may use it over
/// SSH: containers can be managed there as on a real server. That host can control every
/// container on this machine; `--engine-host none` gives the socket to no host.
///
/// With `--own-engine`, the engine host runs a Docker Engine of its own instead (its
/// container gets the capabilities dockerd needs, not this machine's socket): installs on
/// it cross SSH to an Engine that has nothing of this machine's, and every image reaches
/// it by a pull or a load through SSH, as on a real server. The lab's network is on that
/// Engine too, so services placed there answer at their lab addresses.
///
/// With `--systemd`, the hosts run systemd as PID 1, as real K3s hosts do (sshd is a unit;
/// each host may move addresses: NET_ADMIN), from an image with Debian's etcd; and the
/// lab's directory gets the K3s stand-ins, `k3s` and `install.sh`, for a cluster config to
/// name as the binary and installer to upload (no K3s binary can be had here).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry lab up
  foundry lab up --hosts 10 --name big --subnet 10.77.5.0/24 --engine-host host-3
  foundry lab up --engine-host none
  foundry lab up --name remote --hosts 1 --own-engine
  foundry lab up --name k3s --hosts 4 --systemd
  ssh -i ~/.foundry/labs/default/id_ed25519 admin@10.77.0.11")]
pub struct Args {
    /// How many hosts.
    #[arg(long, default_value_t = 3)]
    hosts: u32,
    /// The lab's name.
    #[arg(long, default_value = "default")]
    name: String,
    /// The lab's network, a /24: hosts get .11, .12, … [default: the lab's own when it
    /// exists, else the first 10.77.N.0/24 no Docker network uses]
    #[arg(long)]
    subnet: Option<String>,
    /// The Debian mirror the image is built from.
    #[arg(
        long,
        env = "FOUNDRY_LAB_MIRROR",
        default_value = "http://deb.debian.org/debian"
    )]
    mirror: String,
    /// The host that gets the Docker Engine's socket (`host-2`), or `none`.
    #[arg(long, default_value = foundry_workflows::lab::DEFAULT_ENGINE_HOST)]
    engine_host: String,
    /// The engine host runs a Docker Engine of its own instead of getting this machine's
    /// socket.
    #[arg(long)]
    own_engine: bool,
    /// The hosts run systemd as PID 1, and the lab gets the K3s stand-ins.
    #[arg(long, conflicts_with = "own_engine")]
    systemd: bool,
}

pub async fn run(args: Args, printer: &Printer) -> Result<u8, CliError> {
    super::require_engine()?;
    let (engine, bar) = crate::commands::engine(printer)?;
    let (dir, config) = super::lab_paths(&args.name)?;
    let subnet = foundry_workflows::lab::choose_subnet(&args.name, args.subnet.as_deref())
        .await
        .map_err(|e| CliError {
            code: exit::ERROR,
            message: e.message,
            hint: e.hint,
        })?;
    let input = serde_json::json!({
        "name": args.name,
        "hosts": args.hosts,
        "subnet": subnet,
        "dir": dir,
        "config": config,
        "mirror": args.mirror,
        "engine_host": (args.engine_host != "none").then_some(&args.engine_host),
        "own_engine": args.own_engine,
        "systemd": args.systemd,
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
            .map(|h| {
                vec![
                    h.name.clone(),
                    h.address.clone(),
                    h.user.clone(),
                    engine_mark(h.engine, h.own_engine),
                ]
            })
            .collect();
        let _ = printer.table(&["HOST", "ADDRESS", "USER", "ENGINE"], &rows);
        if let Some(dir) = &lab.k3s_standin {
            printer.note(&format!(
                "the K3s stand-ins (k3s, install.sh) are in {}",
                dir.display()
            ));
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

/// What the ENGINE column says of a host.
pub(super) fn engine_mark(engine: bool, own: bool) -> String {
    match (engine, own) {
        (true, true) => format!("own, {}", foundry_workflows::lab::ENGINE_SOCKET),
        (true, false) => foundry_workflows::lab::ENGINE_SOCKET.into(),
        (false, _) => String::new(),
    }
}
