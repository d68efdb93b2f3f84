//! `foundry network`: the hosts' network as they report it over SSH, and the addresses the
//! stack needs. `detect` asks each host for its primary interface (the one with the default
//! route), its address and MAC; `plan` proposes the config's `network:` section from that
//! and writes it; `validate` checks the addresses and probes them live. Nothing here is
//! journaled: every command asks the hosts again.

mod detect;
pub mod phase;
mod plan;
mod probe;
mod validate;

pub use detect::{HostNetwork, detect};
pub use plan::{FieldChange, Proposal, plan, write};
pub use validate::{Check, Status, before_stack, probe_vip_ahead, validate};

/// A failure of a `network` command: what went wrong, and what the user can do.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NetworkError {
    pub message: String,
    pub hint: Option<String>,
}

impl NetworkError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        NetworkError {
            message: message.into(),
            hint: None,
        }
    }

    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<crate::config::ConfigError> for NetworkError {
    fn from(e: crate::config::ConfigError) -> Self {
        NetworkError {
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

/// How a command line runs on a host: one command over the host's pooled connection, its
/// standard output, or why it failed (its exit status and last line of stderr).
async fn run_on(
    target: &foundry_activities::ssh::SshTarget,
    argv: &[&str],
) -> Result<Vec<u8>, String> {
    use foundry_core::{ActivityCx, Stream};
    let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
    let line = foundry_activities::ssh::command_line(&argv, false).map_err(|e| e.message)?;
    let pooled = foundry_activities::ssh::SshPool::global()
        .session(target)
        .await
        .map_err(|e| e.message)?;
    let channel = pooled.channel().await.map_err(|e| e.message)?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let cx = ActivityCx::standalone("network");
    let code = channel
        .exec(&line, &cx, |stream, data| match stream {
            Stream::Stdout => out.extend_from_slice(data),
            Stream::Stderr => err.extend_from_slice(data),
        })
        .await
        .map_err(|e| e.message)?;
    if code == 0 {
        return Ok(out);
    }
    let err = String::from_utf8_lossy(&err);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    Err(match code {
        127 => format!("`{}` is not installed on the host", argv[0]),
        _ => format!(
            "`{}` exited with status {code}: {}",
            argv.join(" "),
            last.trim()
        ),
    })
}

/// The stack config at `path`, read as the `network` commands read it: what its own
/// checks refuse comes beside it, not as an error (`validate` reports it as a check;
/// `plan` proposes a section that holds).
pub fn load(
    path: &std::path::Path,
) -> Result<(crate::config::StackConfig, Option<String>), NetworkError> {
    let text = crate::config::read_text(path)?;
    Ok(crate::config::parse_unchecked(path, &text)?)
}
