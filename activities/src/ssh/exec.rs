//! Runs a command on a host over SSH, from an argv.

use foundry_core::{Activity, ActivityCx, ActivityError, RetryPolicy};
use serde::{Deserialize, Serialize};

use super::{SshSession, SshTarget, command_line};
use crate::local::CommandOutput;

/// A program and its arguments, run on a host. Each word reaches the host as it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SshExec {
    pub target: SshTarget,
    pub argv: Vec<String>,
    /// Run it with `sudo` (the user needs passwordless sudo).
    pub sudo: bool,
    /// A read-only check: exit status 0 means the effect is already there.
    pub probe: Option<Vec<String>>,
    pub policy: RetryPolicy,
}

impl SshExec {
    pub fn new(target: SshTarget, argv: Vec<String>) -> Self {
        SshExec {
            target,
            argv,
            sudo: false,
            probe: None,
            policy: RetryPolicy::default(),
        }
    }
}

impl Activity for SshExec {
    type Output = CommandOutput;

    fn kind(&self) -> &'static str {
        "ssh"
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.policy.clone()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CommandOutput>, ActivityError> {
        let Some(probe) = &self.probe else {
            return Ok(None);
        };
        let line = command_line(probe, self.sudo)?;
        let session = SshSession::connect(&self.target).await?;
        let (code, _) = session.run(&line, cx).await?;
        Ok(CommandOutput::from_probe(code.into()))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CommandOutput, ActivityError> {
        let line = command_line(&self.argv, self.sudo)?;
        let session = SshSession::connect(&self.target).await?;
        let (code, last_err) = session.run(&line, cx).await?;
        let what = format!("{}: `{}`", self.target, self.argv[0]);
        CommandOutput::from_exit(&what, code.into(), last_err)
    }
}
