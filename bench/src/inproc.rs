//! The engine in this process: `engine-bench` runs timed from `Engine::start` to the end
//! of `Driver::drive`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use foundry_core::{Engine, EventKind, Home, NoInput, RunState};
use tokio::runtime::Runtime;
use tokio::sync::broadcast::error::RecvError;

/// How long the event watcher may take to wind down once the run is over.
const WATCHER_GRACE: Duration = Duration::from_secs(5);

/// When things happened in one run, as seen from its event stream.
#[derive(Debug, Default)]
struct Marks {
    first_started: Option<Instant>,
    last_completed: Option<Instant>,
    finished: Option<Instant>,
    completed: u64,
    lagged: u64,
}

/// One timed run.
#[derive(Debug)]
pub struct RunTiming {
    pub steps: u64,
    /// From `start` to the end of `drive`.
    pub total: Duration,
    /// `Engine::start`: creating the journal.
    pub create: Duration,
    /// From the first step started to the last step completed, when the events showed both.
    pub steps_span: Option<Duration>,
    /// From the run's `run_finished` event to the end of `drive` (closing the writer,
    /// compacting the journal, pruning summaries).
    pub after_finish: Option<Duration>,
    pub completed_events: u64,
    pub lagged_events: u64,
}

impl RunTiming {
    pub fn per_step_us(&self) -> f64 {
        crate::stats::micros(self.total) / self.steps.max(1) as f64
    }

    pub fn steps_per_s(&self) -> f64 {
        self.steps as f64 / self.total.as_secs_f64().max(f64::MIN_POSITIVE)
    }

    /// A line for stderr: where the run's time went.
    pub fn describe(&self) -> String {
        let ms = crate::stats::millis;
        let span = self.steps_span.map_or_else(
            || "?".to_string(),
            |d| {
                let between = self.steps.saturating_sub(1).max(1) as f64;
                format!(
                    "{:.1} ms ({:.1} us/step)",
                    ms(d),
                    crate::stats::micros(d) / between
                )
            },
        );
        let after = self
            .after_finish
            .map_or_else(|| "?".to_string(), |d| format!("{:.1} ms", ms(d)));
        format!(
            "total {:.1} ms: create {:.1} ms, first step started -> last step completed {span}, \
             after run_finished {after}; {} step_completed events seen, {} lagged",
            ms(self.total),
            ms(self.create),
            self.completed_events,
            self.lagged_events
        )
    }
}

/// An engine whose home is `home`, with the workflows `foundry` knows.
pub fn engine_at(home: &Path) -> Engine {
    Engine::new(
        Home::at(home),
        foundry_workflows::registry(),
        Arc::new(NoInput),
    )
}

/// Whether a task follows the run's events while it is timed. A follower is what a
/// terminal or `status --follow` adds; the engine's own figure is taken without one, and
/// the step count is then checked from the run's summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    Events,
    Nothing,
}

/// Runs `engine-bench` with `steps` and `fanout` to its end and times it.
pub fn timed_run(
    rt: &Runtime,
    engine: &Engine,
    steps: u64,
    fanout: u64,
    watch: Watch,
) -> Result<RunTiming> {
    rt.block_on(async {
        let input = serde_json::json!({"steps": steps, "fanout": fanout});
        let t0 = Instant::now();
        let driver = engine
            .start("engine-bench", input)
            .context("starting engine-bench")?;
        let create = t0.elapsed();
        let run = driver.run_id();
        let rx = (watch == Watch::Events).then(|| driver.subscribe());
        let watcher = rx.map(|mut rx| {
            tokio::spawn(async move {
                let mut marks = Marks::default();
                // Ends with the run's last event, or when every sender is gone.
                loop {
                    match rx.recv().await {
                        Ok(event) => match event.kind {
                            EventKind::StepStarted { .. } => {
                                marks.first_started.get_or_insert_with(Instant::now);
                            }
                            EventKind::StepCompleted { .. } => {
                                marks.last_completed = Some(Instant::now());
                                marks.completed += 1;
                            }
                            EventKind::RunFinished { .. } => {
                                marks.finished = Some(Instant::now());
                                break;
                            }
                            _ => {}
                        },
                        Err(RecvError::Lagged(n)) => marks.lagged += n,
                        Err(RecvError::Closed) => break,
                    }
                }
                marks
            })
        });
        let outcome = driver.drive().await;
        let end = Instant::now();
        let total = end - t0;
        let marks = match watcher {
            Some(watcher) => match tokio::time::timeout(WATCHER_GRACE, watcher).await {
                Ok(Ok(marks)) => marks,
                Ok(Err(e)) => bail!("the event watcher failed: {e}"),
                Err(_) => bail!("the run's events did not end within {WATCHER_GRACE:?}"),
            },
            None => {
                let view = engine.view(run).await.context("reading the finished run")?;
                let done = view.snapshot.summary.map(|s| s.steps).unwrap_or(0);
                if done != steps {
                    bail!("engine-bench completed {done} steps, not {steps}");
                }
                Marks {
                    completed: done,
                    ..Marks::default()
                }
            }
        };
        let outcome = outcome.context("driving engine-bench")?;
        if outcome.state != RunState::Completed {
            bail!(
                "engine-bench ended {} rather than completed: {}",
                outcome.state,
                outcome.error.unwrap_or_default()
            );
        }
        let steps_span = match (marks.first_started, marks.last_completed) {
            (Some(a), Some(b)) if b > a => Some(b - a),
            _ => None,
        };
        Ok(RunTiming {
            steps,
            total,
            create,
            steps_span,
            after_finish: marks.finished.map(|f| end.saturating_duration_since(f)),
            completed_events: marks.completed,
            lagged_events: marks.lagged,
        })
    })
}

/// Time to the first action of a resumed run, in process: taking the run
/// (`Engine::resume`), and from there to the `step_in_doubt` event about `step`.
/// The run is then driven to its end.
pub fn resume_to_first_action(
    rt: &Runtime,
    engine: &Engine,
    run: &str,
    step: &str,
) -> Result<(Duration, Duration)> {
    let id: foundry_core::RunId = run.parse().with_context(|| format!("run id {run}"))?;
    rt.block_on(async {
        let t0 = Instant::now();
        let driver = engine.resume(id).await.context("taking the run")?;
        let took = t0.elapsed();
        let mut rx = driver.subscribe();
        let wanted = step.to_string();
        let watcher = tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(event) => {
                        if matches!(&event.kind, EventKind::StepInDoubt { step } if *step == wanted)
                        {
                            return Some(Instant::now());
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        let t1 = Instant::now();
        let outcome = driver.drive().await;
        let seen = match tokio::time::timeout(WATCHER_GRACE, watcher).await {
            Ok(Ok(seen)) => seen,
            Ok(Err(e)) => bail!("the event watcher failed: {e}"),
            Err(_) => bail!("the run's events did not end within {WATCHER_GRACE:?}"),
        };
        outcome.context("driving the resumed run")?;
        let seen = seen.with_context(|| format!("no step_in_doubt event about {step}"))?;
        Ok((took, seen.saturating_duration_since(t1)))
    })
}
