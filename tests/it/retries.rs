//! Retries: a transient failure keeps its attempt count and its schedule across a restart;
//! exhausted retries pause the run; `workflow resume` continues it.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foundry_tests::{Home, kill, lines_of};
use serde_json::{Value, json};

const DELAY_MS: u64 = 3_000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Fails until its `succeed_at`-th attempt overall; logs each attempt's start time (ms).
fn flaky_step(dir: &Path, succeed_at: u32) -> Value {
    let count = dir.join("count").display().to_string();
    let times = dir.join("times").display().to_string();
    json!({
        "key": "flaky",
        "run": ["sh", "-c", format!(
            "n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{count}'; \
             date +%s%3N >> '{times}'; echo \"attempt $n failing\" >&2; [ $n -ge {succeed_at} ]"
        )],
        "retry": {"initial_ms": DELAY_MS, "factor": 1.0, "jitter": 0.0, "max_attempts": 3, "max_elapsed_ms": null},
    })
}

fn flaky(shown: &Value) -> Value {
    shown["step_list"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["key"] == "flaky#0"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[test]
fn schedule_survives_a_restart_and_exhaustion_pauses() {
    schedule_survives_a_restart_and_exhaustion_pauses_in(Home::new());
}

/// The body of [`schedule_survives_a_restart_and_exhaustion_pauses`], on `home`'s journal.
pub fn schedule_survives_a_restart_and_exhaustion_pauses_in(home: Home) {
    let dir = home.scratch();
    let mut child = home.spawn_plan(&json!({"steps": [flaky_step(&dir, 5)]}));
    let run = home.wait_for_run("the first attempt to fail", |shown| {
        flaky(shown)["state"] == "pending"
    });
    kill(&mut child);

    let step = flaky(&home.show(&run));
    assert_eq!(step["attempts"], 1, "{step}");
    assert!(
        step["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("exited with status 1")),
        "{step}"
    );
    let next_at = step["next_attempt_at"]
        .as_u64()
        .expect("next attempt journaled");
    let first = lines_of(&dir.join("times"))[0]
        .parse::<u64>()
        .expect("time");
    assert!(
        next_at >= first + DELAY_MS - 50,
        "next {next_at} first {first}"
    );

    // Resume one second before the journaled time: a reset schedule would wait a full
    // delay from now, a skipped one would start at once; the kept one starts at next_at.
    let resume_at = next_at - 1_000;
    std::thread::sleep(Duration::from_millis(resume_at.saturating_sub(now_ms())));
    let resumed_at = now_ms();
    let out = home.run(&["workflow", "resume", &run]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "exhausted retries pause the run: {out:?}"
    );

    let times: Vec<u64> = lines_of(&dir.join("times"))
        .iter()
        .map(|t| t.parse().expect("time"))
        .collect();
    assert_eq!(
        times.len(),
        3,
        "max_attempts is 3 in all, across the restart: {times:?}"
    );
    assert!(
        times[1] >= next_at,
        "attempt 2 at {} ran before its time {next_at}",
        times[1]
    );
    assert!(
        times[1] < resumed_at + DELAY_MS - 500,
        "attempt 2 at {} waited a whole new delay from the resume at {resumed_at}",
        times[1]
    );
    let shown = home.show(&run);
    assert_eq!(shown["state"], "paused", "{shown}");
    assert_eq!(flaky(&shown)["state"], "failed");
    assert_eq!(flaky(&shown)["attempts"], 3);

    // Resume continues with a fresh budget: attempts 4 and 5, and 5 succeeds.
    let out = home.run(&["workflow", "resume", &run]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(lines_of(&dir.join("count")), vec!["5"]);
    assert_eq!(home.show(&run)["state"], "completed");
}

#[test]
fn a_permanent_error_fails_the_run_without_retrying() {
    let home = Home::new();
    let out = home.start_plan(&json!({"steps": [
        {"key": "missing", "run": ["/nonexistent/program", "--flag"]}
    ]}));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let run = home.only_run();
    let shown = home.show(&run);
    assert_eq!(shown["state"], "failed");
    let step = &shown["step_list"][0];
    assert_eq!(step["attempts"], 1, "{step}");
    assert!(
        step["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot run `/nonexistent/program`")),
        "{step}"
    );
}
