use std::io::BufRead;
use std::path::Path;

use foundry_core::SecretValue;
use foundry_workflows::host::{AddRequest, Login, add, check_host_key};
use foundry_workflows::keys::FileKeyStore;

use crate::exit::{self, CliError};
use crate::printer::Printer;

/// Add a host: log in once by password (or agent), give it a key of its own, record it.
///
/// Foundry makes a unique ed25519 key for the host, installs it in the user's
/// ~/.ssh/authorized_keys there, proves a key login works, keeps the key under
/// $FOUNDRY_HOME/keys/ (0600) and records the host, its user, port, key and host key in
/// the stack config. From then on only that key is used. On a terminal, what is missing
/// is asked (the password hidden). A host seen for the first time is trusted only once
/// you accept its host key's fingerprint, or with --accept-new-host-key. Running it again
/// changes nothing.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  foundry host add web-1 --address 10.0.0.5 --user admin
  printf '%s\\n' \"$PASSWORD\" | foundry host add web-1 --address 10.0.0.5 --user admin --password-stdin --accept-new-host-key
  foundry host add web-2 --address 10.0.0.6 --user admin --agent")]
pub struct Args {
    /// The host's name in the config: letters, digits, `-` and `.`.
    name: String,
    /// Its address (IP or DNS name).
    #[arg(long)]
    address: Option<String>,
    /// The user to log in as (it needs sudo for `host configure`). Default: root.
    #[arg(long)]
    user: Option<String>,
    /// The SSH port.
    #[arg(long, default_value_t = 22)]
    port: u16,
    /// Read the password from the first line of stdin (for scripts).
    #[arg(long, conflicts_with = "agent")]
    password_stdin: bool,
    /// Log in the first time with a key from the SSH agent (SSH_AUTH_SOCK).
    #[arg(long)]
    agent: bool,
    /// Trust the host key the host offers now, without asking (for scripts).
    #[arg(long)]
    accept_new_host_key: bool,
}

fn ask(prompt: &str, default: Option<&str>) -> Result<String, CliError> {
    let mut input = dialoguer::Input::<String>::new().with_prompt(prompt);
    if let Some(d) = default {
        input = input.default(d.to_string());
    }
    input
        .interact_text()
        .map_err(|e| CliError::new(format!("reading the answer: {e}")))
}

fn login(args: &Args, interactive: bool) -> Result<Login, CliError> {
    if args.agent {
        return Ok(Login::Agent);
    }
    if args.password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::new(format!("reading the password from stdin: {e}")))?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(CliError::new("--password-stdin: stdin holds no password"));
        }
        return Ok(Login::Password(SecretValue::new(password)));
    }
    if interactive {
        let password = dialoguer::Password::new()
            .with_prompt(format!(
                "password of {}",
                args.user.as_deref().unwrap_or("root")
            ))
            .interact()
            .map_err(|e| CliError::new(format!("reading the password: {e}")))?;
        return Ok(Login::Password(SecretValue::new(password)));
    }
    Err(CliError::new("no way to log in the first time: no terminal to ask a password on")
        .with_hint("pass --password-stdin (the password on stdin) or --agent (a key in your SSH agent)"))
}

pub async fn run(mut args: Args, printer: &Printer, config: Option<&Path>) -> Result<u8, CliError> {
    foundry_workflows::config::check_host_name(&args.name).map_err(CliError::new)?;
    let (home, selected) = crate::commands::select(config)?;
    let stack = selected.load_or_default()?;
    let interactive = crate::commands::interactive();
    let address = match (&args.address, interactive) {
        (Some(a), _) => a.clone(),
        (None, true) => ask("address", None)?,
        (None, false) => {
            return Err(
                CliError::new("the host's address is missing").with_hint("pass --address A")
            );
        }
    };
    let user = match (&args.user, interactive) {
        (Some(u), _) => u.clone(),
        (None, true) => ask("user", Some("root"))?,
        (None, false) => "root".into(),
    };
    args.user = Some(user.clone());
    let host_key = check_host_key(&stack, &args.name, &address, args.port).await?;
    if !host_key.known && !args.accept_new_host_key {
        let place = format!("{address}:{}", args.port);
        let accepted = interactive
            && dialoguer::Confirm::new()
                .with_prompt(format!(
                    "{place} is new; its host key is {}. Trust it?",
                    host_key.fingerprint
                ))
                .default(false)
                .interact()
                .map_err(|e| CliError::new(format!("reading the answer: {e}")))?;
        if !accepted {
            return Err(CliError::new(format!(
                "{place} is not trusted yet: it offers the host key {}; nothing was changed",
                host_key.fingerprint
            ))
            .with_hint(
                "compare it with `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the host, then run again with --accept-new-host-key (or answer on a terminal)",
            ));
        }
    }
    let request = AddRequest {
        name: args.name.clone(),
        address,
        user,
        port: args.port,
        login: login(&args, interactive)?,
        host_key: host_key.host_key,
    };
    let added = add(&selected, &request, &FileKeyStore::in_home(home.root())).await?;
    if printer.json() {
        let _ = printer.data(&added);
    } else {
        let what = if added.config_changed {
            "added"
        } else {
            "already added; nothing changed"
        };
        let _ = printer.line(&format!(
            "host {} {what}: {}@{}:{}, key {} ({}), config {}",
            added.host,
            added.user,
            added.address,
            added.port,
            added.key,
            added.key_fingerprint,
            added.config.display()
        ));
    }
    Ok(exit::OK)
}
