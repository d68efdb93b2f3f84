//! A remote check-and-change script: it looks, changes only what differs, and says which
//! (`changed` or `unchanged` as its last line of output), in one round trip.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy};
use serde::{Deserialize, Serialize};

use super::{SshExec, command_line};
use crate::local::CommandOutput;

/// An [`SshExec`] whose command reports whether it changed something.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SshChange {
    pub exec: SshExec,
}

/// What the journal keeps: whether the script changed something.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub changed: bool,
}

impl Activity for SshChange {
    type Output = Change;

    fn kind(&self) -> &'static str {
        "ssh-change"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Rerun
    }

    fn retry_policy(&self) -> RetryPolicy {
        self.exec.policy.clone()
    }

    /// The script is its own check: a step in doubt runs it again.
    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<Change>, ActivityError> {
        Ok(None)
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<Change, ActivityError> {
        let exec = &self.exec;
        let line = command_line(&exec.argv, exec.sudo)?;
        let (code, last_out, last_err) = exec.run_line(&line, exec.stdin.as_ref(), cx).await?;
        let what = format!("{}: `{}`", exec.target, cx.step());
        CommandOutput::from_exit(&what, code.into(), last_err)?;
        match last_out.as_deref().map(str::trim) {
            Some("changed") => Ok(Change { changed: true }),
            // Unchanged now, but the attempt in doubt before this one may have changed it.
            Some("unchanged") => Ok(Change {
                changed: cx.rerun_in_doubt(),
            }),
            other => Err(ActivityError::permanent(format!(
                "{what}: expected `changed` or `unchanged` as its last line, got {:?}",
                other.unwrap_or("nothing")
            ))),
        }
    }
}
