//! What a plan's commands are given and what they print, on this machine and on a lab host:
//! a secret answer reaches a command on its stdin and never in any process's argv (a
//! sampler inside the step scans every `/proc/*/cmdline` while it runs), a secret answer
//! in an argument is refused before anything runs, and output that is not UTF-8 is shown,
//! lossily, without stopping the command or its step.

use std::path::Path;
use std::process::{Output, Stdio};

use foundry_tests::lab::Lab;
use foundry_tests::{Home, json_lines};
use serde_json::{Value, json};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A step script: reads the secret from stdin, writes it to `$1/got`, then scans every
/// process's command line for it (the pattern in a file, so the scanner's own argv does
/// not hold it) and writes the matches to `$1/seen`, and whether it inherited a
/// `FOUNDRY_INPUT_` variable to `$1/env`.
const READS_STDIN: &str = r#"set -eu
IFS= read -r pw
printf '%s' "$pw" > "$1/got"
printf '%s' "$pw" > "$1/pattern"
grep -lsFf "$1/pattern" /proc/[0-9]*/cmdline > "$1/seen" || true
rm -f "$1/pattern"
grep -c FOUNDRY_INPUT_ /proc/$$/environ > "$1/env" || true
"#;

/// A `run` step that reads the answer `pw` on stdin, working in `dir`.
fn stdin_step(dir: &str) -> Value {
    json!({"key": "use", "run": ["sh", "-c", READS_STDIN, "sh", dir], "stdin": "${input:pw}\n"})
}

fn start(home: &Home, plan: &Value, secret: &str) -> Output {
    let path = home.plan(plan);
    home.cmd(&[
        "workflow",
        "start",
        "local",
        "--input",
        path.to_str().expect("utf8"),
        "--output",
        "json",
    ])
    .env("FOUNDRY_INPUT_PW", secret)
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .expect("running foundry")
}

fn ask() -> Value {
    json!({"key": "pw", "ask": {"prompt": "Password", "secret": true}})
}

/// The lines a run's steps printed, from its JSON events.
fn printed(out: &Output) -> Vec<String> {
    json_lines(&out.stdout)
        .into_iter()
        .filter(|e| e["event"] == "step_output")
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_local_secret_answer_goes_on_stdin_never_in_an_argv() {
    let home = Home::new();
    let secret = format!("pw-{}", rand::random::<u64>());
    let dir = home.scratch();
    let marker = dir.join("ran");

    // In an argument, it is refused before anything runs.
    let argv = json!({"steps": [ask(), {"key": "use", "run": [
        "sh", "-c", "touch \"$1\"", "sh", marker.to_str().expect("utf8"), "${input:pw}"
    ]}]});
    let refused = start(&home, &argv, &secret);
    let err = text(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0), "{refused:?}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("steps[1] (key `use`): ${input:pw} is a secret answer")
            && err.contains("hint: give it on the command's stdin"),
        "{err}"
    );
    assert!(!marker.exists(), "the command ran");
    assert!(!err.contains(&secret) && !text(&refused.stdout).contains(&secret));

    // On stdin, the command gets it, and no process's argv held it while it ran.
    let plan = json!({"steps": [ask(), stdin_step(dir.to_str().expect("utf8"))]});
    let out = start(&home, &plan, &secret);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(read(&dir.join("got")), secret);
    assert_eq!(
        read(&dir.join("seen")),
        "",
        "a process's argv held the secret"
    );
    assert_eq!(
        read(&dir.join("env")).trim(),
        "0",
        "FOUNDRY_INPUT_ inherited"
    );
    assert!(!text(&out.stdout).contains(&secret));
}

#[test]
fn local_output_that_is_not_utf8_is_shown_and_the_step_goes_on() {
    let home = Home::new();
    let plan = json!({"steps": [
        {"key": "bytes", "run": ["sh", "-c", "printf '\\377\\376 ok\\n'; printf 'bad \\377\\n' >&2; echo after"]},
        {"key": "next", "run": ["true"]}
    ]});
    let out = start(&home, &plan, "unused");
    assert!(out.status.success(), "{out:?}");
    let lines = printed(&out);
    assert!(
        lines.iter().any(|l| l == "\u{fffd}\u{fffd} ok"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "bad \u{fffd}"), "{lines:?}");
    assert!(lines.iter().any(|l| l == "after"), "{lines:?}");
}

#[test]
fn lab_host_steps_take_a_secret_on_stdin_and_show_output_that_is_not_utf8() {
    let lab = Lab::up("lio", 1);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8");
    let host = lab.names[0].clone();
    let target = &lab.targets[0];
    let secret = format!("pw-{}", rand::random::<u64>());
    let dir = format!("/tmp/lio-{}", rand::random::<u32>());

    let mut step = stdin_step(&dir);
    step["host"] = json!(host);
    let plan = json!({"config": config, "steps": [
        ask(),
        {"key": "dir", "run": ["mkdir", "-p", dir], "host": host},
        step,
        {"key": "bytes", "run": ["sh", "-c", "printf '\\377\\376 ok\\n'; echo after"], "host": host},
    ]});
    let out = start(home, &plan, &secret);
    assert!(out.status.success(), "{out:?}");
    let file = |name: &str| {
        text(
            &lab.read_file(target, &format!("{dir}/{name}"))
                .unwrap_or_else(|| panic!("{dir}/{name} on the host")),
        )
    };
    assert_eq!(file("got"), secret);
    assert_eq!(
        file("seen"),
        "",
        "a process's argv on the host held the secret"
    );
    let lines = printed(&out);
    assert!(
        lines.iter().any(|l| l == "\u{fffd}\u{fffd} ok"),
        "{lines:?}"
    );
    assert!(lines.iter().any(|l| l == "after"), "{lines:?}");
    assert!(!text(&out.stdout).contains(&secret));

    // In an argument of a host step, refused too, with no `env` suggested.
    let argv = json!({"config": config, "steps": [
        ask(), {"key": "use", "run": ["echo", "${input:pw}"], "host": host}
    ]});
    let refused = start(home, &argv, &secret);
    let err = text(&refused.stderr);
    assert_ne!(refused.status.code(), Some(0), "{refused:?}");
    assert!(err.contains("is a secret answer"), "{err}");
    assert!(!err.contains("or in `env`"), "{err}");
}
