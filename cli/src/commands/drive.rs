//! Drives a run in this process while rendering its events.

use foundry_core::{Driver, EventKind};
use indicatif::ProgressBar;
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
    let mut rx = driver.subscribe();
    let renderer = {
        let printer = printer.clone();
        let bar = bar.clone();
        tokio::spawn(async move {
            if let Some(bar) = &bar {
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            loop {
                let event = match rx.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                };
                let last = matches!(event.kind, EventKind::RunFinished { .. });
                if printer.json() {
                    if printer.data(&event).is_err() {
                        return;
                    }
                } else {
                    if let (Some(bar), EventKind::StepStarted { step, .. }) = (&bar, &event.kind) {
                        bar.set_message(step.clone());
                    }
                    // The run's end is said once, by the result line below.
                    let line = (!last)
                        .then(|| render::event_line(&printer, &event))
                        .flatten();
                    if let Some(line) = line {
                        match &bar {
                            Some(bar) => bar.println(line),
                            None => printer.note(&line),
                        }
                    }
                }
                if last {
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
                "interrupted: the run is kept; `foundry workflow resume {}` continues it",
                run.short()
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
                format!("; `foundry workflow resume {}` continues", run.short())
            }
            _ => String::new(),
        };
        let _ = printer.line(&format!("run {} {}{hint}", run, outcome.state));
    }
    Ok((exit::for_state(outcome.state), outcome.output))
}
