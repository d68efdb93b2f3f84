//! `foundry workflow status RUN --verify`, end to end on plans whose effects are files of
//! this machine (the real peer of a `local` plan): a run killed part-way has its
//! completed steps probed again, read-only. An effect removed or changed by hand since
//! its step completed is marked drifted; nothing runs, nothing is written to the journal,
//! and the run resumes afterwards as it would have.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use foundry_tests::{Home, killed, lines_of, wait_for};
use serde_json::{Value, json};

/// A plan of five steps: a file, two commands with probes, one without, and a last one;
/// each command appends its name to `effects`.
fn plan(dir: &Path) -> Value {
    let at = |name: &str| dir.join(name).display().to_string();
    let effects = at("effects");
    let touch = |name: &str| {
        json!([
            "sh",
            "-c",
            format!("touch '{}' && echo {name} >> '{effects}'", at(name))
        ])
    };
    json!({ "steps": [
        { "key": "conf", "file": { "path": at("app.conf"), "content": "port = 8080\n" } },
        { "key": "marker", "run": touch("marker"), "probe": ["test", "-f", at("marker")] },
        { "key": "kept", "run": touch("kept"), "probe": ["test", "-f", at("kept")] },
        { "key": "plain", "run": touch("plain") },
        { "key": "last", "run": touch("last") },
    ]})
}

/// The verification `--verify --output json` prints, and its exit code.
pub(crate) fn verify(home: &Home, run: &str) -> (Value, Option<i32>) {
    let out = home.run(&["workflow", "status", run, "--verify", "--output", "json"]);
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "--verify printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (printed["verification"].clone(), out.status.code())
}

/// Each step's finding, by key.
fn findings(verification: &Value) -> Vec<(String, String)> {
    verification["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["key"].as_str().unwrap_or_default().to_string(),
                s["result"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What the journal says of a run, less the in-doubt step's duration (which grows with the
/// clock).
fn recorded(home: &Home, run: &str) -> Value {
    let mut shown = home.show(run);
    if let Some(steps) = shown["step_list"].as_array_mut() {
        for step in steps.iter_mut().filter(|s| s["state"] == "in_doubt") {
            step["duration_ms"] = Value::Null;
        }
    }
    shown
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn verify_marks_each_completed_step_whose_effect_is_gone_and_changes_nothing() {
    let home = Home::new();
    let dir = home.scratch();
    let status = home
        .start_cmd(&plan(&dir))
        .env("FOUNDRY_FAILPOINTS", "last#0@started")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start");
    assert!(killed(status), "not killed: {status:?}");
    let run = home.only_run();

    // Nothing drifted yet: every probed step is present, the unprobed one unchecked.
    let (v, code) = verify(&home, &run);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(
        findings(&v),
        pairs(&[
            ("conf#0", "present"),
            ("marker#0", "present"),
            ("kept#0", "present"),
            ("plain#0", "unchecked"),
        ])
    );
    assert_eq!(v["stopped_at"], json!(["last#0"]), "{v}");

    // By hand: one file removed, one changed.
    std::fs::remove_file(dir.join("marker")).expect("rm marker");
    std::fs::write(dir.join("app.conf"), "port = 9090\n").expect("edit conf");
    let journal = recorded(&home, &run);
    let (v, code) = verify(&home, &run);
    assert_eq!(code, Some(1), "drift must fail the command: {v}");
    assert_eq!(
        findings(&v),
        pairs(&[
            ("conf#0", "drifted"),
            ("marker#0", "drifted"),
            ("kept#0", "present"),
            ("plain#0", "unchecked"),
        ])
    );
    // Read-only: the journal is as it was, nothing ran, nothing was repaired.
    assert_eq!(recorded(&home, &run), journal);
    assert_eq!(lines_of(&dir.join("effects")), ["marker", "kept", "plain"]);
    assert!(!dir.join("marker").exists());
    assert_eq!(
        std::fs::read_to_string(dir.join("app.conf")).expect("conf"),
        "port = 9090\n"
    );

    // The people-facing form says the same and tells what to do.
    let out = home.run(&["workflow", "status", &run, "--verify"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("2 drifted") && text.contains("DRIFTED") && text.contains("hint:"),
        "{text}"
    );

    // The run resumes as it would have: the completed steps are not run again.
    home.ok(&["workflow", "resume", &run]);
    assert_eq!(home.show(&run)["state"], "completed");
    assert_eq!(
        lines_of(&dir.join("effects")),
        ["marker", "kept", "plain", "last"]
    );
}

#[test]
fn verify_refuses_a_run_being_driven_and_a_finished_one() {
    let home = Home::new();
    let dir = home.scratch();
    let flag = dir.join("started");
    let plan = json!({ "steps": [
        { "key": "wait", "run": ["sh", "-c", format!("touch '{}'; exec sleep 30", flag.display())] },
    ]});
    let mut child = home.spawn_plan(&plan);
    wait_for("the step to start", Duration::from_secs(20), || {
        flag.exists()
    });
    let run = home.only_run();
    let out = home.run(&["workflow", "status", &run, "--verify"]);
    foundry_tests::kill(&mut child);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is driven by"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let done = Home::new();
    let out = done.start_plan(&json!({ "steps": [ { "key": "one", "run": ["true"] } ] }));
    assert!(out.status.success());
    let run = done.only_run();
    let out = done.run(&["workflow", "status", &run, "--verify"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("only an unfinished run") && err.contains("stack status"),
        "{err}"
    );
}

/// Each step whose probe did not find its effect, or could not answer.
pub(crate) fn unsound(verification: &Value) -> Vec<(String, String)> {
    findings(verification)
        .into_iter()
        .filter(|(_, found)| found != "present" && found != "unchecked")
        .collect()
}

#[test]
fn verify_of_a_setup_killed_before_its_last_look_marks_a_stopped_container_only() {
    let lab = foundry_tests::lab::Lab::up("verify", 1);
    let config = lab.config.to_str().expect("utf8").to_string();
    let setup = || lab.home.cmd(&["--config", &config, "setup", "--yes"]);
    let out = setup()
        .env("FOUNDRY_FAILPOINTS", "verify#0@started")
        .output()
        .expect("setup");
    assert!(killed(out.status), "not killed: {out:?}");
    let run = lab.home.unfinished_run();

    // Every probed step agrees with the journal: nothing drifted.
    let (v, code) = verify(&lab.home, &run);
    assert_eq!(unsound(&v), [], "{v}");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["stopped_at"], json!(["verify#0"]), "{v}");

    // The registry's container stopped by hand: its step, and only the registry's
    // steps, drift.
    let registry = format!("foundry-lab-{}-zot", lab.name);
    let stopped = foundry_tests::docker::docker(&["stop", "-t", "1", &registry]);
    assert!(stopped.status.success(), "{stopped:?}");
    let (v, code) = verify(&lab.home, &run);
    assert_eq!(code, Some(1), "{v}");
    let drifted = unsound(&v);
    assert!(
        drifted.contains(&(
            "stack/zot/registry/container#0".to_string(),
            "drifted".to_string()
        )),
        "{drifted:?}"
    );
    assert!(
        drifted
            .iter()
            .all(|(key, _)| key.starts_with("stack/zot/registry/")),
        "{drifted:?}"
    );

    // Started again: sound again, and the setup resumes to its end.
    let started = foundry_tests::docker::docker(&["start", &registry]);
    assert!(started.status.success(), "{started:?}");
    let mut sound = false;
    for _ in 0..30 {
        let (v, _) = verify(&lab.home, &run);
        if unsound(&v).is_empty() {
            sound = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(sound, "the registry never answered again");
    let out = setup().output().expect("setup");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lab.home.show(&run)["state"], "completed");
}
