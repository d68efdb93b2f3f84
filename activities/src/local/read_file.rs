//! Reads a small local file once it exists: what another process writes when it is ready
//! (a lab host's public host key). Read-only, so its probe is the read itself.

use std::path::PathBuf;
use std::time::Duration;

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, PollPolicy};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFileWhenReady {
    pub path: PathBuf,
    /// How long to wait for the file.
    pub timeout: Duration,
}

/// How often to look for the file (the deadline is the step's `timeout`).
const FILE_POLL: PollPolicy = PollPolicy::new(100, 0);

impl ReadFileWhenReady {
    fn read(&self) -> Result<Option<String>, ActivityError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ActivityError::permanent(format!(
                "reading {}: {e}",
                self.path.display()
            ))),
        }
    }
}

impl Activity for ReadFileWhenReady {
    type Output = String;

    fn kind(&self) -> &'static str {
        "read-file"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, _cx: &ActivityCx) -> Result<Option<String>, ActivityError> {
        self.read()
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<String, ActivityError> {
        let mut poll = FILE_POLL.within(self.timeout).start();
        while poll
            .tick_unless(cx.cancel_token())
            .await
            .map_err(|_| ActivityError::permanent("cancelled"))?
        {
            if let Some(text) = self.read()? {
                return Ok(text);
            }
        }
        Err(ActivityError::transient(format!(
            "{} did not appear within {:?}",
            self.path.display(),
            self.timeout
        )))
    }
}
