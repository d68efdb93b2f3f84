//! The `foundry` command line: parses, calls the engine and workflows, renders. No business
//! logic lives here.

mod commands;
mod exit;
mod printer;
mod prompt;
mod render;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::printer::{Output, Printer};

const AFTER_HELP: &str = "\
Environment:
  FOUNDRY_HOME        where journals and local secrets live (default: ~/.foundry)
  FOUNDRY_LOG         log filter, e.g. `debug` or `foundry_core=trace` (logs go to stderr)
  FOUNDRY_INPUT_<KEY> the answer to a run's question with that key
  FOUNDRY_CONFIG      the stack config, when --config is not given
  FOUNDRY_JOURNAL     a team's shared journal, postgres://user@host:port/database (its
                      password in ~/.pgpass); unset, runs are kept in the home
  FOUNDRY_LEASE_TTL   how long a run driven from another machine stays locked after that
                      machine is last heard from (default 60s)
  FOUNDRY_KEYRING     where Foundry's OpenBAO token is kept: `auto` (the OS keyring, else
                      a 0600 file in the home, with a warning), `off` (the file) or
                      `required` (the OS keyring, else an error)
  NO_COLOR            no colours

Exit codes: 0 ok, 1 error, 2 usage, 3 run failed, 4 run paused (retries exhausted),
5 run waits for input, 6 run driven by another process, 7 run cancelled, 130 interrupted.";

/// Stand up and operate a self-hosted stack on your own Linux hosts.
#[derive(Debug, Parser)]
#[command(name = "foundry", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    /// How to print results: `human`, or `json` (one JSON object per line on stdout).
    #[arg(long, short = 'o', global = true, value_enum, default_value = "human")]
    output: Output,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    /// The stack config (else $FOUNDRY_CONFIG, else the only *.yaml in $FOUNDRY_HOME).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, inspect, resume and cancel workflow runs.
    #[command(subcommand, visible_alias = "wf")]
    Workflow(commands::workflow::WorkflowCmd),
    /// The journal of runs in flight: move them between the home and a team's PostgreSQL.
    #[command(subcommand)]
    Journal(commands::journal::JournalCmd),
    /// A local lab of Debian hosts with sshd, to practise on and to test against.
    #[command(subcommand)]
    Lab(commands::lab::LabCmd),
    /// Your hosts: add them, configure them for Foundry, list them live, open a shell.
    #[command(subcommand)]
    Host(commands::host::HostCmd),
    /// The stack config: write one, check it, show it, list them.
    #[command(subcommand)]
    Config(commands::config::ConfigCmd),
    /// Set up the whole stack on your hosts as one resumable run.
    Setup(commands::setup::Args),
    /// The whole stack the config places: install it as one run, its status, validate.
    #[command(subcommand)]
    Stack(commands::stack::StackCmd),
    /// The K3s cluster: make it, join and remove nodes, see it live.
    #[command(subcommand)]
    Cluster(commands::cluster::ClusterCmd),
    /// The stack's components one by one (OpenBAO, PowerDNS, the registry): list, install, status.
    #[command(subcommand)]
    Component(commands::component::ComponentCmd),
    /// The hosts' network: plan the stack's addresses, detect MACs, validate it live.
    #[command(subcommand)]
    Network(commands::network::NetworkCmd),
    /// The stack's DNS: zones, records, and what each server answers for a name.
    #[command(subcommand)]
    Dns(commands::dns::DnsCmd),
    /// The stack's secrets in OpenBAO: set one, show one, list them.
    #[command(subcommand)]
    Secret(commands::secret::SecretCmd),
    /// A completion script for your shell, written to stdout.
    #[command(after_help = "\
Examples:
  source <(foundry completions bash)                 # in ~/.bashrc
  foundry completions zsh > \"${fpath[1]}/_foundry\"
  foundry completions fish > ~/.config/fish/completions/foundry.fish")]
    Completions {
        /// The shell to write it for.
        shell: clap_complete::Shell,
    },
    #[command(subcommand, hide = true)]
    Openbao(commands::openbao::OpenbaoCmd),
    #[command(subcommand, hide = true)]
    Registry(commands::registry::RegistryCmd),
}

/// Foundry's own crates: `-v` to `-vvv` raise their level.
const OWN_CRATES: [&str; 5] = [
    "foundry",
    "foundry_cli",
    "foundry_core",
    "foundry_activities",
    "foundry_workflows",
];

/// Crates whose debug and trace output carries request and response bodies, headers or
/// packets (a container's environment, a token header): they never log above `info`,
/// whatever the filter says, since those can hold secrets.
const BODY_LOGGERS: [&str; 7] = [
    "bollard",
    "russh",
    "hyper",
    "hyper_util",
    "reqwest",
    "h2",
    "zbus",
];

/// The log filter: `FOUNDRY_LOG` when set, else `warn` with Foundry's crates at the level
/// `-v` asks; either way, the body loggers capped at `info`.
fn log_filter(verbose: u8, from_env: Option<&str>) -> EnvFilter {
    let own = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let default = std::iter::once("warn".to_string())
        .chain(OWN_CRATES.iter().map(|c| format!("{c}={own}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut filter = from_env
        .and_then(|text| EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    for target in BODY_LOGGERS {
        if let Ok(cap) = format!("{target}=info").parse() {
            filter = filter.add_directive(cap);
        }
    }
    filter
}

fn init_logging(verbose: u8) {
    let from_env = std::env::var("FOUNDRY_LOG").ok();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(log_filter(verbose, from_env.as_deref()))
        .with_ansi(printer::stderr_wants_color())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Runs the command line and returns the process's exit code.
pub fn run() -> ExitCode {
    foundry_core::journal::install_panic_hook();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return exit::code(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    if let Command::Completions { shell } = cli.command {
        return completions(shell);
    }
    init_logging(cli.verbose);
    foundry_workflows::keys::install_key_vault();
    let printer = Printer::new(cli.output);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.note(&format!("error: cannot start the async runtime: {e}"));
            return exit::code(exit::ERROR);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Workflow(cmd) => commands::workflow::run(cmd, &printer).await,
            Command::Journal(cmd) => commands::journal::run(cmd, &printer).await,
            Command::Lab(cmd) => commands::lab::run(cmd, &printer).await,
            Command::Host(cmd) => commands::host::run(cmd, &printer, cli.config.as_deref()).await,
            Command::Config(cmd) => {
                commands::config::run(cmd, &printer, cli.config.as_deref()).await
            }
            Command::Setup(args) => {
                commands::setup::run(args, &printer, cli.config.as_deref()).await
            }
            Command::Stack(cmd) => commands::stack::run(cmd, &printer, cli.config.as_deref()).await,
            Command::Cluster(cmd) => {
                commands::cluster::run(cmd, &printer, cli.config.as_deref()).await
            }
            Command::Component(cmd) => {
                commands::component::run(cmd, &printer, cli.config.as_deref()).await
            }
            Command::Network(cmd) => {
                commands::network::run(cmd, &printer, cli.config.as_deref()).await
            }
            Command::Dns(cmd) => commands::dns::run(cmd, &printer, cli.config.as_deref()).await,
            Command::Secret(cmd) => {
                commands::secret::run(cmd, &printer, cli.config.as_deref()).await
            }
            Command::Completions { .. } => Ok(exit::OK),
            Command::Openbao(cmd) => commands::openbao::run(cmd, &printer).await,
            Command::Registry(cmd) => {
                commands::registry::run(cmd, &printer, cli.config.as_deref()).await
            }
        }
    });
    match result {
        Ok(code) => exit::code(code),
        Err(e) => {
            if !e.message.is_empty() {
                printer.note(&format!(
                    "{} {}",
                    printer.paint("error:", "1;31"),
                    e.message
                ));
            }
            if let Some(hint) = &e.hint {
                printer.note(&format!("{} {hint}", printer.paint("hint:", "1;36")));
            }
            exit::code(e.code)
        }
    }
}

/// Writes `shell`'s completion script for every visible command to stdout. Made in memory
/// first: the generator panics on a write error, and a closed pipe is no reason to.
fn completions(shell: clap_complete::Shell) -> ExitCode {
    use clap::CommandFactory;
    use std::io::Write;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "foundry", &mut script);
    let mut out = std::io::stdout().lock();
    match out.write_all(&script).and_then(|()| out.flush()) {
        Ok(()) => exit::code(exit::OK),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit::code(exit::OK),
        Err(_) => exit::code(exit::ERROR),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_loggers_never_log_above_info() {
        for (verbose, env) in [
            (3, None),
            (0, Some("trace")),
            (0, Some("bollard=trace,trace")),
        ] {
            let filter = log_filter(verbose, env).to_string();
            for target in BODY_LOGGERS {
                assert!(
                    filter.contains(&format!("{target}=info")),
                    "{verbose} {env:?}: {filter}"
                );
                assert!(
                    !filter.contains(&format!("{target}=trace"))
                        && !filter.contains(&format!("{target}=debug")),
                    "{verbose} {env:?}: {filter}"
                );
            }
        }
        assert!(
            log_filter(2, None)
                .to_string()
                .contains("foundry_core=debug")
        );
    }
}
