//! Crash points for the crash tests: `FOUNDRY_FAILPOINTS=step-key@phase,...` makes the
//! process SIGKILL itself at that exact point, as a power cut would. Unset, it costs one
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
