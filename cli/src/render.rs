//! How runs and their events look: the JSON objects of `--output json` and the human
//! tables, built from the same views.

use std::time::Duration;

use foundry_core::status::{StepCounts, StepView};
use foundry_core::{Event, EventKind, Finding, Millis, RunId, RunView, Verification};
use serde::Serialize;

use crate::printer::{MAX_CELL, MAX_LINE, Printer, table, truncate};

/// A run as one JSON object (list, status).
#[derive(Serialize)]
pub struct RunRow {
    pub run: RunId,
    pub workflow: String,
    pub workflow_version: u32,
    pub state: String,
    /// Marked running, but no process drives it: `workflow resume` continues it.
    pub interrupted: bool,
    pub driver: Option<foundry_core::model::Lease>,
    pub steps: StepCounts,
    pub current_step: Option<String>,
    pub error: Option<String>,
    pub foundry_version: String,
    pub created_at: String,
    pub updated_at: String,
}

impl RunRow {
    pub fn new(view: &RunView) -> Self {
        let s = &view.snapshot;
        RunRow {
            run: s.info.id,
            workflow: s.info.workflow.clone(),
            workflow_version: s.info.workflow_version,
            state: state_word(view),
            interrupted: view.interrupted(),
            driver: view.driver.clone(),
            steps: view.counts(),
            current_step: view.current_step().map(str::to_string),
            error: s.meta.error.clone(),
            foundry_version: s.info.foundry_version.clone(),
            created_at: s.info.created_at.rfc3339(),
            updated_at: s.meta.updated_at.rfc3339(),
        }
    }
}

/// The run's state as a word: "interrupted" for a running run nobody drives.
fn state_word(view: &RunView) -> String {
    if view.interrupted() {
        "interrupted".into()
    } else {
        view.state().as_str().replace(' ', "_")
    }
}

/// A run and every step (show).
#[derive(Serialize)]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunRow,
    pub step_list: Vec<StepView>,
}

pub fn ago(at: Millis) -> String {
    let d = at.until(Millis::now());
    if d < Duration::from_secs(1) {
        return "just now".into();
    }
    let secs = d.as_secs();
    let text = match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86_399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    };
    format!("{text} ago")
}

pub fn duration(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms}ms"),
        1_000..=59_999 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

pub fn counts_line(c: &StepCounts) -> String {
    let mut parts = vec![format!("{} done", c.done)];
    for (n, word) in [
        (c.running, "running"),
        (c.in_doubt, "in doubt"),
        (c.pending, "pending"),
        (c.failed, "failed"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {word}"));
        }
    }
    parts.join(", ")
}

/// The human header of `status` and `show`; `short` is the run's unique id prefix.
pub fn status_lines(view: &RunView, short: &str) -> Vec<String> {
    let row = RunRow::new(view);
    let s = &view.snapshot;
    let state = match (&view.driver, view.interrupted()) {
        (Some(lease), _) => format!("{} (driven by {lease})", view.state()),
        (None, true) => format!(
            "interrupted: no process drives it; `foundry workflow resume {short}` continues"
        ),
        (None, false) => view.state().to_string(),
    };
    let mut lines = vec![
        format!("run       {}", s.info.id),
        format!(
            "workflow  {} v{} (started by foundry {})",
            s.info.workflow, s.info.workflow_version, s.info.foundry_version
        ),
        format!("state     {state}"),
        format!("steps     {}", counts_line(&row.steps)),
    ];
    if let Some(current) = &row.current_step {
        lines.push(format!("at        {}", truncate(current, MAX_CELL)));
    }
    if let Some(summary) = &s.summary {
        lines.push(format!("took      {}", duration(summary.duration_ms)));
    }
    if let Some(error) = &row.error {
        lines.push(format!("error     {}", truncate(error, MAX_LINE)));
    }
    lines.push(format!(
        "started   {} ({})   updated {}",
        s.info.created_at.rfc3339(),
        ago(s.info.created_at),
        ago(s.meta.updated_at)
    ));
    lines
}

/// A verification for people: a summary line, the completed steps and what their probes
/// found, and where the replay stopped.
pub fn verification_lines(v: &Verification, short: &str) -> Vec<String> {
    let count = |f: fn(&Finding) -> bool| v.steps.iter().filter(|s| f(&s.finding)).count();
    let drifted = count(|f| *f == Finding::Drifted);
    let failed = count(|f| matches!(f, Finding::Failed { .. }));
    let mut lines = vec![format!(
        "verified  {} completed step{}: {} present, {drifted} drifted, {} unchecked, {failed} could not be checked",
        v.steps.len(),
        if v.steps.len() == 1 { "" } else { "s" },
        count(|f| *f == Finding::Present),
        count(|f| *f == Finding::Unchecked),
    )];
    if !v.steps.is_empty() {
        let rows: Vec<Vec<String>> = v
            .steps
            .iter()
            .map(|s| {
                let found = match &s.finding {
                    Finding::Present => "present".to_string(),
                    Finding::Drifted => "DRIFTED: its effect is gone".to_string(),
                    Finding::Unchecked => "unchecked".to_string(),
                    Finding::Failed { error } => {
                        format!("could not check: {}", truncate(error, MAX_CELL))
                    }
                };
                vec![truncate(&s.key, MAX_CELL), s.kind.clone(), found]
            })
            .collect();
        lines.push(String::new());
        lines.extend(table(&["STEP", "KIND", "FOUND"], &rows));
    }
    if !v.stopped_at.is_empty() {
        lines.push(String::new());
        lines.push(format!("not yet done from: {}", v.stopped_at.join(", ")));
    }
    if let Some(error) = &v.error {
        lines.push(format!("the replay stopped: {}", truncate(error, MAX_LINE)));
    }
    if drifted > 0 {
        lines.push(format!(
            "hint: a resumed run does not redo a completed step; `foundry workflow cancel {short}` and start over (`foundry setup --reset` for a setup): the new run's probes find what is left"
        ));
    }
    lines
}

pub fn step_rows(steps: &[StepView]) -> Vec<Vec<String>> {
    steps
        .iter()
        .map(|s| {
            let next = s
                .next_attempt_at
                .map(|at| {
                    let wait = Millis::now().until(at);
                    format!("in {}", duration(wait.as_millis() as u64))
                })
                .unwrap_or_else(|| "-".into());
            let mut state = s.state.as_str().to_string();
            if s.from_probe {
                state.push_str(" (probed)");
            }
            vec![
                s.key.clone(),
                state,
                s.attempts.to_string(),
                next,
                duration(s.duration_ms),
                s.last_error.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect()
}

pub const STEP_HEADER: [&str; 6] = [
    "STEP",
    "STATE",
    "ATTEMPTS",
    "NEXT ATTEMPT",
    "DURATION",
    "LAST ERROR",
];

/// One event as a human line, or `None` for events not worth a line; `short` is the
/// run's unique id prefix.
pub fn event_line(printer: &Printer, event: &Event, short: &str) -> Option<String> {
    let line = match &event.kind {
        EventKind::RunStarted {
            workflow, resumed, ..
        } => {
            let verb = if *resumed { "resuming" } else { "starting" };
            format!("{verb} {workflow} run {}", event.run)
        }
        EventKind::StepStarted { step, attempt, .. } if *attempt > 1 => {
            format!("  {} {step} (attempt {attempt})", printer.paint("…", "2"))
        }
        EventKind::StepCompleted {
            step,
            duration_ms,
            from_probe,
        } => {
            let probed = if *from_probe {
                ", found done by its probe"
            } else {
                ""
            };
            format!(
                "  {} {step} ({}{probed})",
                printer.paint("✓", "32"),
                duration(*duration_ms)
            )
        }
        EventKind::StepFailed {
            step,
            attempt,
            error,
            next_attempt_at,
            ..
        } => {
            let next = next_attempt_at
                .map(|at| {
                    format!(
                        "; retrying in {}",
                        duration(Millis::now().until(at).as_millis() as u64)
                    )
                })
                .unwrap_or_default();
            format!(
                "  {} {step}: {} (attempt {attempt}{next})",
                printer.paint("✗", "31"),
                crate::printer::sanitized(error)
            )
        }
        EventKind::StepInDoubt { step } => format!("  ? {step} was interrupted; probing"),
        // What a command printed is shown, never obeyed by the terminal.
        EventKind::StepOutput { step, line, .. } => {
            format!("    {step}| {}", crate::printer::sanitized(line))
        }
        EventKind::WaitingForInput { step, prompt } => {
            format!("  waiting for input at {step}: {prompt}")
        }
        EventKind::CancelRequested => "cancel requested: stopping at the next step boundary".into(),
        EventKind::JournalUnreachable { detail, waiting_ms } => format!(
            "  {} {}; waiting up to {} for it",
            printer.paint("!", "33"),
            crate::printer::sanitized(detail),
            duration(*waiting_ms)
        ),
        EventKind::JournalReachable { after_ms } => {
            format!(
                "  the journal answers again (after {}); going on",
                duration(*after_ms)
            )
        }
        EventKind::RunFinished { state, error } => match error {
            Some(e) => format!("run {short} {state}: {}", crate::printer::sanitized(e)),
            None => format!("run {short} {state}"),
        },
        _ => return None,
    };
    Some(line)
}
