//! One SSH session: opened through [`super::transport`] (the host key checked), logged in
//! with the host's key (or another [`Login`]), and commands run over it.

use std::sync::{Arc, Mutex};

use foundry_core::{ActivityCx, ActivityError, PollPolicy, Stream};

use russh::ChannelMsg;
use russh::client::Handle;
use russh::keys::PublicKey;

use super::login::Login;
use super::transport::{CONNECT_TIMEOUT, Checker, Opened, SshTarget, fingerprint, open};

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
