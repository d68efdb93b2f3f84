//! Every change to a run is an event. The terminal renderer, `--output json`, the tracing
//! log, the control socket and the tests all read this one stream.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::model::{RunId, RunState};
use crate::time::Millis;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run: RunId,
    pub at: Millis,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        workflow: String,
        resumed: bool,
        foundry_version: String,
    },
    StepStarted {
        step: String,
        kind: String,
        attempt: u32,
    },
    StepOutput {
        step: String,
        stream: Stream,
        line: String,
    },
    /// Durable: emitted once the completion is in the journal.
    StepCompleted {
        step: String,
        duration_ms: u64,
        from_probe: bool,
    },
    /// Durable: emitted once the failure and its schedule are in the journal.
    StepFailed {
        step: String,
        attempt: u32,
        error: String,
        transient: bool,
        next_attempt_at: Option<Millis>,
        exhausted: bool,
    },
    StepInDoubt {
        step: String,
    },
    ProbeResult {
        step: String,
        present: bool,
    },
    WaitingForInput {
        step: String,
        prompt: String,
    },
    CancelRequested,
    RunFinished {
        state: RunState,
        error: Option<String>,
    },
}

impl EventKind {
    /// The step an event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            EventKind::StepStarted { step, .. }
            | EventKind::StepOutput { step, .. }
            | EventKind::StepCompleted { step, .. }
            | EventKind::StepFailed { step, .. }
            | EventKind::StepInDoubt { step }
            | EventKind::ProbeResult { step, .. }
            | EventKind::WaitingForInput { step, .. } => Some(step),
            _ => None,
        }
    }
}

/// A run's event stream. Subscribers that fall behind lose the oldest events rather than
/// slow the run down.
#[derive(Clone, Debug)]
pub struct EventBus {
    run: RunId,
    tx: broadcast::Sender<Event>,
    /// Secret values revealed to this run: never let one out in an event.
    redact: Arc<RwLock<Vec<String>>>,
    /// The run's event log, written as events are emitted (no task to wake per event).
    log: Arc<Mutex<Option<BufWriter<File>>>>,
}

fn redact_in(text: &mut String, secrets: &[String]) {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            *text = text.replace(secret.as_str(), "<redacted>");
        }
    }
}

impl EventBus {
    pub fn new(run: RunId) -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventBus {
            run,
            tx,
            redact: Arc::default(),
            log: Arc::default(),
        }
    }

    pub fn run(&self) -> RunId {
        self.run
    }

    /// Appends every event from now on, one JSON object per line, to `path` (0600): what
    /// happened stays readable after the terminal is gone. Events are already redacted.
    pub fn log_to(&self, path: &Path) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        if let Ok(mut log) = self.log.lock() {
            *log = Some(BufWriter::new(file));
        }
        Ok(())
    }

    /// Writes out what the log holds; the run's end does so by itself.
    pub fn flush_log(&self) {
        if let Ok(mut log) = self.log.lock()
            && let Some(out) = log.as_mut()
        {
            let _ = out.flush();
        }
    }

    fn write_log(&self, event: &Event) {
        let Ok(mut log) = self.log.lock() else { return };
        let Some(out) = log.as_mut() else { return };
        let written = serde_json::to_writer(&mut *out, event)
            .map_err(std::io::Error::other)
            .and_then(|()| out.write_all(b"\n"));
        let last = matches!(event.kind, EventKind::RunFinished { .. });
        if written.is_err() || last {
            let _ = out.flush();
        }
        if let Err(e) = written {
            tracing::warn!(error = %e, "the run's log cannot be written; it stops here");
            *log = None;
        }
    }

    /// From now on, `value` is replaced by `<redacted>` wherever an event would carry it.
    pub fn redact(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        if let Ok(mut list) = self.redact.write()
            && !list.iter().any(|v| v == value)
        {
            list.push(value.to_string());
        }
    }

    /// `text` with every secret revealed to this run replaced.
    pub fn redacted(&self, text: &str) -> String {
        let mut text = text.to_string();
        if let Ok(secrets) = self.redact.read() {
            redact_in(&mut text, &secrets);
        }
        text
    }

    pub fn emit(&self, mut kind: EventKind) {
        if let Ok(secrets) = self.redact.read()
            && !secrets.is_empty()
        {
            match &mut kind {
                EventKind::StepOutput { line, .. } => redact_in(line, &secrets),
                EventKind::StepFailed { error, .. } => redact_in(error, &secrets),
                EventKind::RunFinished {
                    error: Some(error), ..
                } => redact_in(error, &secrets),
                _ => {}
            }
        }
        let event = Event {
            run: self.run,
            at: Millis::now(),
            kind,
        };
        tracing::debug!(target: "foundry::event", run = %event.run, event = ?event.kind);
        self.write_log(&event);
        // No subscriber is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
