//! A run's kept secrets live as long as the run: its directory in the home's secret store
//! is removed when it ends (completed or cancelled), and `workflow gc` removes what a
//! process killed at the end of its run left behind, never what a resumable run needs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use foundry_core::RunId;
use foundry_tests::leak::{contains, files_under};
use foundry_tests::{Home, killed};
use serde_json::{Value, json};

/// Starts a run that keeps `secret` (a secret answer) and is killed before its last step.
fn killed_run(home: &Home, secret: &str) -> String {
    killed_before_last(home, secret, json!({"key": "last", "run": ["true"]}))
}

/// Starts a run that keeps `secret` (a secret answer) and is killed before `last`, a step
/// keyed `last`: the run.
pub(crate) fn killed_before_last(home: &Home, secret: &str, last: Value) -> String {
    let before: Vec<Value> = home.runs();
    let plan = home.plan(&json!({"steps": [
        {"key": "token", "ask": {"prompt": "Token", "secret": true}},
        {"key": "echo", "run": ["sh", "-c", "cat >/dev/null"], "stdin": "${input:token}\n"},
        last,
    ]}));
    let out = home
        .cmd(&[
            "workflow",
            "start",
            "local",
            "--input",
            plan.to_str().expect("utf8"),
        ])
        .env("FOUNDRY_INPUT_TOKEN", secret)
        .env("FOUNDRY_FAILPOINTS", "last#0@started")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("start");
    assert!(killed(out), "not killed: {out:?}");
    home.runs()
        .into_iter()
        .filter_map(|r| r["run"].as_str().map(str::to_string))
        .find(|id| !before.iter().any(|b| b["run"] == id.as_str()))
        .expect("the killed run")
}

fn secrets_dir(home: &Home) -> PathBuf {
    home.path().join("secrets")
}

/// The files of the secret store that hold `secret`.
fn holding(home: &Home, secret: &str) -> Vec<PathBuf> {
    files_under(&secrets_dir(home), &[])
        .into_iter()
        .filter(|(_, bytes)| contains(bytes, secret))
        .map(|(path, _)| path)
        .collect()
}

/// Makes `path` look a few minutes old, past the minute a starting run is given.
fn age(path: &Path) {
    let old = SystemTime::now() - Duration::from_secs(300);
    std::fs::File::open(path)
        .and_then(|f| f.set_modified(old))
        .expect("setting the mtime");
}

#[test]
fn a_run_that_ends_leaves_no_kept_secret() {
    let home = Home::new();
    let secret = format!("kept-{}", rand::random::<u64>());
    let run = killed_run(&home, &secret);
    let kept = holding(&home, &secret);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(
        kept[0].parent(),
        Some(secrets_dir(&home).join(&run).as_path()),
        "the interrupted run keeps its answer in its own directory"
    );

    // Cancelled: nobody drives it, so the cancel drives it to its end here.
    let cancel = home.run(&["workflow", "cancel", &run]);
    assert!(
        home.show(&run)["state"] == "cancelled",
        "{cancel:?} {}",
        home.show(&run)
    );
    assert_eq!(holding(&home, &secret), Vec::<PathBuf>::new());
    assert!(!secrets_dir(&home).join(&run).exists());

    // Completed, after a resume.
    let again = format!("kept-{}", rand::random::<u64>());
    let run = killed_run(&home, &again);
    assert_eq!(holding(&home, &again).len(), 1);
    home.ok(&["workflow", "resume", &run]);
    assert_eq!(home.show(&run)["state"], "completed");
    assert_eq!(holding(&home, &again), Vec::<PathBuf>::new());
    assert!(!secrets_dir(&home).join(&run).exists());
}

#[test]
fn gc_removes_orphaned_secrets_and_keeps_a_resumable_runs() {
    let home = Home::new();
    let secret = format!("live-{}", rand::random::<u64>());
    let live = killed_run(&home, &secret);

    // A run whose journal is gone left its secrets; an older store kept them flat.
    let orphan = secrets_dir(&home).join(RunId::new().to_string());
    std::fs::create_dir(&orphan).expect("orphan dir");
    std::fs::write(
        orphan.join("00000000-0000-4000-8000-000000000001"),
        "orphaned",
    )
    .expect("w");
    age(&orphan);
    let flat = secrets_dir(&home).join("00000000-0000-4000-8000-000000000002");
    std::fs::write(&flat, "flat").expect("flat");
    // A directory just made (a run starting now) is left alone.
    let young = secrets_dir(&home).join(RunId::new().to_string());
    std::fs::create_dir(&young).expect("young dir");

    let planned = home.json(&["workflow", "gc", "--dry-run"]);
    assert_eq!(
        planned,
        vec![json!({"removed_secrets": orphan.display().to_string(), "dry_run": true})]
    );
    assert!(orphan.exists(), "a dry run removed something");

    let removed = home.json(&["workflow", "gc"]);
    assert_eq!(
        removed,
        vec![json!({"removed_secrets": orphan.display().to_string(), "dry_run": false})]
    );
    assert!(!orphan.exists());
    assert!(young.exists());
    assert!(
        flat.exists(),
        "a resumable run may need a secret of the older layout"
    );
    assert_eq!(holding(&home, &secret).len(), 1, "the live run's secret");
    let human = home.ok(&["workflow", "gc"]);
    assert!(human.contains("removed 0 kept secret(s)"), "{human}");

    // Once the live run ends, nothing it kept is left, and the flat file goes too.
    home.ok(&["workflow", "resume", &live]);
    assert_eq!(holding(&home, &secret), Vec::<PathBuf>::new());
    let removed = home.json(&["workflow", "gc"]);
    assert_eq!(
        removed,
        vec![json!({"removed_secrets": flat.display().to_string(), "dry_run": false})]
    );
    assert!(young.exists());
}
