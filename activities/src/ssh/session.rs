//! One SSH session: connect within a deadline, check the host key strictly against the
//! one known, log in with the host's key (or another [`Login`]).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use foundry_core::{ActivityCx, ActivityError, PollPolicy, Stream};

use super::key_source::KeySource;
use super::login::Login;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{HashAlg, PublicKey};
use serde::{Deserialize, Serialize};

/// A host to reach, and what Foundry knows of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SshTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    /// The private key to log in with.
    pub key: KeySource,
    /// The host's public host key (`ssh-ed25519 AAAA…`): anything else is refused.
    pub host_key: String,
}

impl std::fmt::Display for SshTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.address, self.port)
    }
}

/// How long a connection (TCP, key exchange and login) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A silent peer is noticed after about keepalive × max, without killing quiet commands.
const KEEPALIVE: Duration = Duration::from_secs(5);
const KEEPALIVE_MAX: usize = 3;

pub(super) struct Checker {
    /// `None` only to read the host key a host offers: the connection is then refused.
    known: Option<PublicKey>,
    offered: Arc<Mutex<Option<PublicKey>>>,
}

impl client::Handler for Checker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        if let Ok(mut offered) = self.offered.lock() {
            *offered = Some(key.clone());
        }
        Ok(self
            .known
            .as_ref()
            .is_some_and(|known| key.key_data() == known.key_data()))
    }
}

pub(super) fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// A logged-in session.
pub struct SshSession {
    pub(super) handle: Handle<Checker>,
    pub(super) target: SshTarget,
}

impl SshSession {
    /// Connects and logs in with the target's key.
    pub async fn connect(target: &SshTarget) -> Result<SshSession, ActivityError> {
        SshSession::connect_with(target, &Login::Key(target.key.clone())).await
    }

    /// Connects, checks the host key strictly against `target.host_key`, and logs in as
    /// `login` says (`target.key` is then only used by [`Login::Key`]).
    pub async fn connect_with(
        target: &SshTarget,
        login: &Login,
    ) -> Result<SshSession, ActivityError> {
        let known = PublicKey::from_openssh(target.host_key.trim()).map_err(|e| {
            ActivityError::permanent(format!(
                "the known host key of {} is not a public key: {e}",
                target.address
            ))
        })?;
        // What to log in with is read before anything connects: a missing key is said first.
        let material = login.material().await?;
        let offered = Arc::new(Mutex::new(None));
        let checker = Checker {
            known: Some(known.clone()),
            offered: offered.clone(),
        };
        let mut handle = match open(target, checker).await {
            Err(Opened::Timeout(e)) => return Err(e),
            Err(Opened::Failed(e)) => {
                let offered = offered.lock().ok().and_then(|o| o.clone());
                return Err(match offered {
                    Some(offered) if offered.key_data() != known.key_data() => {
                        ActivityError::permanent(format!(
                            "{target}: the host key changed: known {}, offered {}; nothing was run",
                            fingerprint(&known),
                            fingerprint(&offered)
                        ))
                    }
                    _ => ActivityError::transient(format!("{target}: {e}")),
                });
            }
            Ok(handle) => handle,
        };
        let logging_in = super::login::login(&mut handle, target, material);
        match tokio::time::timeout(CONNECT_TIMEOUT, logging_in).await {
            Ok(Ok(())) => Ok(SshSession {
                handle,
                target: target.clone(),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ActivityError::transient(format!(
                "{target}: no login within {}s",
                CONNECT_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Runs `command` (a quoted command line), streaming its output as events; its exit
    /// code, last line of stdout and last line of stderr.
    pub async fn run_capture(
        &self,
        command: &str,
        cx: &ActivityCx,
    ) -> Result<(u32, Option<String>, Option<String>), ActivityError> {
        self.run_capture_with_input(command, None, cx).await
    }

    /// [`SshSession::run_capture`] with `input` sent to the command's stdin, then end of
    /// file: how a secret reaches a remote command without being on its command line.
    pub async fn run_capture_with_input(
        &self,
        command: &str,
        input: Option<&[u8]>,
        cx: &ActivityCx,
    ) -> Result<(u32, Option<String>, Option<String>), ActivityError> {
        let (mut last_out, mut last_err) = (None, None);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let code = self
            .exec_with_input(command, input, cx, |stream, data| match stream {
                Stream::Stdout => emit_lines(cx, stream, &mut out, data, &mut last_out),
                Stream::Stderr => emit_lines(cx, stream, &mut err, data, &mut last_err),
            })
            .await;
        emit_lines(cx, Stream::Stdout, &mut out, b"\n", &mut last_out);
        emit_lines(cx, Stream::Stderr, &mut err, b"\n", &mut last_err);
        Ok((code?, last_out, last_err))
    }

    /// Runs `command` (a quoted command line), streaming its output as events; its exit
    /// code and last line of stderr.
    pub async fn run(
        &self,
        command: &str,
        cx: &ActivityCx,
    ) -> Result<(u32, Option<String>), ActivityError> {
        let (code, _, last_err) = self.run_capture(command, cx).await?;
        Ok((code, last_err))
    }

    /// Runs `command` and returns its exit code and what it wrote to stdout (not streamed:
    /// for short answers such as a probe's).
    pub async fn capture(
        &self,
        command: &str,
        cx: &ActivityCx,
    ) -> Result<(u32, Vec<u8>), ActivityError> {
        let mut out = Vec::new();
        let code = self
            .exec(command, cx, |stream, data| {
                if stream == Stream::Stdout {
                    out.extend_from_slice(data);
                }
            })
            .await?;
        Ok((code, out))
    }

    /// Runs `command` on a new channel, handing each chunk of its output to `on_data` as it
    /// arrives; its exit code.
    pub async fn exec(
        &self,
        command: &str,
        cx: &ActivityCx,
        on_data: impl FnMut(Stream, &[u8]),
    ) -> Result<u32, ActivityError> {
        self.exec_with_input(command, None, cx, on_data).await
    }

    /// A session channel. sshd frees a closed channel's session a moment after this side
    /// has let go of it, and refuses a new one past `MaxSessions` with "connect failed"
    /// meanwhile: that answer is asked again, every 50 ms for 2 s.
    async fn open_session_channel(
        &self,
    ) -> Result<russh::Channel<russh::client::Msg>, russh::Error> {
        const REFUSED_POLL: PollPolicy = PollPolicy::new(50, 2_000);
        let mut poll = REFUSED_POLL.start();
        while poll.tick().await {
            match self.handle.channel_open_session().await {
                Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed)) => {
                }
                other => return other,
            }
        }
        Err(russh::Error::ChannelOpenFailure(
            russh::ChannelOpenFailure::ConnectFailed,
        ))
    }

    /// Like [`SshSession::exec`], with `input` sent to the command's stdin, then end of file.
    pub async fn exec_with_input(
        &self,
        command: &str,
        input: Option<&[u8]>,
        cx: &ActivityCx,
        mut on_data: impl FnMut(Stream, &[u8]),
    ) -> Result<u32, ActivityError> {
        let lost = |e: russh::Error| ActivityError::transient(format!("{}: {e}", self.target));
        let mut channel = self.open_session_channel().await.map_err(lost)?;
        channel.exec(true, command).await.map_err(lost)?;
        if let Some(input) = input {
            channel.data(input).await.map_err(lost)?;
            channel.eof().await.map_err(lost)?;
        }
        let mut code = None;
        loop {
            let msg = tokio::select! {
                msg = channel.wait() => msg,
                () = cx.cancel_token().cancelled() => {
                    let _ = channel.close().await;
                    return Err(ActivityError::permanent(format!("{}: stopped, the run is cancelled", self.target)));
                }
            };
            match msg {
                Some(ChannelMsg::Data { data }) => on_data(Stream::Stdout, &data),
                Some(ChannelMsg::ExtendedData { data, ext: 1 }) => on_data(Stream::Stderr, &data),
                Some(ChannelMsg::ExitStatus { exit_status }) => code = Some(exit_status),
                Some(_) => {}
                None => break,
            }
        }
        code.ok_or_else(|| {
            ActivityError::transient(format!(
                "{}: the connection ended before the command's exit status",
                self.target
            ))
        })
    }
}

pub(super) enum Opened {
    Timeout(ActivityError),
    Failed(russh::Error),
}

/// TCP and key exchange within the deadline, keepalive on.
pub(super) async fn open(target: &SshTarget, checker: Checker) -> Result<Handle<Checker>, Opened> {
    let config = Arc::new(client::Config {
        keepalive_interval: Some(KEEPALIVE),
        keepalive_max: KEEPALIVE_MAX,
        nodelay: true,
        ..client::Config::default()
    });
    let connecting = client::connect(config, (target.address.as_str(), target.port), checker);
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(Opened::Timeout(ActivityError::transient(format!(
            "{target}: no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        )))),
        Ok(Err(e)) => Err(Opened::Failed(e)),
        Ok(Ok(handle)) => Ok(handle),
    }
}

/// The host key `address:port` offers (`ssh-ed25519 AAAA…`), read without logging in: what
/// a person is shown before trusting a host the first time.
pub async fn scan_host_key(address: &str, port: u16) -> Result<String, ActivityError> {
    let target = SshTarget {
        address: address.to_string(),
        port,
        user: String::new(),
        key: KeySource::File(PathBuf::new()),
        host_key: String::new(),
    };
    let offered = Arc::new(Mutex::new(None));
    let checker = Checker {
        known: None,
        offered: offered.clone(),
    };
    let place = format!("{address}:{port}");
    let failed = match open(&target, checker).await {
        Ok(_) => None,
        Err(Opened::Timeout(_)) => {
            return Err(ActivityError::transient(format!(
                "{place}: no answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Err(Opened::Failed(e)) => Some(e),
    };
    let offered = offered.lock().ok().and_then(|o| o.clone());
    match (offered, failed) {
        (Some(key), _) => public_line(&key),
        (None, Some(e)) => Err(ActivityError::transient(format!("{place}: {e}"))),
        (None, None) => Err(ActivityError::permanent(format!(
            "{place}: offered no host key"
        ))),
    }
}

/// `ssh-ed25519 AAAA…`, without a comment.
pub(super) fn public_line(key: &PublicKey) -> Result<String, ActivityError> {
    let text = key
        .to_openssh()
        .map_err(|e| ActivityError::permanent(format!("cannot encode a public key: {e}")))?;
    Ok(text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" "))
}

/// The SHA256 fingerprint of a public key line (`ssh-ed25519 AAAA…`).
pub fn fingerprint_of(public: &str) -> Result<String, ActivityError> {
    PublicKey::from_openssh(public.trim())
        .map(|k| fingerprint(&k))
        .map_err(|e| ActivityError::permanent(format!("not a public key: {e}")))
}

/// A longer line is shown in pieces of about this many bytes, so a host that never ends
/// a line cannot fill this process's memory.
const LINE_BYTES: usize = 64 * 1024;

/// Emits each complete line of `pending + data`, lossily decoded (output that is not
/// UTF-8 never stops a command); keeps the rest for later.
fn emit_lines(
    cx: &ActivityCx,
    stream: Stream,
    pending: &mut Vec<u8>,
    data: &[u8],
    last: &mut Option<String>,
) {
    pending.extend_from_slice(data);
    if !pending.contains(&b'\n') && pending.len() > LINE_BYTES {
        pending.push(b'\n');
    }
    while let Some(at) = pending.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = pending.drain(..=at).collect();
        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
        if !(text.is_empty() && data == b"\n") {
            cx.output(stream, text.clone());
            *last = Some(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_read_lossily_and_bounded() {
        let cx = ActivityCx::standalone("test");
        let (mut pending, mut last) = (Vec::new(), None);
        emit_lines(&cx, Stream::Stdout, &mut pending, b"\xff\xfe o", &mut last);
        emit_lines(&cx, Stream::Stdout, &mut pending, b"k\nrest", &mut last);
        assert_eq!(last.as_deref(), Some("\u{fffd}\u{fffd} ok"));
        assert_eq!(pending, b"rest");
        // A host that never ends its line: shown in pieces, never all kept.
        for _ in 0..64 {
            emit_lines(
                &cx,
                Stream::Stdout,
                &mut pending,
                &[b'x'; 32 * 1024],
                &mut last,
            );
            assert!(pending.len() <= LINE_BYTES + 32 * 1024, "{}", pending.len());
        }
        assert!(last.is_some_and(|l| l.len() > LINE_BYTES));
    }
}
