//! The control socket of the process driving a run, `<home>/runs/<run-id>.sock`: other
//! terminals read the run's status from it, follow its events, and ask it to cancel.
//! One JSON object per line each way.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::OwnedReadHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventBus, EventKind};
use crate::status::RunView;
use crate::writer::Mirror;

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Request {
    Status,
    Follow,
    Cancel,
}

#[derive(Debug, thiserror::Error)]
#[error("control socket {}: {detail}", path.display())]
pub struct ControlError {
    pub path: PathBuf,
    pub detail: String,
    /// The driver did not answer within [`ANSWER_WITHIN`]: it is stopped or stuck, and
    /// asking again will not help.
    pub timed_out: bool,
}

/// How long a client waits for the driving process to accept and answer. A driver that
/// is stopped (SIGSTOP, a debugger) or stuck must not hang `list`, `status` or `cancel`.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// Runs a client exchange within [`ANSWER_WITHIN`].
async fn within<T>(
    path: &Path,
    exchange: impl std::future::Future<Output = Result<T, ControlError>>,
) -> Result<T, ControlError> {
    tokio::time::timeout(ANSWER_WITHIN, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(ControlError {
                path: path.to_path_buf(),
                detail: format!(
                    "the driving process did not answer within {} s (is it stopped?)",
                    ANSWER_WITHIN.as_secs()
                ),
                timed_out: true,
            })
        })
}

pub(crate) struct ControlServer {
    task: JoinHandle<()>,
    path: PathBuf,
}

fn view_of(mirror: &Mirror) -> Option<RunView> {
    let m = mirror.lock().ok()?;
    let driver = m.snapshot.lease.clone();
    Some(RunView {
        snapshot: m.snapshot.clone(),
        driver,
    })
}

async fn send_line<T: Serialize>(
    w: &mut tokio::net::unix::OwnedWriteHalf,
    value: &T,
) -> io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line).await
}

async fn serve(
    stream: UnixStream,
    mirror: Mirror,
    events: EventBus,
    cancel: CancellationToken,
) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Some(line) = lines.next_line().await? else {
        return Ok(());
    };
    let request: Request = serde_json::from_str(&line).map_err(io::Error::other)?;
    match request {
        Request::Status => send_line(&mut write, &view_of(&mirror)).await,
        Request::Cancel => {
            cancel.cancel();
            send_line(&mut write, &serde_json::json!({"ok": true})).await
        }
        Request::Follow => {
            // Subscribe before the snapshot, so no event falls between them.
            let mut rx = events.subscribe();
            send_line(&mut write, &view_of(&mirror)).await?;
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        send_line(&mut write, &event).await?;
                        if matches!(event.kind, EventKind::RunFinished { .. }) {
                            return Ok(());
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a follower fell behind");
                    }
                    Err(RecvError::Closed) => return Ok(()),
                }
            }
        }
    }
}

impl ControlServer {
    pub(crate) fn bind(
        path: PathBuf,
        mirror: Mirror,
        events: EventBus,
        cancel: CancellationToken,
    ) -> io::Result<ControlServer> {
        // A socket file left by a dead driver: we hold the run's journal, so it is stale.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (m, e, c) = (mirror.clone(), events.clone(), cancel.clone());
                tokio::spawn(async move {
                    if let Err(err) = serve(stream, m, e, c).await {
                        tracing::debug!(error = %err, "control connection ended");
                    }
                });
            }
        });
        Ok(ControlServer { task, path })
    }

    /// Stops accepting and waits until the accepting task has ended.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
        let _ = std::fs::remove_file(&self.path);
    }
}

async fn connect(
    path: &Path,
    request: Request,
) -> Result<(Lines<BufReader<OwnedReadHalf>>, RunView), ControlError> {
    let err = |detail: String| ControlError {
        path: path.to_path_buf(),
        detail,
        timed_out: false,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let (read, mut write) = stream.into_split();
    send_line(&mut write, &request)
        .await
        .map_err(|e| err(e.to_string()))?;
    let mut lines = BufReader::new(read).lines();
    let line = lines
        .next_line()
        .await
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("closed before answering".into()))?;
    let view: Option<RunView> = serde_json::from_str(&line).map_err(|e| err(e.to_string()))?;
    let view = view.ok_or_else(|| err("the driver could not read its own state".into()))?;
    Ok((lines, view))
}

/// Asks the driving process for the run's status.
pub async fn status(path: &Path) -> Result<RunView, ControlError> {
    Ok(within(path, connect(path, Request::Status)).await?.1)
}

/// Asks the driving process to cancel the run.
pub async fn cancel(path: &Path) -> Result<(), ControlError> {
    within(path, cancel_exchange(path)).await
}

/// How long [`leave_cancel`] may take to hand its request over.
const LEAVE_WITHIN: Duration = Duration::from_millis(500);

/// Writes a cancel request to a driver that does not answer (stopped, stuck), without
/// waiting for its answer: the socket keeps it, and the driver cancels if it runs again.
pub async fn leave_cancel(path: &Path) -> Result<(), ControlError> {
    let err = |detail: String| ControlError {
        path: path.to_path_buf(),
        detail,
        timed_out: false,
    };
    let exchange = async {
        let mut stream = UnixStream::connect(path)
            .await
            .map_err(|e| err(e.to_string()))?;
        let mut line = serde_json::to_vec(&Request::Cancel).map_err(|e| err(e.to_string()))?;
        line.push(b'\n');
        stream
            .write_all(&line)
            .await
            .map_err(|e| err(e.to_string()))
    };
    tokio::time::timeout(LEAVE_WITHIN, exchange)
        .await
        .unwrap_or_else(|_| Err(err("the socket took no request".into())))
}

async fn cancel_exchange(path: &Path) -> Result<(), ControlError> {
    let err = |detail: String| ControlError {
        path: path.to_path_buf(),
        detail,
        timed_out: false,
    };
    let stream = UnixStream::connect(path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let (read, mut write) = stream.into_split();
    send_line(&mut write, &Request::Cancel)
        .await
        .map_err(|e| err(e.to_string()))?;
    BufReader::new(read)
        .lines()
        .next_line()
        .await
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err("closed before answering".into()))?;
    Ok(())
}

/// A run's live events, after the status it was in when following began.
pub struct Follow {
    lines: Lines<BufReader<OwnedReadHalf>>,
    path: PathBuf,
}

impl Follow {
    /// The next event; `None` when the run has finished or its driver went away.
    pub async fn next(&mut self) -> Result<Option<Event>, ControlError> {
        let line = match self.lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) | Err(_) => return Ok(None),
        };
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ControlError {
                path: self.path.clone(),
                detail: e.to_string(),
                timed_out: false,
            })
    }
}

pub async fn follow(path: &Path) -> Result<(RunView, Follow), ControlError> {
    let (lines, view) = within(path, connect(path, Request::Follow)).await?;
    Ok((
        view,
        Follow {
            lines,
            path: path.to_path_buf(),
        },
    ))
}
