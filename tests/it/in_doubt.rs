//! Each in-doubt class of a plan's command, end to end: the binary SIGKILLs itself inside
//! the step (its crash point), is resumed, and the command's effects are counted in a
//! file. Probe: decided by the probe, not run again. Rerun: run again, once. Pause: not
//! run again; the run pauses naming the step until a person says `--done` or `--redo`.

use std::path::Path;
use std::process::{Output, Stdio};

use foundry_tests::{Home, killed, lines_of};
use serde_json::{Value, json};

/// A plan whose middle step `it` appends `effect` to `out`; `class` is merged into it.
fn plan(out: &Path, class: Value) -> Value {
    let out = out.display().to_string();
    let append = |line: &str| json!(["sh", "-c", format!("echo {line} >> '{out}'")]);
    let mut it = json!({ "key": "it", "run": append("effect") });
    if let (Some(it), Some(class)) = (it.as_object_mut(), class.as_object()) {
        it.extend(class.clone());
    }
    json!({ "steps": [
        { "key": "before", "run": append("before") },
        it,
        { "key": "after", "run": append("after") },
    ]})
}

/// Starts the plan with a crash point at `it#0@<phase>`; returns the run's id.
fn killed_at(home: &Home, plan: &Value, phase: &str) -> String {
    let status = home
        .start_cmd(plan)
        .env("FOUNDRY_FAILPOINTS", format!("it#0@{phase}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start");
    assert!(killed(status), "not killed at {phase}: {status:?}");
    let run = home.only_run();
    let step = step(home, &run, "it#0");
    assert_eq!(step["state"], "in_doubt", "{step}");
    run
}

fn step(home: &Home, run: &str, key: &str) -> Value {
    let shown = home.show(run);
    shown["step_list"]
        .as_array()
        .and_then(|steps| steps.iter().find(|s| s["key"] == key))
        .cloned()
        .unwrap_or_else(|| panic!("no step {key} in {shown}"))
}

fn effects(out: &Path) -> usize {
    lines_of(out).iter().filter(|l| *l == "effect").count()
}

fn completed(home: &Home, run: &str, out: &Path) {
    assert_eq!(home.show(run)["state"], "completed");
    let lines = lines_of(out);
    assert_eq!(
        lines.first().map(String::as_str),
        Some("before"),
        "{lines:?}"
    );
    assert_eq!(lines.last().map(String::as_str), Some("after"), "{lines:?}");
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn in_doubt_a_probed_command_is_decided_by_its_probe_not_run_again() {
    in_doubt_a_probed_command_is_decided_by_its_probe_not_run_again_in(Home::new());
}

/// The body of [`in_doubt_a_probed_command_is_decided_by_its_probe_not_run_again`], on `home`'s journal.
pub fn in_doubt_a_probed_command_is_decided_by_its_probe_not_run_again_in(home: Home) {
    let out = home.scratch().join("out.txt");
    let probe = json!({ "probe": ["grep", "-qx", "effect", out.display().to_string()] });
    let run = killed_at(&home, &plan(&out, probe), "effect");
    assert_eq!(effects(&out), 1);
    home.ok(&["workflow", "resume", &run]);
    completed(&home, &run, &out);
    assert_eq!(
        effects(&out),
        1,
        "the probe found the effect: not run again"
    );
}

#[test]
fn in_doubt_a_rerun_command_runs_again_once() {
    let home = Home::new();
    let out = home.scratch().join("out.txt");
    // `rerun` is the default of a command without a probe; say it to test the word too.
    let run = killed_at(&home, &plan(&out, json!({ "in_doubt": "rerun" })), "effect");
    assert_eq!(effects(&out), 1);
    home.ok(&["workflow", "resume", &run]);
    completed(&home, &run, &out);
    assert_eq!(effects(&out), 2, "run again, exactly once");
}

#[test]
fn in_doubt_a_pause_command_waits_for_a_person_then_took_effect_once() {
    let home = Home::new();
    let out = home.scratch().join("out.txt");
    let plan = plan(&out, json!({ "in_doubt": "pause" }));

    // Killed after its effect: resuming pauses on it, every time, and runs nothing.
    let run = killed_at(&home, &plan, "effect");
    for _ in 0..2 {
        let resumed = home.run(&["workflow", "resume", &run]);
        assert!(!resumed.status.success(), "{}", text(&resumed));
        assert_eq!(effects(&out), 1, "not run again");
        let status = home.ok(&["workflow", "status", &run]);
        assert!(status.contains("state     paused"), "{status}");
        assert!(status.contains("at        it#0"), "{status}");
        assert!(
            status.contains("step it#0 was interrupted and must not run twice unchecked"),
            "{status}"
        );
        assert!(status.contains("--done it#0"), "{status}");
        assert_eq!(step(&home, &run, "it#0")["state"], "in_doubt");
    }
    assert!(
        !lines_of(&out).contains(&"after".to_string()),
        "stopped at it"
    );

    // A step that is not in doubt is refused, naming the one that is.
    let refused = home.run(&["workflow", "resume", &run, "--done", "before"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("step `before` is not in doubt (in doubt: it#0)"),
        "{}",
        text(&refused)
    );

    // The person found the effect there.
    home.ok(&["workflow", "resume", &run, "--done", "it"]);
    completed(&home, &run, &out);
    assert_eq!(effects(&out), 1, "the effect happened exactly once");
}

#[test]
fn in_doubt_a_pause_command_killed_before_its_effect_is_redone_on_a_persons_word() {
    let home = Home::new();
    let out = home.scratch().join("out.txt");
    let run = killed_at(
        &home,
        &plan(&out, json!({ "in_doubt": "pause" })),
        "started",
    );
    assert_eq!(effects(&out), 0);
    let resumed = home.run(&["workflow", "resume", &run]);
    assert!(!resumed.status.success(), "{}", text(&resumed));
    assert_eq!(home.show(&run)["state"], "paused");
    assert_eq!(effects(&out), 0, "not run unchecked");

    // The person found no effect.
    home.ok(&["workflow", "resume", &run, "--redo", "it#0"]);
    completed(&home, &run, &out);
    assert_eq!(effects(&out), 1, "the effect happened exactly once");
}
