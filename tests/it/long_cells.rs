//! A step key of 70,000 characters: `list` and `show` print their tables with the cell cut
//! (never a panic, never a 70,000-column line), and JSON output keeps the whole key.

use foundry_tests::Home;
use serde_json::json;

#[test]
fn a_huge_step_key_is_cut_in_tables_and_whole_in_json() {
    let home = Home::new();
    let key = "k".repeat(70_000);
    let out = home.start_plan(&json!({"steps": [
        {"key": key, "run": ["false"], "retry": {"max_attempts": 1}},
    ]}));
    assert_eq!(out.status.code().map(|c| c != 101), Some(true), "{out:?}");
    let run = home.runs()[0]["run"].as_str().expect("run").to_string();

    for args in [
        vec!["workflow", "list", "--all"],
        vec!["workflow", "show", &run],
        vec!["workflow", "status", &run],
    ] {
        let out = home.ok_output(&args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        let widest = stdout.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(widest <= 420, "{args:?}: a line of {widest} characters");
    }
    let shown = home.show(&run);
    assert_eq!(shown["step_list"][0]["key"], json!(format!("{key}#0")));
    let table = home.ok(&["workflow", "show", &run]);
    assert!(table.contains('…'), "{table}");
}
