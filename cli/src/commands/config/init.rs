use std::path::{Path, PathBuf};

use foundry_core::Home;
use foundry_workflows::config::{self, TEMPLATE};

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Write a new stack config: a commented template, or one from your answers.
///
/// With --interactive it asks for the network, the gateway and a DNS zone. It goes to --config PATH when given, else to $FOUNDRY_HOME/NAME.yaml. An existing
/// file is never overwritten unless --force says so.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry config init
  foundry config init --name prod --interactive
  foundry --config ./stack.yaml config init --force")]
pub struct Args {
    /// The config's name in $FOUNDRY_HOME (ignored with --config).
    #[arg(long, default_value = "stack")]
    name: String,
    /// Ask for the stack's network and zone on the terminal.
    #[arg(long)]
    interactive: bool,
    /// Replace a config that exists at that path.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args, printer: &Printer, flag: Option<&Path>) -> Result<u8, CliError> {
    let path: PathBuf = match flag {
        Some(path) => path.to_path_buf(),
        None => {
            config::check_host_name(&args.name)
                .map_err(|e| CliError::new(e.replace("host name", "config name")))?;
            Home::from_env()?.root().join(format!("{}.yaml", args.name))
        }
    };
    if path.exists() && !args.force {
        return Err(CliError::new(format!("{} exists already", path.display()))
            .with_hint("`foundry config show` prints it; --force replaces it"));
    }
    if args.interactive {
        if !crate::commands::interactive() {
            return Err(CliError::new("--interactive needs a terminal to ask on")
                .with_hint("run it in a terminal, or drop --interactive for the template"));
        }
        let stack = ask()?;
        config::save(
            &path,
            &stack,
            "Foundry stack config, written by `foundry config init`",
        )?;
    } else {
        config::write_text(&path, TEMPLATE)?;
    }
    if printer.json() {
        let _ = printer.data(&serde_json::json!({"config": path.display().to_string()}));
    } else {
        let _ = printer.line(&format!("wrote {}", path.display()));
        printer.note("next: `foundry host add` for each host, then `foundry config validate`");
    }
    Ok(exit::OK)
}

/// The questions of `--interactive`, each answer checked as the config checks it.
fn ask() -> Result<config::StackConfig, CliError> {
    use dialoguer::{Confirm, Input};
    let failed = |e: dialoguer::Error| CliError::new(format!("reading the answer: {e}"));
    let subnet: config::Cidr = Input::new()
        .with_prompt("Network of your hosts")
        .default("192.168.1.0/24".parse().map_err(CliError::new)?)
        .interact_text()
        .map_err(failed)?;
    let first = u32::from(subnet.network()).saturating_add(1);
    let gateway: std::net::Ipv4Addr = Input::new()
        .with_prompt("Gateway")
        .default(std::net::Ipv4Addr::from(first))
        .validate_with(|a: &std::net::Ipv4Addr| {
            if subnet.contains(*a) {
                Ok(())
            } else {
                Err(format!("{a} is outside {subnet}"))
            }
        })
        .interact_text()
        .map_err(failed)?;
    let zone: config::DnsName = Input::new()
        .with_prompt("DNS zone for the infrastructure's names")
        .default("infra.local".parse().map_err(CliError::new)?)
        .interact_text()
        .map_err(failed)?;
    let public = !zone.is_local()
        && Confirm::new()
            .with_prompt("Is that zone also answered on the internet (split horizon)?")
            .default(false)
            .interact()
            .map_err(failed)?;
    let public_cname = if public {
        Some(
            Input::<config::DnsName>::new()
                .with_prompt("Public name outside clients are sent to (your DDNS name)")
                .interact_text()
                .map_err(failed)?,
        )
    } else {
        None
    };
    Ok(config::StackConfig {
        network: Some(config::Network {
            subnet: Some(config::At::new(subnet)),
            netmask: None,
            gateway: config::At::new(gateway),
            dhcp_range: None,
            openbao_hosts: Vec::new(),
            dns_hosts: Vec::new(),
            zot_hosts: Vec::new(),
            truenas_hosts: Vec::new(),
            k8s_vip: None,
        }),
        dns: Some(config::Dns {
            infrastructure_zones: vec![config::Zone {
                name: config::At::new(zone),
                public,
                public_cname,
                records: Vec::new(),
            }],
            ..config::Dns::default()
        }),
        ..config::StackConfig::default()
    })
}
