//! `foundry host ssh`: the system `ssh` with the host's key and a known_hosts file written
//! from the config, so host keys are checked strictly.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use foundry_activities::ssh::command_line;

use super::HostError;
use crate::config::StackConfig;

/// A program and its arguments, to exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshCommand {
    pub program: String,
    pub args: Vec<String>,
}

/// Writes `home/known_hosts` from every host key in `config`, and gives the `ssh` command
/// that opens a shell on `name` (or runs `command` there, each word as it is).
pub fn ssh_command(
    config: &StackConfig,
    home: &Path,
    name: &str,
    command: &[String],
) -> Result<SshCommand, HostError> {
    let entry = config.host(name).ok_or_else(|| {
        HostError::new(format!("no host `{name}` in the config"))
            .hint("`foundry host list` shows the hosts")
    })?;
    let target = super::target_of(entry)?;
    if !target.key.exists() {
        return Err(HostError::new(format!(
            "host {name}: the key {} does not exist",
            target.key.display()
        ))
        .hint(format!("`foundry host add {name}` makes a new one")));
    }
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
        target.key.display().to_string(),
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
        target.address.clone(),
    ];
    if !command.is_empty() {
        args.push("--".into());
        args.push(command_line(command, false)?);
    }
    Ok(SshCommand {
        program: "ssh".into(),
        args,
    })
}
