//! Uploads a file to a host over SSH, with its mode and owner; probed by hash, so an
//! unchanged file is left alone (and said to be unchanged).

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy, SecretValue};
use sha2::{Digest, Sha256};

use super::{SshPool, SshTarget, command_line};
use crate::local::FileOutput;

/// Compares first (content by SHA-256, mode and owner), then writes beside the file and
/// renames over it, so the file is never half written. Prints `changed` or `unchanged`.
const WRITE: &str = r#"
set -eu
path=$1 mode=$2 owner=$3 sum=$4 check=$5
if [ -f "$path" ] && [ "$(sha256sum < "$path" | cut -c1-64)" = "$sum" ] && [ "$(stat -c '%a %U:%G' "$path")" = "$mode $owner" ]; then
  [ "$check" = probe ] || cat > /dev/null
  echo unchanged; exit 0
fi
[ "$check" = probe ] && { echo absent; exit 0; }
tmp=$(mktemp "$path.foundry-XXXXXX")
trap 'rm -f "$tmp"' EXIT
cat > "$tmp"
chmod "$mode" "$tmp"
chown "$owner" "$tmp"
mv -f "$tmp" "$path"
trap - EXIT
echo changed
"#;

/// A file on a host with exactly this content, mode and owner. The content is never
/// journaled, logged or put on a command line: it travels on the command's stdin.
#[derive(Clone, Debug)]
pub struct SshUpload {
    pub target: SshTarget,
    pub path: String,
    pub content: SecretValue,
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
    /// Write it as root (needed for a file the login user does not own).
    pub sudo: bool,
}

impl SshUpload {
    fn line(&self, check: &str) -> Result<String, ActivityError> {
        let sum = hex::encode(Sha256::digest(self.content.expose().as_bytes()));
        let argv = [
            "sh",
            "-c",
            WRITE,
            "foundry-upload",
            &self.path,
            &format!("{:o}", self.mode),
            &self.owner,
            &sum,
            check,
        ]
        .map(String::from);
        command_line(&argv, self.sudo)
    }

    async fn send(&self, check: &str, cx: &ActivityCx) -> Result<String, ActivityError> {
        let line = self.line(check)?;
        let input = (check == "write").then(|| self.content.expose().as_bytes());
        let session = SshPool::global().session(&self.target).await?;
        let mut out = Vec::new();
        let mut err = Vec::new();
        let code = session
            .channel()
            .await?
            .exec_with_input(&line, input, cx, |stream, data| match stream {
                foundry_core::Stream::Stdout => out.extend_from_slice(data),
                foundry_core::Stream::Stderr => err.extend_from_slice(data),
            })
            .await?;
        if code != 0 {
            let err = String::from_utf8_lossy(&err);
            return Err(ActivityError::transient(format!(
                "{}: writing {} exited with status {code}: {}",
                self.target,
                self.path,
                err.trim().lines().last().unwrap_or_default()
            )));
        }
        Ok(String::from_utf8_lossy(&out).trim().to_string())
    }

    fn output(&self, changed: bool) -> FileOutput {
        FileOutput {
            path: self.path.clone().into(),
            changed,
        }
    }
}

impl Activity for SshUpload {
    type Output = FileOutput;

    fn kind(&self) -> &'static str {
        "ssh-upload"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<FileOutput>, ActivityError> {
        Ok((self.send("probe", cx).await? == "unchanged").then(|| self.output(false)))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<FileOutput, ActivityError> {
        let said = self.send("write", cx).await?;
        Ok(self.output(said == "changed"))
    }
}
