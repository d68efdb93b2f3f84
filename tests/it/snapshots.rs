//! Snapshots of what people and scripts read: `workflow list` and `show`, human and JSON,
//! and the help of a command. Ids, times and durations are masked.

use foundry_tests::Home;
use serde_json::{Value, json};

/// Two runs: one completed, one paused on its third step.
fn home_with_runs() -> Home {
    let home = Home::new();
    let done = home.start_plan(&json!({"steps": [{"key": "hello", "run": ["true"]}]}));
    assert!(done.status.success(), "{done:?}");
    let out = home.start_plan(&json!({"steps": [
        {"key": "fetch", "run": ["true"]},
        {"key": "configure", "run": ["true"]},
        {"key": "migrate", "run": ["sh", "-c", "echo 'schema locked' >&2; exit 2"], "retry": {"max_attempts": 1}},
        {"key": "never", "run": ["true"]},
    ]}));
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    home
}

fn mask(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match key.as_str() {
                    "run" if v.is_string() => *v = json!("[run]"),
                    "created_at" | "updated_at" => *v = json!("[time]"),
                    "duration_ms" => *v = json!("[duration]"),
                    _ => mask(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(mask),
        _ => {}
    }
}

fn masked_json(home: &Home, args: &[&str]) -> Vec<Value> {
    let mut lines = home.json(args);
    lines.iter_mut().for_each(mask);
    lines
}

macro_rules! human_snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({filters => vec![
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[run]"),
            (r"\b[0-9a-f]{8,31}\b", "[id]"),
            (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[time]"),
            (r"just now|\d+[smhd] ago", "[ago]"),
            (r"\b\d+(\.\d+)?m?s\b", "[duration]"),
            (r" {2,}", "  "),
        ]}, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

#[test]
fn workflow_list_and_show() {
    let home = home_with_runs();
    let paused = home
        .runs()
        .into_iter()
        .find(|r| r["state"] == "paused")
        .and_then(|r| r["run"].as_str().map(str::to_string))
        .expect("paused run");

    insta::assert_json_snapshot!(
        "list_all_json",
        masked_json(&home, &["workflow", "list", "--all"])
    );
    insta::assert_json_snapshot!(
        "show_json",
        masked_json(&home, &["workflow", "show", &paused])
    );
    human_snapshot!("list_all_human", home.ok(&["workflow", "list", "--all"]));
    human_snapshot!("list_human", home.ok(&["workflow", "list"]));
    human_snapshot!("show_human", home.ok(&["workflow", "show", &paused]));
}

#[test]
fn help_texts() {
    let home = Home::new();
    human_snapshot!("help_workflow", home.ok(&["workflow", "--help"]));
    human_snapshot!(
        "help_workflow_show",
        home.ok(&["workflow", "show", "--help"])
    );
    human_snapshot!("help_host", home.ok(&["host", "--help"]));
    for verb in ["add", "configure", "list", "ssh"] {
        human_snapshot!(
            format!("help_host_{verb}"),
            home.ok(&["host", verb, "--help"])
        );
    }
    human_snapshot!("help_component", home.ok(&["component", "--help"]));
    for verb in ["list", "install", "status", "upgrade"] {
        human_snapshot!(
            format!("help_component_{verb}"),
            home.ok(&["component", verb, "--help"])
        );
    }
    human_snapshot!("help_cluster", home.ok(&["cluster", "--help"]));
    for verb in ["init", "status"] {
        human_snapshot!(
            format!("help_cluster_{verb}"),
            home.ok(&["cluster", verb, "--help"])
        );
    }
    for verb in ["add", "list", "remove"] {
        human_snapshot!(
            format!("help_cluster_node_{verb}"),
            home.ok(&["cluster", "node", verb, "--help"])
        );
    }
    human_snapshot!("help_stack", home.ok(&["stack", "--help"]));
    human_snapshot!("help_setup", home.ok(&["setup", "--help"]));
    for verb in ["install", "status", "validate", "plan", "upgrade"] {
        human_snapshot!(
            format!("help_stack_{verb}"),
            home.ok(&["stack", verb, "--help"])
        );
    }
    human_snapshot!("help_secret", home.ok(&["secret", "--help"]));
    for verb in ["get", "set", "list"] {
        human_snapshot!(
            format!("help_secret_{verb}"),
            home.ok(&["secret", verb, "--help"])
        );
    }
    human_snapshot!("help_dns", home.ok(&["dns", "--help"]));
    human_snapshot!("help_dns_test", home.ok(&["dns", "test", "--help"]));
    for noun in ["zone", "record"] {
        human_snapshot!(
            format!("help_dns_{noun}"),
            home.ok(&["dns", noun, "--help"])
        );
    }
    for (noun, verb) in [
        ("zone", "list"),
        ("zone", "create"),
        ("zone", "delete"),
        ("record", "add"),
        ("record", "list"),
        ("record", "delete"),
    ] {
        human_snapshot!(
            format!("help_dns_{noun}_{verb}"),
            home.ok(&["dns", noun, verb, "--help"])
        );
    }
    human_snapshot!("help_network", home.ok(&["network", "--help"]));
    for verb in ["plan", "detect-macs", "validate"] {
        human_snapshot!(
            format!("help_network_{}", verb.replace('-', "_")),
            home.ok(&["network", verb, "--help"])
        );
    }
    human_snapshot!("help_journal", home.ok(&["journal", "--help"]));
    human_snapshot!(
        "help_journal_migrate",
        home.ok(&["journal", "migrate", "--help"])
    );
    human_snapshot!(
        "help_registry_push_k3s",
        home.ok(&["registry", "push-k3s", "--help"])
    );
    human_snapshot!("help_config", home.ok(&["config", "--help"]));
    for verb in ["init", "validate", "show", "list"] {
        human_snapshot!(
            format!("help_config_{verb}"),
            home.ok(&["config", verb, "--help"])
        );
    }
}
