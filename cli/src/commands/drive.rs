//! Drives a run in this process while rendering its events. On a terminal, a step keyed
//! under a name (`<host>/<step>`, as a fan-out keys its children) gets a line per name
//! showing its current step, so every fan-out workflow shows progress per host.

use std::collections::BTreeMap;

use foundry_core::{Driver, EventKind};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::sync::broadcast::error::RecvError;

use crate::exit::{self, CliError};
use crate::printer::Printer;
use crate::render;

/// Returns the exit code for how the run ended, and the run's output if it completed.
pub async fn drive(
    driver: Driver,
    printer: &Printer,
    bar: Option<ProgressBar>,
) -> Result<(u8, Option<serde_json::Value>), CliError> {
    let run = driver.run_id();
    let short = driver.short_id().to_string();
    let mut rx = driver.subscribe();
    let renderer = {
        let printer = printer.clone();
        let short = short.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            if let Some(bar) = &bar {
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            let mut lines = bar.as_ref().map(Lines::new);
            // Whether a step said why the run failed; if none did, the run's end says it.
            let mut step_failed = false;
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let last = matches!(event.kind, EventKind::RunFinished { .. });
                step_failed |= matches!(event.kind, EventKind::StepFailed { .. });
                let unsaid = matches!(
                    &event.kind,
                    EventKind::RunFinished {
                        state: foundry_core::RunState::Failed,
                        error: Some(_),
                    } if !step_failed
                );
                if printer.json() {
                    if printer.data(&event).is_err() {
                        return;
                    }
                } else {
                    let shown = lines.as_mut().is_some_and(|l| l.show(&event.kind));
                    match (&bar, &event.kind) {
                        (Some(bar), EventKind::StepStarted { step, .. }) if !shown => {
                            bar.set_message(step.clone())
                        }
                        (Some(bar), EventKind::RunStarted { workflow, .. }) => {
                            bar.set_message(workflow.clone())
                        }
                        _ => {}
                    }
                    // The run's end is said once, by the result line below (with its
                    // error when no step said it); a step on a line of its own needs no
                    // line per completion or output.
                    let quiet = (last && !unsaid)
                        || (shown
                            && matches!(
                                event.kind,
                                EventKind::StepCompleted { .. } | EventKind::StepOutput { .. }
                            ));
                    let line = (!quiet)
                        .then(|| render::event_line(&printer, &event, &short))
                        .flatten();
                    if let Some(line) = line {
                        match &lines {
                            Some(l) => l.println(&line),
                            None => printer.note(&line),
                        }
                    }
                }
                if last {
                    if let Some(l) = &lines {
                        l.clear();
                    }
                    return;
                }
            }
        })
    };
    let outcome = tokio::select! {
        outcome = driver.drive() => outcome,
        _ = tokio::signal::ctrl_c() => {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            printer.note(&format!(
                "interrupted: the run is kept; `foundry workflow resume {short}` continues it"
            ));
            return Err(CliError::quiet(exit::INTERRUPTED));
        }
    };
    let _ = renderer.await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let outcome = outcome?;
    if !printer.json() {
        let hint = match outcome.state {
            foundry_core::RunState::Paused
            | foundry_core::RunState::Failed
            | foundry_core::RunState::WaitingForInput => {
                format!("; `foundry workflow resume {short}` continues")
            }
            _ => String::new(),
        };
        let _ = printer.line(&format!("run {} {}{hint}", run, outcome.state));
    }
    Ok((exit::for_state(outcome.state), outcome.output))
}

/// One progress line per name (`host-1` of `host-1/user#0`), under the run's spinner.
struct Lines {
    multi: MultiProgress,
    by_name: BTreeMap<String, ProgressBar>,
    style: ProgressStyle,
}

impl Lines {
    fn new(main: &ProgressBar) -> Self {
        let multi = MultiProgress::new();
        multi.add(main.clone());
        let style = ProgressStyle::with_template("{spinner} {prefix:.bold} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        Lines {
            multi,
            by_name: BTreeMap::new(),
            style,
        }
    }

    /// `("host-1", "user")` for `host-1/user#0`; undo steps and unscoped ones have no line.
    fn split(step: &str) -> Option<(&str, &str)> {
        let (name, rest) = step.split_once('/')?;
        let rest = rest.rsplit_once('#').map_or(rest, |(k, _)| k);
        (name != "undo").then_some((name, rest))
    }

    /// Shows the event on its name's line; whether it had one.
    fn show(&mut self, kind: &EventKind) -> bool {
        let Some((name, rest)) = kind.step().and_then(Self::split) else {
            return false;
        };
        let bar = self.by_name.entry(name.to_string()).or_insert_with(|| {
            let bar = self.multi.add(ProgressBar::new_spinner());
            bar.set_style(self.style.clone());
            bar.set_prefix(name.to_string());
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        match kind {
            EventKind::StepStarted { attempt, .. } if *attempt > 1 => {
                bar.set_message(format!("{rest} (attempt {attempt})"))
            }
            EventKind::StepStarted { .. } => bar.set_message(rest.to_string()),
            EventKind::StepCompleted { .. } => bar.set_message(format!("{rest} ✓")),
            EventKind::StepFailed { .. } => bar.set_message(format!("{rest} ✗")),
            _ => {}
        }
        true
    }

    fn println(&self, line: &str) {
        let _ = self.multi.println(line);
    }

    fn clear(&self) {
        for bar in self.by_name.values() {
            bar.finish_and_clear();
        }
    }
}

/// Starts `workflow` with `input`, or resumes the interrupted or paused run of it with the
/// same input (a failed one is not: its error was permanent, and a new run's probes find
/// what it did), and drives it here: the run, its exit code and output.
pub async fn start_or_resume(
    workflow: &str,
    input: serde_json::Value,
    printer: &Printer,
) -> Result<(String, (u8, Option<serde_json::Value>)), CliError> {
    let (engine, bar) = super::engine(printer)?;
    let unfinished = newest_unfinished(&engine, |info, state| {
        info.workflow == workflow && info.input == input && state != foundry_core::RunState::Failed
    })
    .await?;
    let driver = match unfinished {
        Some(run) => {
            printer.note(&format!(
                "resuming the unfinished run {} of {workflow}",
                engine.short_id(run)
            ));
            engine.resume(run).await?
        }
        None => engine.start(workflow, input)?,
    };
    let run = driver.run_id().to_string();
    let out = drive(driver, printer, bar).await?;
    Ok((run, out))
}

/// The newest run of the home that is not finished and that `ours` picks (by its info and
/// state), when there is one: what a command resumes rather than starting anew.
pub async fn newest_unfinished(
    engine: &foundry_core::Engine,
    ours: impl Fn(&foundry_core::model::RunInfo, foundry_core::RunState) -> bool,
) -> Result<Option<foundry_core::RunId>, CliError> {
    let mut found: Vec<(u64, foundry_core::RunId)> = engine
        .list()
        .await?
        .into_iter()
        .filter_map(|(id, view)| {
            let snapshot = view.ok()?.snapshot;
            let state = snapshot.meta.state;
            (!state.is_finished() && ours(&snapshot.info, state))
                .then_some((snapshot.info.created_at.0, id))
        })
        .collect();
    found.sort();
    Ok(found.pop().map(|(_, id)| id))
}
