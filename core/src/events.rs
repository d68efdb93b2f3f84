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
    /// The journal's server cannot be reached: the driver waits for it, at most
    /// `waiting_ms`, before the run stops (resumable).
    JournalUnreachable {
        detail: String,
        waiting_ms: u64,
    },
    /// The journal's server answers again after `after_ms`: the run goes on.
    JournalReachable {
        after_ms: u64,
    },
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

/// Parts of a JSON secret shorter than this are not redacted on their own: `true` or a
/// key name would blank out ordinary words.
const SHORTEST_PART: usize = 8;

/// `value`, its parts and their encodings: every form a redacted secret may be printed in.
fn forms_of(value: &str) -> Vec<String> {
    let mut parts = vec![value.to_string()];
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(value) {
        strings_in(&json, &mut parts);
    }
    let mut forms = Vec::new();
    for part in parts {
        if part.len() < SHORTEST_PART && part != value {
            continue;
        }
        let bytes = part.as_bytes();
        let standard = base64(bytes, STANDARD);
        let url_safe = base64(bytes, URL_SAFE);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        forms.push(standard.trim_end_matches('=').to_string());
        forms.push(url_safe.trim_end_matches('=').to_string());
        forms.push(hex.to_ascii_uppercase());
        forms.push(standard);
        forms.push(url_safe);
        forms.push(hex);
        forms.push(part);
    }
    forms.retain(|f| !f.is_empty());
    forms.dedup();
    forms
}

fn strings_in(json: &serde_json::Value, out: &mut Vec<String>) {
    match json {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| strings_in(i, out)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| strings_in(v, out)),
        _ => {}
    }
}

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with padding in `alphabet`.
fn base64(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
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

    /// From now on, `value` is replaced by `<redacted>` wherever an event would carry it;
    /// so is each part of it (every string in it, when it is JSON, such as each unseal key
    /// of an init response) and each of their common encodings (base64 standard and
    /// URL-safe, padded or not; hex in lower and upper case).
    pub fn redact(&self, value: &str) {
        if value.is_empty() {
            return;
        }
        let Ok(mut list) = self.redact.write() else {
            return;
        };
        for form in forms_of(value) {
            if !list.contains(&form) {
                list.push(form);
            }
        }
        // Longest first, so a part never leaves the rest of a longer secret in clear.
        list.sort_by_key(|v| std::cmp::Reverse(v.len()));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bus_with(secret: &str) -> EventBus {
        let bus = EventBus::new(RunId::new());
        bus.redact(secret);
        bus
    }

    #[test]
    fn base64_matches_the_standard_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes(), STANDARD), encoded);
        }
        assert_eq!(base64(&[0xfb, 0xff], URL_SAFE), "-_8=");
        assert_eq!(base64(&[0xfb, 0xff], STANDARD), "+/8=");
    }

    #[test]
    fn a_secret_is_redacted_in_its_common_encodings() {
        let secret = "s3cr3t-\u{fb}\u{ff}?>";
        let bus = bus_with(secret);
        let bytes = secret.as_bytes();
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let standard = base64(bytes, STANDARD);
        let url_safe = base64(bytes, URL_SAFE);
        assert_ne!(standard, url_safe, "the case covers both alphabets");
        for form in [
            secret.to_string(),
            hex.clone(),
            hex.to_ascii_uppercase(),
            standard.clone(),
            standard.trim_end_matches('=').to_string(),
            url_safe.clone(),
            url_safe.trim_end_matches('=').to_string(),
        ] {
            let text = bus.redacted(&format!("before {form} after"));
            assert_eq!(text, "before <redacted> after", "{form}");
        }
    }

    #[test]
    fn each_part_of_a_json_secret_is_redacted_on_its_own() {
        let init = r#"{"keys":["unseal-key-one-1111","unseal-key-two-2222"],"root_token":"s.RootTokenValue","n":3,"ok":"yes"}"#;
        let bus = bus_with(init);
        let text = bus.redacted(
            "key unseal-key-two-2222, token s.RootTokenValue, hex 756e7365616c2d6b65792d6f6e652d31313131, ok yes",
        );
        assert_eq!(
            text, "key <redacted>, token <redacted>, hex <redacted>, ok yes",
            "parts and their encodings go; short words stay"
        );
        let (tx, mut rx) = (bus.clone(), bus.subscribe());
        tx.emit(EventKind::StepOutput {
            step: "s".into(),
            stream: Stream::Stdout,
            line: "got cy5Sb290VG9rZW5WYWx1ZQ".into(),
        });
        match rx.try_recv().map(|e| e.kind) {
            Ok(EventKind::StepOutput { line, .. }) => assert_eq!(line, "got <redacted>"),
            other => panic!("{other:?}"),
        }
    }
}
