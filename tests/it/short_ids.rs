//! Short run ids in human output are unique prefixes, as git's are: two runs started in
//! the same minute (a UUID v7 starts with its creation time) get two different names,
//! and each name resolves to its run.

use foundry_tests::Home;
use serde_json::json;

#[test]
fn runs_started_together_get_different_short_ids_that_resolve() {
    runs_started_together_get_different_short_ids_that_resolve_in(Home::new());
}

/// The body of [`runs_started_together_get_different_short_ids_that_resolve`], on `home`'s journal.
pub fn runs_started_together_get_different_short_ids_that_resolve_in(home: Home) {
    let plan = json!({"steps": [{"key": "fails", "run": ["false"], "retry": {"max_attempts": 1}}]});
    for _ in 0..2 {
        let out = home.start_plan(&plan);
        assert!(!out.status.success(), "{out:?}");
    }
    let runs = home.runs();
    let full: Vec<String> = runs
        .iter()
        .filter_map(|r| r["run"].as_str().map(|s| s.replace('-', "")))
        .collect();
    assert_eq!(full.len(), 2, "{runs:?}");

    let listed = home.ok(&["workflow", "list"]);
    let shorts: Vec<&str> = listed
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(shorts.len(), 2, "{listed}");
    assert_ne!(shorts[0], shorts[1], "{listed}");
    for (short, id) in shorts.iter().zip(&full) {
        assert!(short.len() >= 8 && id.starts_with(short), "{short} of {id}");
        // A run made in the same minute shares the first eight digits: more are shown.
        if full[0][..8] == full[1][..8] {
            assert!(short.len() > 8, "{listed}");
        }
        let shown = home.show(short);
        assert_eq!(
            shown["run"].as_str().map(|s| s.replace('-', "")).as_deref(),
            Some(id.as_str())
        );
        let status = home.ok(&["workflow", "status", short]);
        assert!(status.contains(&uuid(id)), "{status}");
    }
}

/// 32 hex digits as a hyphenated UUID.
fn uuid(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
