//! Runs a command on a host over SSH, from an argv.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy, SecretValue};
use serde::{Deserialize, Serialize};

use super::{SshPool, SshTarget, command_line};
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
    /// How long the command (or its probe) may run before the attempt fails (transiently);
    /// `None` for no limit. For commands longer than a connection may live, use
    /// [`super::SshDetached`].
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// What the command reads on stdin (then end of file): the way to give it a secret,
    /// which on its command line any user of the host could read in the process list.
    /// Never serialized; the probe gets none.
    #[serde(skip)]
    pub stdin: Option<SecretValue>,
}

impl SshExec {
    pub fn new(target: SshTarget, argv: Vec<String>) -> Self {
        SshExec {
            target,
            argv,
            sudo: false,
            probe: None,
            policy: RetryPolicy::default(),
            timeout_ms: None,
            stdin: None,
        }
    }

    /// Runs `line` on the host's pooled connection, within the timeout, `input` on its
    /// stdin: its exit code, last line of stdout and last line of stderr.
    pub(super) async fn run_line(
        &self,
        line: &str,
        input: Option<&SecretValue>,
        cx: &ActivityCx,
    ) -> Result<(u32, Option<String>, Option<String>), ActivityError> {
        let session = SshPool::global().session(&self.target).await?;
        let input = input.map(|v| v.expose().as_bytes());
        let Some(ms) = self.timeout_ms else {
            return session.run_capture(line, input, cx).await;
        };
        tokio::time::timeout(
            std::time::Duration::from_millis(ms),
            session.run_capture(line, input, cx),
        )
        .await
        .unwrap_or_else(|_| {
            Err(ActivityError::transient(format!(
                "{}: `{}` did not end within {ms} ms",
                self.target, self.argv[0]
            )))
        })
    }
}

impl Activity for SshExec {
    type Output = CommandOutput;

    fn kind(&self) -> &'static str {
        "ssh"
    }

    /// A command with a probe is decided by it; one without is run again.
    fn in_doubt(&self) -> InDoubt {
        match self.probe {
            Some(_) => InDoubt::Probe,
            None => InDoubt::Rerun,
        }
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.policy.clone()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<CommandOutput>, ActivityError> {
        let Some(probe) = &self.probe else {
            return Ok(None);
        };
        let line = command_line(probe, self.sudo)?;
        let (code, _, _) = self.run_line(&line, None, cx).await?;
        Ok(CommandOutput::from_probe(code.into()))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<CommandOutput, ActivityError> {
        let line = command_line(&self.argv, self.sudo)?;
        let (code, _, last_err) = self.run_line(&line, self.stdin.as_ref(), cx).await?;
        let what = format!("{}: `{}`", self.target, self.argv[0]);
        CommandOutput::from_exit(&what, code.into(), last_err)
    }
}
