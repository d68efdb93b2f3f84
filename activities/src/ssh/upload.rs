//! Uploads a file to a host over SSH, with its mode and owner; probed by hash, so an
//! unchanged file is left alone (and said to be unchanged): from a value in memory
//! ([`SshUpload`], a secret or a rendered file) or from a file of this machine
//! ([`SshSendFile`], a binary: its bytes are sent only when the host's copy differs).

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy, SecretValue};
use serde::{Deserialize, Serialize};
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
mkdir -p "$(dirname "$path")"
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

/// The command line of [`WRITE`] for a file of this content's digest.
fn write_line(
    path: &str,
    mode: u32,
    owner: &str,
    sum: &str,
    check: &str,
    sudo: bool,
) -> Result<String, ActivityError> {
    let argv = [
        "sh",
        "-c",
        WRITE,
        "foundry-upload",
        path,
        &format!("{mode:o}"),
        owner,
        sum,
        check,
    ]
    .map(String::from);
    command_line(&argv, sudo)
}

/// Runs [`WRITE`] on the host, `input` on its stdin: what it printed (`changed`,
/// `unchanged`, `absent`).
async fn send_write(
    target: &SshTarget,
    path: &str,
    line: &str,
    input: Option<&[u8]>,
    cx: &ActivityCx,
) -> Result<String, ActivityError> {
    let session = SshPool::global().session(target).await?;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let code = session
        .channel()
        .await?
        .exec_with_input(line, input, cx, |stream, data| match stream {
            foundry_core::Stream::Stdout => out.extend_from_slice(data),
            foundry_core::Stream::Stderr => err.extend_from_slice(data),
        })
        .await?;
    if code != 0 {
        let err = String::from_utf8_lossy(&err);
        return Err(ActivityError::transient(format!(
            "{target}: writing {path} exited with status {code}: {}",
            err.trim().lines().last().unwrap_or_default()
        )));
    }
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

/// A file of this machine (`source`, whose SHA-256 is `sha256`) on a host at `path`, with
/// this mode and owner. Only the digest is journaled; the bytes are read when the host's
/// copy differs, and sent on the command's stdin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshSendFile {
    pub target: SshTarget,
    pub source: std::path::PathBuf,
    pub sha256: String,
    pub path: String,
    pub mode: u32,
    /// `user:group`.
    pub owner: String,
    pub sudo: bool,
}

impl SshSendFile {
    /// The file at `source`, its digest read now: the step's input names that content.
    pub fn of(
        target: SshTarget,
        source: &std::path::Path,
        path: &str,
        mode: u32,
    ) -> Result<SshSendFile, ActivityError> {
        let bytes = std::fs::read(source)
            .map_err(|e| ActivityError::permanent(format!("reading {}: {e}", source.display())))?;
        Ok(SshSendFile {
            target,
            source: source.to_path_buf(),
            sha256: hex::encode(Sha256::digest(&bytes)),
            path: path.to_string(),
            mode,
            owner: "root:root".into(),
            sudo: true,
        })
    }

    async fn send(&self, check: &str, cx: &ActivityCx) -> Result<String, ActivityError> {
        let line = write_line(
            &self.path,
            self.mode,
            &self.owner,
            &self.sha256,
            check,
            self.sudo,
        )?;
        let bytes = if check == "write" {
            let bytes = tokio::fs::read(&self.source).await.map_err(|e| {
                ActivityError::permanent(format!("reading {}: {e}", self.source.display()))
            })?;
            if hex::encode(Sha256::digest(&bytes)) != self.sha256 {
                return Err(ActivityError::permanent(format!(
                    "{} changed since the run started (its SHA-256 is no longer {})\nhint: start the command again to send the file as it is now",
                    self.source.display(),
                    self.sha256
                )));
            }
            Some(bytes)
        } else {
            None
        };
        send_write(&self.target, &self.path, &line, bytes.as_deref(), cx).await
    }
}

impl Activity for SshSendFile {
    type Output = FileOutput;

    fn kind(&self) -> &'static str {
        "ssh-send-file"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<FileOutput>, ActivityError> {
        Ok(
            (self.send("probe", cx).await? == "unchanged").then(|| FileOutput {
                path: self.path.clone().into(),
                changed: false,
            }),
        )
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<FileOutput, ActivityError> {
        let said = self.send("write", cx).await?;
        Ok(FileOutput {
            path: self.path.clone().into(),
            changed: said == "changed",
        })
    }
}

impl SshUpload {
    fn line(&self, check: &str) -> Result<String, ActivityError> {
        let sum = hex::encode(Sha256::digest(self.content.expose().as_bytes()));
        write_line(&self.path, self.mode, &self.owner, &sum, check, self.sudo)
    }

    async fn send(&self, check: &str, cx: &ActivityCx) -> Result<String, ActivityError> {
        let line = self.line(check)?;
        let input = (check == "write").then(|| self.content.expose().as_bytes());
        send_write(&self.target, &self.path, &line, input, cx).await
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
