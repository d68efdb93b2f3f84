//! No secret leaks: a run that takes a secret answer and uses it in a file, a command's
//! output and a command's error. The value appears in no journal byte, log line or JSON
//! output, before or after a crash; only the 0600 secret store holds it, until the run ends.

use std::process::Stdio;

use foundry_tests::leak::contains;
use foundry_tests::{Home, killed};
use serde_json::json;

#[test]
fn a_secret_answer_never_leaks() {
    let home = Home::new();
    let dir = home.scratch();
    let secret = format!("s3cr3t-{}", rand::random::<u64>());
    let conf = dir.join("db.conf");
    let flag = dir.join("failed-once").display().to_string();
    let plan = home.plan(&json!({"steps": [
        {"key": "db-password", "ask": {"prompt": "Database password", "secret": true}},
        {"key": "conf", "file": {"path": conf.display().to_string(), "content": "password=${input:db-password}\n", "mode": 0o600}},
        {"key": "echo", "run": ["sh", "-c", "read -r pw; echo \"out $pw\"; echo \"err $pw\" >&2"], "stdin": "${input:db-password}\n"},
        {"key": "flaky", "run": ["sh", "-c", format!("read -r pw; [ -f '{flag}' ] || {{ touch '{flag}'; echo \"bad $pw\" >&2; exit 1; }}")], "stdin": "${input:db-password}\n",
         "retry": {"initial_ms": 50, "jitter": 0.0, "max_attempts": 3}},
        {"key": "last", "run": ["true"]},
    ]}));
    let plan = plan.to_str().expect("utf8");

    let first = home
        .cmd(&[
            "workflow", "start", "local", "--input", plan, "--output", "json", "-vvv",
        ])
        .env("FOUNDRY_INPUT_DB_PASSWORD", &secret)
        .env("FOUNDRY_FAILPOINTS", "last#0@started")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("start");
    assert!(killed(first.status), "{first:?}");
    assert!(
        !first.stdout.is_empty() && !first.stderr.is_empty(),
        "events and logs were written"
    );
    assert!(
        !contains(&first.stdout, &secret),
        "JSON events leak the secret"
    );
    assert!(!contains(&first.stderr, &secret), "logs leak the secret");
    let journal = home.runs_bytes();
    assert!(!journal.is_empty());
    assert!(!contains(&journal, &secret), "the journal holds the secret");
    let events = String::from_utf8_lossy(&first.stdout);
    assert!(
        events.contains("<redacted>"),
        "the command output is shown, redacted: {events}"
    );

    let run = home.only_run();
    let shown = home.run(&["workflow", "show", &run, "--output", "json"]);
    assert!(!contains(&shown.stdout, &secret));
    assert!(
        contains(&journal, "\"secret\":\"local:"),
        "the answer is journaled by reference"
    );

    let resumed = home
        .cmd(&["workflow", "resume", &run, "--output", "json", "-vvv"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("resume");
    assert!(resumed.status.success(), "{resumed:?}");
    assert!(!contains(&resumed.stdout, &secret));
    let logs = String::from_utf8_lossy(&resumed.stderr);
    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(&secret)).collect();
    assert!(leaks.is_empty(), "logs leak the secret: {leaks:?}");
    assert!(!contains(&home.runs_bytes(), &secret));

    // The effect is real, and the finished run's secret answer is gone from the store.
    assert_eq!(
        std::fs::read_to_string(&conf).expect("conf"),
        format!("password={secret}\n")
    );
    let left: Vec<_> = std::fs::read_dir(home.path().join("secrets"))
        .expect("secrets")
        .collect();
    assert!(left.is_empty(), "secret answers left behind: {left:?}");
}
