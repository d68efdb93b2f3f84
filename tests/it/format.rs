//! A journal written by an earlier build (format 1, committed as a fixture) opens, shows
//! and resumes. A journal of an unknown format is refused by the core's own test.

use std::path::Path;

use foundry_tests::Home;

const FIXTURE_RUN: &str = "01a207d4-16a3-71d0-9e52-4c105039bdac";

fn install_fixture(home: &Home) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/journal-format-1")
        .join(format!("{FIXTURE_RUN}.journal"));
    std::fs::create_dir_all(home.runs_dir()).expect("runs dir");
    std::fs::copy(&src, home.runs_dir().join(format!("{FIXTURE_RUN}.journal")))
        .expect("copy fixture");
}

#[test]
fn a_format_1_journal_opens_and_resumes() {
    let home = Home::new();
    install_fixture(&home);
    let shown = home.show(&FIXTURE_RUN[..8]);
    assert_eq!(shown["state"], "paused", "{shown}");
    assert_eq!(shown["foundry_version"], "0.1.0");
    let steps = shown["step_list"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{shown}");
    assert_eq!(steps[0]["key"], "first#0");
    assert_eq!(steps[0]["state"], "done");
    assert_eq!(steps[1]["key"], "gated#0");
    assert_eq!(steps[1]["state"], "failed");

    let out = home
        .cmd(&["workflow", "resume", FIXTURE_RUN, "--output", "json"])
        .env("FOUNDRY_FIXTURE_GATE", "open")
        .output()
        .expect("resume");
    assert!(out.status.success(), "{out:?}");
    // The fixture's steps run `true`, whose effect cannot be seen: the resumed run's own
    // events say which steps started.
    let started: Vec<String> = foundry_tests::json_lines(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "step_started")
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        started,
        vec!["gated#0", "after#0"],
        "the memoized step did not run again"
    );
    let done = home.show(FIXTURE_RUN);
    assert_eq!(done["state"], "completed");
    assert_eq!(done["steps"]["total"], 3, "{done}");
}
