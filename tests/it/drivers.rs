//! One driver per run: a second is refused naming the owner; after the owner is killed,
//! the run is taken over. Status and list work from another process meanwhile.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Stdio};

use foundry_tests::{Home, kill};
use serde_json::{Value, json};

/// A step that waits (at most 30 s) until `gate` exists.
pub fn gated_step(key: &str, gate: &Path) -> Value {
    let gate = gate.display().to_string();
    json!({
        "key": key,
        "run": ["sh", "-c", format!("i=0; while [ ! -f '{gate}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; [ -f '{gate}' ]")],
        "retry": {"max_attempts": 1},
    })
}

/// Starts the plan in the background; returns the child once `key` is running.
pub fn start_until_running(home: &Home, plan: &Value, key: &str) -> (Child, String) {
    let child = home.spawn_plan(plan);
    let run = home.wait_for_run(&format!("step {key} running"), |shown| {
        shown["step_list"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s["key"] == key && s["state"] == "running"))
    });
    (child, run)
}

#[test]
fn a_second_driver_is_refused_and_a_dead_owner_is_taken_over() {
    a_second_driver_is_refused_and_a_dead_owner_is_taken_over_in(Home::new());
}

/// The body of [`a_second_driver_is_refused_and_a_dead_owner_is_taken_over`], on `home`'s journal.
pub fn a_second_driver_is_refused_and_a_dead_owner_is_taken_over_in(home: Home) {
    let gate = home.scratch().join("go");
    let out = home.scratch().join("after");
    let plan = json!({"steps": [
        gated_step("wait", &gate),
        {"key": "after", "run": ["touch", out.display().to_string()]},
    ]});
    let (mut owner, run) = start_until_running(&home, &plan, "wait#0");

    // Status and list from another process, while the run is driven.
    let listed = home.runs();
    assert_eq!(listed[0]["state"], "running", "{listed:?}");
    assert_eq!(listed[0]["driver"]["pid"], json!(owner.id()), "{listed:?}");

    let second = home.run(&["workflow", "resume", &run[..8]]);
    assert_eq!(second.status.code(), Some(6), "{second:?}");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("pid {}", owner.id())), "{stderr}");
    let host = rustix_hostname();
    assert!(stderr.contains(&format!("on host {host}")), "{stderr}");

    kill(&mut owner);
    let shown = home.show(&run);
    assert_eq!(shown["state"], "interrupted", "{shown}");
    assert_eq!(shown["step_list"][0]["state"], "in_doubt", "{shown}");

    std::fs::write(&gate, b"").expect("gate");
    let resumed = home.run(&["workflow", "resume", &run]);
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(out.exists());
    assert_eq!(home.show(&run)["state"], "completed");
}

fn rustix_hostname() -> String {
    let out = std::process::Command::new("hostname")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn status_follow_streams_a_driven_run_to_its_end() {
    status_follow_streams_a_driven_run_to_its_end_in(Home::new());
}

/// The body of [`status_follow_streams_a_driven_run_to_its_end`], on `home`'s journal.
pub fn status_follow_streams_a_driven_run_to_its_end_in(home: Home) {
    let gate = home.scratch().join("go");
    let plan = json!({"steps": [gated_step("wait", &gate), {"key": "next", "run": ["true"]}]});
    let (mut owner, run) = start_until_running(&home, &plan, "wait#0");
    let mut follower = home
        .cmd(&["workflow", "status", &run, "--follow", "--output", "json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("follow");
    // The gate opens only once the follower follows: its first line is the live status.
    let mut stdout = BufReader::new(follower.stdout.take().expect("follower stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("follower's first line");
    std::fs::write(&gate, b"").expect("gate");
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).expect("follower output");
    let status = follower.wait().expect("follower");
    assert!(status.success(), "{status:?}: {first}");
    let mut lines = foundry_tests::json_lines(first.as_bytes());
    lines.extend(foundry_tests::json_lines(&rest));
    assert_eq!(
        lines[0]["state"], "running",
        "first line is the status: {lines:?}"
    );
    let events: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.contains(&"step_completed"), "{events:?}");
    assert_eq!(events.last(), Some(&"run_finished"), "{events:?}");
    let status = owner.wait().expect("owner");
    assert!(status.success());
    kill(&mut owner);
}
