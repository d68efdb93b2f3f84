//! A process in a running container, reached through the Engine's exec API: its stdin and
//! stdout as one byte stream (what a service that listens only on the container's own
//! loopback is reached through), or a short command fed on stdin. Over an SSH endpoint the
//! Engine itself is reached through the host's SSH connection, so nothing crosses a network
//! in clear, and nothing but the Engine's socket is needed on the host.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use foundry_core::ActivityError;
use futures_util::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{Endpoint, status_of};

/// How much of a process's stderr (and of a short command's stdout) is kept.
const STDERR_MAX: usize = 2048;
/// How often, and for how long, a finished process's exit code is asked for.
const EXIT_POLL: foundry_core::PollPolicy = foundry_core::PollPolicy::new(20, 2_000);

type Output = Pin<Box<dyn Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>;

/// A process's stdout (read) and stdin (write). Its stderr is kept aside, bounded, for the
/// error that explains a stream that ended early.
pub struct ExecStream {
    /// The exec's id at the Engine.
    id: String,
    output: Output,
    input: Pin<Box<dyn AsyncWrite + Send>>,
    /// Stdout bytes received and not read yet.
    pending: bytes::Bytes,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl ExecStream {
    /// What the process wrote to stderr so far, lossily decoded and trimmed.
    pub fn stderr_handle(&self) -> StderrHandle {
        StderrHandle(self.stderr.clone())
    }
}

/// A process's stderr, readable after its stream was handed on.
#[derive(Clone)]
pub struct StderrHandle(Arc<Mutex<Vec<u8>>>);

impl StderrHandle {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).trim().to_string()
    }
}

fn keep_stderr(kept: &Mutex<Vec<u8>>, bytes: &[u8]) {
    if let Ok(mut kept) = kept.lock() {
        let room = STDERR_MAX.saturating_sub(kept.len());
        kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl AsyncRead for ExecStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            if !self.pending.is_empty() {
                let n = self.pending.len().min(buf.remaining());
                let chunk = self.pending.split_to(n);
                buf.put_slice(&chunk);
                return Poll::Ready(Ok(()));
            }
            match self.output.poll_next_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                // End of the process's output: end of the stream.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Ready(Some(Err(e))) => {
                    return Poll::Ready(Err(std::io::Error::other(e.to_string())));
                }
                Poll::Ready(Some(Ok(LogOutput::StdOut { message })))
                | Poll::Ready(Some(Ok(LogOutput::Console { message }))) => {
                    self.pending = message;
                }
                Poll::Ready(Some(Ok(LogOutput::StdErr { message }))) => {
                    keep_stderr(&self.stderr, &message);
                }
                Poll::Ready(Some(Ok(LogOutput::StdIn { .. }))) => {}
            }
        }
    }
}

impl AsyncWrite for ExecStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.input.as_mut().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.input.as_mut().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.input.as_mut().poll_shutdown(cx)
    }
}

/// What a short command in a container said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

impl Endpoint {
    /// Starts `argv` in the running container `container` and returns its stdin and stdout
    /// as a stream. A container that is missing is a permanent error; one that does not run
    /// (yet) is worth another attempt.
    pub async fn exec_stream(
        &self,
        docker: &Docker,
        container: &str,
        argv: &[&str],
    ) -> Result<ExecStream, ActivityError> {
        let doing = format!("running {} in container {container}", argv.join(" "));
        let options = CreateExecOptions {
            cmd: Some(argv.iter().map(|a| a.to_string()).collect()),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(false),
            ..CreateExecOptions::default()
        };
        let exec = docker
            .create_exec(container, options)
            .await
            .map_err(|e| self.exec_error(&doing, &e))?;
        let started = docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| self.exec_error(&doing, &e))?;
        match started {
            StartExecResults::Attached { output, input } => Ok(ExecStream {
                id: exec.id,
                output,
                input,
                pending: bytes::Bytes::new(),
                stderr: Arc::default(),
            }),
            StartExecResults::Detached => Err(ActivityError::permanent(format!(
                "{doing}: the Engine did not attach to the process"
            ))),
        }
    }

    /// Runs `argv` in the running container `container` with `input` on its stdin (closed
    /// after it), and waits for it to end.
    pub async fn exec_with_input(
        &self,
        docker: &Docker,
        container: &str,
        argv: &[&str],
        input: &[u8],
    ) -> Result<ExecOutput, ActivityError> {
        self.exec_collect(docker, container, argv, input, STDERR_MAX)
            .await
    }

    /// [`Endpoint::exec_with_input`], keeping at most `stdout_max` bytes of its stdout.
    pub async fn exec_collect(
        &self,
        docker: &Docker,
        container: &str,
        argv: &[&str],
        input: &[u8],
        stdout_max: usize,
    ) -> Result<ExecOutput, ActivityError> {
        let doing = format!("running {} in container {container}", argv.join(" "));
        let mut stream = self.exec_stream(docker, container, argv).await?;
        let lost =
            |e: std::io::Error| ActivityError::transient(format!("{doing}: the stream broke: {e}"));
        stream.input.write_all(input).await.map_err(lost)?;
        stream.input.shutdown().await.map_err(lost)?;
        let mut stdout = Vec::new();
        while let Some(item) = stream.output.next().await {
            match item.map_err(|e| self.exec_error(&doing, &e))? {
                LogOutput::StdOut { message } | LogOutput::Console { message } => {
                    let room = stdout_max.saturating_sub(stdout.len());
                    stdout.extend_from_slice(&message[..message.len().min(room)]);
                }
                LogOutput::StdErr { message } => keep_stderr(&stream.stderr, &message),
                LogOutput::StdIn { .. } => {}
            }
        }
        let stderr = stream.stderr_handle().text();
        let code = self.exit_code(docker, &doing, &stream.id).await?;
        Ok(ExecOutput {
            code,
            stdout: String::from_utf8_lossy(&stdout).trim().to_string(),
            stderr,
        })
    }

    /// The exit code of a process whose output has ended: the Engine records it a moment
    /// later, so it is asked a bounded number of times.
    async fn exit_code(
        &self,
        docker: &Docker,
        doing: &str,
        id: &str,
    ) -> Result<i64, ActivityError> {
        let mut poll = EXIT_POLL.start();
        while poll.tick().await {
            let found = docker
                .inspect_exec(id)
                .await
                .map_err(|e| self.exec_error(doing, &e))?;
            if let (Some(false), Some(code)) = (found.running, found.exit_code) {
                return Ok(code);
            }
        }
        Err(ActivityError::transient(format!(
            "{doing}: the process's output ended but the Engine reports no exit code after {:?}",
            EXIT_POLL.deadline()
        )))
    }

    fn exec_error(&self, doing: &str, e: &bollard::errors::Error) -> ActivityError {
        let error = self.error(doing, e);
        // 409: the container exists but does not run (yet, or while it restarts).
        match status_of(e) {
            Some(409) => ActivityError {
                transient: true,
                ..error
            },
            _ => error,
        }
    }
}
