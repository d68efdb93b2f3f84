//! Crash points for the crash tests: `FOUNDRY_FAILPOINTS=step-key@phase,...` makes the
//! process SIGKILL itself at that exact point, as a power cut would. `step-key@started-cut`
//! and `step-key@completed-cut` instead cut the journal's connection (a shared journal's)
//! inside the commit that records the step so, once per process. Unset, it costs one
//! branch on an empty list.

use std::sync::OnceLock;

/// Where in a step's life the process may be killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `started` is durable; the activity has not run.
    Started,
    /// The activity's effect happened; `completed` is not yet recorded.
    Effect,
    /// `completed` is durable.
    Completed,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Started => "started",
            Phase::Effect => "effect",
            Phase::Completed => "completed",
        }
    }
}

fn points() -> &'static [String] {
    static POINTS: OnceLock<Vec<String>> = OnceLock::new();
    POINTS.get_or_init(|| {
        std::env::var("FOUNDRY_FAILPOINTS")
            .map(|v| v.split(',').map(str::to_string).collect())
            .unwrap_or_default()
    })
}

/// Kills the process if a crash point is set for `step` at `phase`.
pub fn hit(step: &str, phase: Phase) {
    let points = points();
    if points.is_empty() {
        return;
    }
    let wanted = format!("{step}@{}", phase.name());
    if points.contains(&wanted) {
        tracing::warn!(%step, phase = phase.name(), "failpoint: killing this process");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}

/// Whether the connection of the commit recording `step` at `phase` is to be cut: true once
/// per process for each point set.
pub fn cut(step: &str, phase: Phase) -> bool {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let points = points();
    if points.is_empty() {
        return false;
    }
    let wanted = format!("{step}@{}-cut", phase.name());
    if !points.contains(&wanted) {
        return false;
    }
    let mut done = DONE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if done.contains(&wanted) {
        return false;
    }
    tracing::warn!(%step, phase = phase.name(), "failpoint: cutting the journal's connection");
    done.push(wanted);
    true
}
