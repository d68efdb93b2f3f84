//! Bad input gets a clear message naming what and where, a non-zero exit, no panic, and
//! loses nothing: other runs stay listed and resumable.

use std::process::Output;

use foundry_tests::Home;
use serde_json::json;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_clean_failure(out: &Output, code: i32, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

/// A home with one paused run (resumable) whose step succeeds once `gate` exists.
fn home_with_paused_run() -> (Home, String, std::path::PathBuf) {
    let home = Home::new();
    let gate = home.scratch().join("gate");
    let out = home.start_plan(&json!({"steps": [
        {"key": "gated", "run": ["test", "-f", gate.display().to_string()], "retry": {"max_attempts": 1}}
    ]}));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let run = home.only_run();
    (home, run, gate)
}

#[test]
fn corrupt_and_truncated_journals_are_reported_and_others_survive() {
    let (home, good, gate) = home_with_paused_run();
    let runs = home.runs_dir();
    let good_file = runs.join(format!("{good}.journal"));
    let bytes = std::fs::read(&good_file).expect("journal bytes");
    let damaged = [
        (
            "01000000-0000-7000-8000-000000000001",
            bytes[..bytes.len() / 2].to_vec(),
        ),
        ("01000000-0000-7000-8000-000000000002", vec![0x5a; 8192]),
        ("01000000-0000-7000-8000-000000000003", Vec::new()),
        ("01000000-0000-7000-8000-000000000004", {
            let mut b = bytes.clone();
            for byte in b.iter_mut().skip(4096).step_by(7) {
                *byte ^= 0xff;
            }
            b
        }),
    ];
    for (id, content) in &damaged {
        std::fs::write(runs.join(format!("{id}.journal")), content).expect("write damaged");
    }
    // A sound journal whose write-ahead log is damaged.
    let bad_log = "01000000-0000-7000-8000-000000000005";
    std::fs::write(runs.join(format!("{bad_log}.journal")), &bytes).expect("copy");
    std::fs::write(runs.join(format!("{bad_log}.wal")), b"not a log at all").expect("log");
    let out = home.run(&["workflow", "show", bad_log]);
    assert_clean_failure(&out, 1, &[&format!("{bad_log}.wal"), "write-ahead log"]);
    std::fs::remove_file(runs.join(format!("{bad_log}.journal"))).expect("remove");

    let list = home.run(&["workflow", "list", "--all", "--output", "json"]);
    assert_clean_failure(&list, 1, &[]);
    let rows = foundry_tests::json_lines(&list.stdout);
    assert_eq!(rows.len(), 5, "every run is listed: {rows:?}");
    assert!(
        rows.iter()
            .any(|r| r["run"] == good.as_str() && r["state"] == "paused"),
        "{rows:?}"
    );
    for (id, _) in &damaged {
        let row = rows
            .iter()
            .find(|r| r["run"] == *id)
            .expect("damaged run listed");
        let error = row["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(&format!("{id}.journal")),
            "error names the file: {row}"
        );
    }

    for (id, _) in &damaged {
        let out = home.run(&["workflow", "show", id]);
        assert_clean_failure(&out, 1, &[&format!("{id}.journal"), "hint:"]);
        let out = home.run(&["workflow", "resume", id]);
        assert_clean_failure(&out, 1, &[&format!("{id}.journal")]);
        // Nothing was lost or rewritten by trying.
        let (_, content) = damaged.iter().find(|(d, _)| d == id).expect("known");
        assert_eq!(
            &std::fs::read(runs.join(format!("{id}.journal"))).expect("still there"),
            content
        );
    }

    std::fs::write(&gate, b"").expect("gate");
    home.ok(&["workflow", "resume", &good]);
    assert_eq!(home.show(&good)["state"], "completed");
}

#[test]
fn an_unusable_home_is_named() {
    let home = Home::new();
    let file = home.scratch().join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let plan = json!({"steps": [{"key": "a", "run": ["true"]}]});
    for bad in [file.clone(), file.join("sub"), "/proc/foundry-home".into()] {
        let out = home
            .start_cmd(&plan)
            .env("FOUNDRY_HOME", &bad)
            .output()
            .expect("run");
        assert_clean_failure(
            &out,
            1,
            &[&bad.display().to_string(), "hint: set FOUNDRY_HOME"],
        );
    }
}

#[test]
fn unknown_and_ambiguous_run_ids() {
    let home = Home::new();
    for _ in 0..2 {
        let out = home.start_plan(&json!({"steps": [{"key": "a", "run": ["true"]}]}));
        assert!(out.status.success(), "{out:?}");
    }
    let out = home.run(&["workflow", "show", "ffffffff"]);
    assert_clean_failure(&out, 1, &["no run matches `ffffffff`", "hint:"]);
    let out = home.run(&["workflow", "resume", "0"]);
    assert_clean_failure(&out, 1, &["ambiguous", "give more characters"]);
    let out = home.run(&["workflow", "status", ""]);
    assert_clean_failure(&out, 1, &["no run matches"]);
}

#[test]
fn malformed_plans_are_refused_before_any_run_exists() {
    let home = Home::new();
    let dir = home.scratch();
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "unknown-field.yaml",
            b"steps:\n  - key: a\n    runn: [true]\n".to_vec(),
            vec!["steps[0]", "unknown field `runn`"],
        ),
        (
            "syntax.yaml",
            b"steps:\n  - key: a\n    run: [true\n".to_vec(),
            vec!["syntax.yaml", "line 3"],
        ),
        (
            "empty.yaml",
            Vec::new(),
            vec!["empty.yaml", "the input is empty"],
        ),
        (
            "binary.yaml",
            vec![0xff, 0xfe, 0x00, 0x01],
            vec!["binary.yaml", "not UTF-8"],
        ),
        (
            "two-actions.yaml",
            b"steps:\n  - key: a\n    run: [\"true\"]\n    ask: {prompt: p}\n".to_vec(),
            vec!["steps[0] (key `a`)", "exactly one of"],
        ),
        (
            "wrong-type.yaml",
            b"steps:\n  - key: a\n    run: 42\n".to_vec(),
            vec!["steps[0].run"],
        ),
    ];
    for (name, content, needles) in cases {
        let path = dir.join(name);
        std::fs::write(&path, content).expect("write");
        let out = home.run(&[
            "workflow",
            "start",
            "local",
            "--input",
            path.to_str().expect("utf8"),
        ]);
        assert_clean_failure(&out, 1, &needles);
    }
    let out = home.run(&[
        "workflow",
        "start",
        "local",
        "--input",
        "/nonexistent/plan.yaml",
    ]);
    assert_clean_failure(&out, 1, &["/nonexistent/plan.yaml"]);
    let out = home.run(&["workflow", "start", "no-such-workflow"]);
    assert_clean_failure(&out, 1, &["unknown workflow `no-such-workflow`", "local"]);
    let out = home.run(&["workflow", "frobnicate"]);
    assert_clean_failure(&out, 2, &["frobnicate"]);
    assert!(home.runs().is_empty(), "no run was created");
}

/// A public key in the config's `host_key` form, for configs that must get past it.
const HOST_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIF2LdNXOVcKWS65qPFT08M5wqMymzpR7MqwN+g4n8eF+";

#[test]
fn an_address_that_is_an_ssh_option_is_refused_and_runs_nothing() {
    let home = Home::new();
    let dir = home.scratch();
    let witness = dir.join("proxy-command-ran");
    let key = dir.join("key");
    std::fs::write(&key, b"not read: the config is refused first").expect("key");
    let config = dir.join("stack.yaml");
    std::fs::write(
        &config,
        format!(
            "hosts:\n  - name: web-1\n    address: '-oProxyCommand=touch${{IFS}}{}'\n    key: {}\n    host_key: {HOST_KEY}\n",
            witness.display(),
            key.display()
        ),
    )
    .expect("config");
    let config = config.to_str().expect("utf8");
    let out = home.run(&["--config", config, "config", "validate"]);
    assert_clean_failure(
        &out,
        1,
        &[
            "line 3 column 14",
            "address `-oProxyCommand=touch",
            "an IP address or a DNS name",
        ],
    );
    // With a command after the host, an address taken as an option leaves `true` as the
    // destination, reached through the proxy command: `touch` ran before this was refused.
    for command in [
        &["host", "ssh", "web-1"][..],
        &["host", "ssh", "web-1", "--", "true"],
    ] {
        let mut args = vec!["--config", config];
        args.extend_from_slice(command);
        let out = home.run(&args);
        assert_clean_failure(&out, 1, &["line 3 column 14"]);
    }
    assert!(!witness.exists(), "nothing ran locally");
}

#[test]
fn a_host_key_that_is_no_key_is_refused_at_load() {
    let home = Home::new();
    let config = home.scratch().join("stack.yaml");
    std::fs::write(
        &config,
        "hosts:\n  - name: web-1\n    address: web-1.lab.example\n    host_key: ssh-ed25519 not-base64\n",
    )
    .expect("config");
    let out = home.run(&[
        "--config",
        config.to_str().expect("utf8"),
        "config",
        "validate",
    ]);
    assert_clean_failure(&out, 1, &["line 4 column 15", "not an SSH public key"]);
}

#[test]
fn local_commands_inherit_no_secrets_and_cannot_drive_the_terminal() {
    let home = Home::new();
    let plan = json!({"steps": [
        {"key": "env", "run": ["env"]},
        {"key": "escapes", "run": ["printf", "\\033]0;pwned\\007\\033[2Jvisible \\033[31mred\\033[0m\\n"]}
    ]});
    let out = home
        .start_cmd(&plan)
        .env("FOUNDRY_SECRET_demo_token", "secret-value-1")
        .env("FOUNDRY_INPUT_DEMO", "input-value-2")
        .env("FOUNDRY_TEST_WITNESS", "inherited")
        .output()
        .expect("foundry");
    assert!(out.status.success(), "{out:?}");
    let all = [out.stdout.as_slice(), out.stderr.as_slice()].concat();
    let text = String::from_utf8_lossy(&all);
    // The environment was printed: an ordinary variable is there.
    assert!(text.contains("FOUNDRY_TEST_WITNESS=inherited"), "{text}");
    for private in [
        "FOUNDRY_SECRET_",
        "FOUNDRY_INPUT_",
        "secret-value-1",
        "input-value-2",
    ] {
        assert!(!text.contains(private), "{private} reached a child: {text}");
    }
    assert!(text.contains("visible red"), "{text}");
    for sequence in ["\x1b]0;pwned", "\x07", "\x1b[2J", "\x1b[31m"] {
        assert!(!text.contains(sequence), "{sequence:?} printed: {text:?}");
    }
}

#[test]
fn a_journal_url_that_cannot_be_used_stops_the_command_and_keeps_the_home_as_it_was() {
    let (home, run, _gate) = home_with_paused_run();
    for (url, said) in [
        ("mysql://u@127.0.0.1/db", "not a postgres:// URL"),
        // A closed loopback port: no server there.
        ("postgres://u@127.0.0.1:1/db", "cannot reach PostgreSQL"),
    ] {
        for args in [&["workflow", "list"][..], &["workflow", "resume", &run][..]] {
            let out = home
                .cmd(args)
                .env("FOUNDRY_JOURNAL", url)
                .output()
                .expect("foundry");
            assert_clean_failure(&out, 1, &[said, "hint:"]);
        }
    }
    // Without it, the run in the home is there as it was, still paused.
    assert_eq!(home.only_run(), run);
    let out = home.run(&["workflow", "status", &run]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("paused"),
        "{out:?}"
    );
}
