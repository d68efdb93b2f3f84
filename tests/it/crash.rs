//! Crash matrix: SIGKILL the driving process at every step boundary and at random
//! moments; resume; every effect happened exactly once and no step record is left.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use foundry_tests::{Home, kill, killed, lines_of};
use rand::Rng;
use serde_json::{Value, json};

const STEPS: usize = 20;

/// A plan of `STEPS` steps, each appending one unique line to `out` (probe: the line is there).
fn appending_plan(out: &Path) -> Value {
    appending_plan_of(out, STEPS)
}

fn appending_plan_of(out: &Path, steps: usize) -> Value {
    let out = out.display().to_string();
    let steps: Vec<Value> = (0..steps)
        .map(|i| {
            json!({
                "key": format!("append-{i}"),
                "run": ["sh", "-c", format!("echo line-{i} >> '{out}'")],
                "probe": ["grep", "-qx", format!("line-{i}"), out],
            })
        })
        .collect();
    json!({ "steps": steps })
}

fn expected_lines() -> Vec<String> {
    (0..STEPS).map(|i| format!("line-{i}")).collect()
}

/// The run completed, each line is there exactly once, and its journal holds no step.
fn assert_done_exactly_once(home: &Home, run: &str, out: &Path, context: &str) {
    assert_eq!(
        lines_of(out),
        expected_lines(),
        "{context}: lines in {}",
        out.display()
    );
    let shown = home.show(run);
    assert_eq!(shown["state"], "completed", "{context}: {shown}");
    assert_eq!(
        shown["step_list"],
        json!([]),
        "{context}: step records remain: {shown}"
    );
    assert_eq!(
        shown["steps"]["total"],
        json!(STEPS),
        "{context}: summary {shown}"
    );
    let log = home.runs_dir().join(format!("{run}.wal"));
    assert!(
        !log.exists(),
        "{context}: a finished run keeps its write-ahead log"
    );
}

fn crash_at_every_step(phase: &str) {
    for i in 0..STEPS {
        let home = Home::new();
        let out = home.scratch().join("out.txt");
        let point = format!("append-{i}#0@{phase}");
        let status = home
            .start_cmd(&appending_plan(&out))
            .env("FOUNDRY_FAILPOINTS", &point)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("start");
        assert!(
            killed(status),
            "{point}: the process was not killed: {status:?}"
        );
        let run = home.only_run();
        let shown = home.show(&run);
        let interrupted = format!("append-{i}#0");
        let step = shown["step_list"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["key"] == interrupted.as_str()))
            .cloned();
        match phase {
            // Started and not finished: in doubt until the probe decides.
            "started" | "effect" => {
                let step = step.unwrap_or_else(|| panic!("{point}: step missing in {shown}"));
                assert_eq!(step["state"], "in_doubt", "{point}: {shown}");
                assert_eq!(shown["state"], "interrupted", "{point}: {shown}");
            }
            // Completed durably (the last one together with the run's end).
            _ => {
                if i + 1 < STEPS {
                    let step = step.unwrap_or_else(|| panic!("{point}: step missing in {shown}"));
                    assert_eq!(step["state"], "done", "{point}: {shown}");
                }
            }
        }
        // Resuming a run that had completed says so and succeeds.
        home.ok(&["workflow", "resume", &run]);
        assert_done_exactly_once(&home, &run, &out, &point);
    }
}

#[test]
fn crash_after_started_is_durable_at_every_step() {
    crash_at_every_step("started");
}

#[test]
fn crash_after_effect_before_completed_at_every_step() {
    crash_at_every_step("effect");
}

#[test]
fn crash_after_completed_at_every_step() {
    crash_at_every_step("completed");
}

/// SIGKILL at random moments, over and over, until each run completes.
#[test]
fn crash_at_random_moments() {
    let mut rng = rand::rng();
    let mut kills = 0;
    let mut runs = 0;
    while kills < 60 {
        runs += 1;
        assert!(runs <= 40, "too many runs for {kills} kills");
        let home = Home::new();
        let out = home.scratch().join("out.txt");
        let plan = appending_plan(&out);
        let mut run: Option<String> = None;
        let mut finished = false;
        for round in 0..40 {
            let mut child = match &run {
                None => home.spawn_plan(&plan),
                Some(id) => home
                    .cmd(&["workflow", "resume", id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn"),
            };
            // Later rounds get longer, so every run eventually gets through.
            let delay = rng.random_range(0..(40 + round * 40));
            std::thread::sleep(Duration::from_millis(delay));
            match child.try_wait().expect("try_wait") {
                Some(status) => {
                    assert!(status.success(), "round {round}: {status:?}");
                }
                None => {
                    kill(&mut child);
                    kills += 1;
                }
            }
            if run.is_none() {
                let listed = home.runs();
                run = listed
                    .first()
                    .and_then(|r| r["run"].as_str())
                    .map(str::to_string);
            }
            if let Some(id) = &run
                && home.show(id)["state"] == "completed"
            {
                finished = true;
                break;
            }
        }
        assert!(finished, "run {run:?} did not complete in 40 rounds");
        let id = run.expect("a run");
        home.ok(&["workflow", "resume", &id]);
        assert_done_exactly_once(&home, &id, &out, &format!("random run {runs}"));
    }
}

/// Past the journal's checkpoints: killed after 300 steps, the run is read (status from
/// another process) and resumed from its log and its last checkpoint together.
#[test]
fn crash_after_many_checkpoints_resumes_from_checkpoint_and_log() {
    const MANY: usize = 320;
    let home = Home::new();
    let out = home.scratch().join("out.txt");
    let status = home
        .start_cmd(&appending_plan_of(&out, MANY))
        .env("FOUNDRY_FAILPOINTS", "append-300#0@effect")
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("start");
    assert!(killed(status), "{status:?}");
    let run = home.only_run();
    let shown = home.show(&run);
    assert_eq!(shown["steps"]["done"], 300, "{}", shown["steps"]);
    assert_eq!(shown["steps"]["in_doubt"], 1, "{}", shown["steps"]);
    home.ok(&["workflow", "resume", &run]);
    let expected: Vec<String> = (0..MANY).map(|i| format!("line-{i}")).collect();
    assert_eq!(lines_of(&out), expected);
    let shown = home.show(&run);
    assert_eq!(shown["state"], "completed");
    assert_eq!(shown["step_list"], json!([]));
}
