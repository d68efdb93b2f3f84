//! `foundry completions SHELL`: the script is loaded by a real bash and completes Foundry's
//! commands and their verbs; the other shells get a script of their own; an unknown shell
//! is a usage error; a reader that stops early (`| head`) is no failure.

use std::process::{Command, Stdio};

use foundry_tests::Home;

/// What bash completes for `words` (the last one being typed) with the script loaded.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let out = Command::new("bash")
        .args([
            "--norc",
            "-c",
            r#"source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1));
               _foundry foundry "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}";
               printf '%s\n' "${COMPREPLY[@]}""#,
            "bash",
        ])
        .arg(script)
        .args(words)
        .output()
        .expect("bash");
    assert!(out.status.success(), "{line}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn completions_load_in_bash_and_complete_commands_and_verbs() {
    let home = Home::new();
    let out = home.cmd(&["completions", "bash"]).output().expect("run");
    assert!(out.status.success(), "{out:?}");
    let script = home.scratch().join("foundry.bash");
    std::fs::write(&script, &out.stdout).expect("write");

    let registered = Command::new("bash")
        .args([
            "--norc",
            "-c",
            r#"source "$1" && complete -p foundry"#,
            "bash",
        ])
        .arg(&script)
        .output()
        .expect("bash");
    assert!(
        String::from_utf8_lossy(&registered.stdout).contains("_foundry"),
        "{registered:?}"
    );
    assert_eq!(bash_completes(&script, &["foundry", "wor"]), ["workflow"]);
    let verbs = bash_completes(&script, &["foundry", "workflow", ""]);
    for verb in ["start", "status", "resume", "cancel", "gc"] {
        assert!(verbs.iter().any(|v| v == verb), "{verb} in {verbs:?}");
    }
    let host = bash_completes(&script, &["foundry", "host", "configure", "--ad"]);
    assert_eq!(host, ["--adopt"]);

    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = home.cmd(&["completions", shell]).output().expect("run");
        assert!(out.status.success(), "{shell}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("workflow") && text.contains("configure"),
            "{shell}"
        );
    }

    let unknown = home.cmd(&["completions", "tcsh"]).output().expect("run");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("possible values"));

    // A reader that closes its end at once: no panic, no error.
    let mut child = home
        .cmd(&["completions", "zsh"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let done = child.wait_with_output().expect("wait");
    assert!(done.status.success(), "{done:?}");
    assert!(!String::from_utf8_lossy(&done.stderr).contains("panicked"));
}
