//! `foundry host ssh`: the system `ssh` with the host's key and a known_hosts file written
//! from the config, so host keys are checked strictly. A key kept in OpenBAO is handed to
//! `ssh` as a file in this process's memory, never on a disk.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use foundry_activities::ssh::{KeySource, MemoryKeyFile, command_line};

use super::HostError;
use crate::config::StackConfig;

/// A program and its arguments, to exec; or, when `key` holds the key in memory, to run as
/// a child while `key` lives.
pub struct SshCommand {
    pub program: String,
    pub args: Vec<String>,
    pub key: Option<MemoryKeyFile>,
}

impl SshCommand {
    /// The command to run: `ssh` inherits none of foundry's secrets and answers
    /// (`FOUNDRY_SECRET_*`, `FOUNDRY_INPUT_*`), which its proxy or local commands could read.
    pub fn command(&self) -> std::process::Command {
        let mut command = std::process::Command::new(&self.program);
        command.args(&self.args);
        foundry_activities::local::without_private_env(&mut command);
        command
    }
}

/// Writes `home/known_hosts` from every host key in `config`, and gives the `ssh` command
/// that opens a shell on `name` (or runs `command` there, each word as it is).
pub async fn ssh_command(
    config: &StackConfig,
    home: &Path,
    name: &str,
    command: &[String],
) -> Result<SshCommand, HostError> {
    let entry = config.host(name).ok_or_else(|| {
        HostError::new(format!("no host `{name}` in the config"))
            .hint("`foundry host list` shows the hosts")
    })?;
    let target = config.ssh_target(entry)?;
    let (key_path, in_memory) = match &target.key {
        KeySource::File(path) if !path.exists() => {
            return Err(HostError::new(format!(
                "host {name}: the key {} does not exist",
                path.display()
            ))
            .hint(format!("`foundry host add {name}` makes a new one")));
        }
        KeySource::File(path) => (path.clone(), None),
        stored => {
            let key = MemoryKeyFile::new(&stored.private_key().await?)?;
            (key.path().to_path_buf(), Some(key))
        }
    };
    let known = home.join("known_hosts");
    let lines: String = config
        .hosts
        .iter()
        .filter_map(|h| {
            let key = h.host_key.as_deref()?;
            Some(if h.port == 22 {
                format!("{} {key}\n", h.address)
            } else {
                format!("[{}]:{} {key}\n", h.address, h.port)
            })
        })
        .collect();
    let write = |e: std::io::Error| HostError::new(format!("writing {}: {e}", known.display()));
    std::fs::create_dir_all(home).map_err(write)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&known)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .map_err(write)?;
    let mut args: Vec<String> = vec![
        "-i".into(),
        key_path.display().to_string(),
        "-o".into(),
        "IdentitiesOnly=yes".into(),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known.display()),
        "-o".into(),
        "GlobalKnownHostsFile=/dev/null".into(),
        "-p".into(),
        target.port.to_string(),
        "-l".into(),
        target.user.clone(),
        // Options end here: what follows is the host and the command, never an option.
        "--".into(),
        target.address.clone(),
    ];
    if !command.is_empty() {
        args.push(command_line(command, false)?);
    }
    Ok(SshCommand {
        program: "ssh".into(),
        args,
        key: in_memory,
    })
}
