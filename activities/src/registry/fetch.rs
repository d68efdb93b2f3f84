//! A blob of a registry fetched BY A HOST (over SSH, with the host's `curl` or `wget`, over
//! the host's own network), verified by its digest before it is moved into place: how a
//! node of an air-gapped cluster gets a 70 MB binary from the stack's registry without it
//! crossing the operator's link. Probed by hash: a host whose file has the digest fetches
//! nothing.

use foundry_core::{Activity, ActivityCx, ActivityError, InDoubt, RetryPolicy};
use serde::{Deserialize, Serialize};

use crate::local::FileOutput;
use crate::ssh::{SshPool, SshTarget, command_line};

/// Compares first; else fetches beside the file, checks the SHA-256, and renames over it.
/// Exit 3: neither curl nor wget; 4: the registry's answer was an HTTP error; 5: another
/// digest.
const FETCH: &str = r#"
set -u
url=$1 sum=$2 path=$3 mode=$4 check=$5
if [ -f "$path" ] && [ "$(sha256sum < "$path" | cut -c1-64)" = "$sum" ] && [ "$(stat -c '%a' "$path")" = "$mode" ]; then
  echo unchanged; exit 0
fi
[ "$check" = probe ] && { echo absent; exit 0; }
mkdir -p "$(dirname "$path")" || exit 1
tmp=$(mktemp "$path.foundry-XXXXXX") || exit 1
trap 'rm -f "$tmp"' EXIT
if command -v curl > /dev/null; then
  curl -fsS --connect-timeout 10 -o "$tmp" "$url"; code=$?
  [ $code -eq 22 ] && exit 4
  [ $code -eq 0 ] || exit 1
elif command -v wget > /dev/null; then
  out=$(wget -q -T 10 -O "$tmp" "$url" 2>&1); code=$?
  [ $code -eq 8 ] && exit 4
  [ $code -eq 0 ] || { echo "$out" >&2; exit 1; }
else
  echo "neither curl nor wget on the host" >&2; exit 3
fi
got=$(sha256sum < "$tmp" | cut -c1-64)
[ "$got" = "$sum" ] || { echo "got sha256:$got" >&2; exit 5; }
chmod "$mode" "$tmp" && chown root:root "$tmp" && mv -f "$tmp" "$path" || exit 1
trap - EXIT
echo changed
"#;

/// `path` on a host, as root with `mode`, holding the blob `digest` of `repository` in the
/// registry at `registry` (`http://10.0.0.5:5000`, as the host reaches it). Only the
/// reference and digests are journaled; the bytes never pass through this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshFetchBlob {
    pub target: SshTarget,
    pub registry: String,
    pub repository: String,
    /// What the blob is, for messages: `foundry/k3s:v1.32.4-k3s1 (k3s)`.
    pub reference: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub path: String,
    pub mode: u32,
}

impl SshFetchBlob {
    fn url(&self) -> String {
        format!(
            "{}/v2/{}/blobs/{}",
            self.registry.trim_end_matches('/'),
            self.repository,
            self.digest
        )
    }

    async fn run(&self, check: &str, cx: &ActivityCx) -> Result<String, ActivityError> {
        let sum = self.digest.strip_prefix("sha256:").ok_or_else(|| {
            ActivityError::permanent(format!(
                "{}: digest `{}` is not a sha256 digest",
                self.reference, self.digest
            ))
        })?;
        let argv = [
            "sh",
            "-c",
            FETCH,
            "foundry-fetch",
            &self.url(),
            sum,
            &self.path,
            &format!("{:o}", self.mode),
            check,
        ]
        .map(String::from);
        let line = command_line(&argv, true)?;
        let session = SshPool::global().session(&self.target).await?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = session
            .channel()
            .await?
            .exec_with_input(&line, None, cx, |stream, data| match stream {
                foundry_core::Stream::Stdout => out.extend_from_slice(data),
                foundry_core::Stream::Stderr => err.extend_from_slice(data),
            })
            .await?;
        let err = String::from_utf8_lossy(&err);
        let err = err.trim().lines().last().unwrap_or_default();
        let (target, what, registry) = (&self.target, &self.reference, &self.registry);
        match code {
            0 => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            3 => Err(ActivityError::permanent(format!(
                "{target}: fetching {what} from the registry at {registry}: {err}\n\
                 hint: install curl or wget on the host"
            ))),
            4 => Err(ActivityError::permanent(format!(
                "{target}: fetching {what} ({}) from the registry at {registry}: the registry \
                 answered an error (no such blob?)\nhint: push it again with `foundry registry push-k3s`",
                self.digest
            ))),
            5 => Err(ActivityError::permanent(format!(
                "{target}: {what} from the registry at {registry} is not {}: {err}; nothing was \
                 put in place",
                self.digest
            ))),
            _ => Err(ActivityError::transient(format!(
                "{target}: fetching {what} from the registry at {registry} exited with status \
                 {code}: {err}"
            ))),
        }
    }

    fn output(&self, changed: bool) -> FileOutput {
        FileOutput {
            path: self.path.clone().into(),
            changed,
        }
    }
}

impl Activity for SshFetchBlob {
    type Output = FileOutput;

    fn kind(&self) -> &'static str {
        "ssh-fetch-blob"
    }

    fn in_doubt(&self) -> InDoubt {
        InDoubt::Probe
    }

    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::default()
    }

    async fn probe(&self, cx: &ActivityCx) -> Result<Option<FileOutput>, ActivityError> {
        Ok((self.run("probe", cx).await? == "unchanged").then(|| self.output(false)))
    }

    async fn apply(&self, cx: &ActivityCx) -> Result<FileOutput, ActivityError> {
        let said = self.run("fetch", cx).await?;
        Ok(self.output(said == "changed"))
    }
}
