//! Every change to a run is an event. The terminal renderer, `--output json`, the tracing
//! log, the control socket and the tests all read this one stream.

use std::sync::{Arc, RwLock};

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
        // No subscriber is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
