//! Cancel from another terminal while the run is driven: it stops at the step it is in,
//! and the undo steps run newest first. A run nobody drives is cancelled in place.

use foundry_tests::{Home, lines_of};
use serde_json::json;

use crate::drivers::{gated_step, start_until_running};

/// A step that touches `dir/key`, its undo removing it and logging `undo-key` in `dir/undo.log`.
pub fn undoable(key: &str, dir: &std::path::Path) -> serde_json::Value {
    let marker = dir.join(key).display().to_string();
    let log = dir.join("undo.log").display().to_string();
    json!({
        "key": key,
        "run": ["touch", marker],
        "undo": ["sh", "-c", format!("rm -f '{marker}' && echo undo-{key} >> '{log}'")],
    })
}

#[test]
fn cancel_from_another_terminal_runs_undo_in_reverse() {
    cancel_from_another_terminal_runs_undo_in_reverse_in(Home::new());
}

/// The body of [`cancel_from_another_terminal_runs_undo_in_reverse`], on `home`'s journal.
pub fn cancel_from_another_terminal_runs_undo_in_reverse_in(home: Home) {
    let dir = home.scratch();
    let gate = dir.join("never");
    let plan = json!({"steps": [
        undoable("a", &dir),
        undoable("b", &dir),
        {"key": "conf", "file": {"path": dir.join("app.conf").display().to_string(), "content": "x=1\n"}},
        gated_step("wait", &gate),
        undoable("never-reached", &dir),
    ]});
    let (owner, run) = start_until_running(&home, &plan, "wait#0");
    assert!(dir.join("a").exists() && dir.join("b").exists() && dir.join("app.conf").exists());

    let cancel = home.run(&["workflow", "cancel", &run]);
    assert_eq!(cancel.status.code(), Some(7), "{cancel:?}");
    let owner = owner.wait_with_output().expect("owner");
    assert_eq!(
        owner.status.code(),
        Some(7),
        "the driver ends cancelled: {owner:?}"
    );

    assert_eq!(lines_of(&dir.join("undo.log")), vec!["undo-b", "undo-a"]);
    assert!(!dir.join("a").exists() && !dir.join("b").exists());
    assert!(
        !dir.join("app.conf").exists(),
        "the file step's undo removes it"
    );
    assert!(!dir.join("never-reached").exists());
    let shown = home.show(&run);
    assert_eq!(shown["state"], "cancelled", "{shown}");
    // A cancelled run is finished: it cannot be resumed.
    let resumed = home.run(&["workflow", "resume", &run]);
    assert_eq!(resumed.status.code(), Some(1), "{resumed:?}");
    assert!(String::from_utf8_lossy(&resumed.stderr).contains("is cancelled"));
}

#[test]
fn cancel_of_an_undriven_run_runs_its_undo_here() {
    cancel_of_an_undriven_run_runs_its_undo_here_in(Home::new());
}

/// The body of [`cancel_of_an_undriven_run_runs_its_undo_here`], on `home`'s journal.
pub fn cancel_of_an_undriven_run_runs_its_undo_here_in(home: Home) {
    let dir = home.scratch();
    let plan = json!({"steps": [
        undoable("a", &dir),
        {"key": "fails", "run": ["false"], "retry": {"max_attempts": 1}},
    ]});
    let out = home.start_plan(&plan);
    assert_eq!(
        out.status.code(),
        Some(4),
        "retries exhausted pause the run: {out:?}"
    );
    let run = home.only_run();
    let cancel = home.run(&["workflow", "cancel", &run]);
    assert_eq!(cancel.status.code(), Some(7), "{cancel:?}");
    assert_eq!(lines_of(&dir.join("undo.log")), vec!["undo-a"]);
    assert_eq!(home.show(&run)["state"], "cancelled");
}

/// A step with an undo and a probe, killed at `point`; the run is then cancelled from
/// another terminal. The step in doubt is probed first: its undo runs exactly when its
/// effect is there.
fn cancel_in_doubt(point: &str) -> (Vec<String>, bool) {
    let home = Home::new();
    let dir = home.scratch();
    let mut step = undoable("a", &dir);
    step["probe"] = json!(["test", "-f", dir.join("a").display().to_string()]);
    let plan = json!({"steps": [step, {"key": "after", "run": ["true"]}]});
    let status = home
        .start_cmd(&plan)
        .env("FOUNDRY_FAILPOINTS", point)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("start");
    assert!(foundry_tests::killed(status), "{point}: {status:?}");
    let run = home.only_run();
    assert_eq!(home.show(&run)["step_list"][0]["state"], "in_doubt");
    let cancel = home.run(&["workflow", "cancel", &run]);
    assert_eq!(cancel.status.code(), Some(7), "{point}: {cancel:?}");
    assert_eq!(home.show(&run)["state"], "cancelled");
    (lines_of(&dir.join("undo.log")), dir.join("a").exists())
}

#[test]
fn cancel_probes_a_step_in_doubt_and_undoes_its_effect() {
    let (undone, left) = cancel_in_doubt("a#0@effect");
    assert_eq!(undone, vec!["undo-a"], "the effect was there: undone");
    assert!(!left, "the marker was removed by the undo");

    let (undone, left) = cancel_in_doubt("a#0@started");
    assert!(undone.is_empty(), "no effect, no undo: {undone:?}");
    assert!(!left);
}
