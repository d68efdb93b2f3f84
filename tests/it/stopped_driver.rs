//! A driving process that is stopped (SIGSTOP) still holds its run's journal and socket but
//! answers nothing: `list`, `status` and `cancel` from another terminal answer within a
//! bound, saying the driver did not answer, instead of hanging. `cancel` asks once, within
//! the same bound, and leaves its request on the socket: the driver cancels when it wakes.

use std::time::{Duration, Instant};

use foundry_tests::{Home, kill, output_within, signal};
use serde_json::json;

/// The client's own bound (2 s for the one question each command asks), with room for
/// starting the process on a busy machine.
const BOUND: Duration = Duration::from_secs(4);

#[test]
fn a_stopped_driver_does_not_hang_list_status_or_cancel() {
    let home = Home::new();
    let mut driver = home.spawn_plan(&json!({"steps": [
        {"key": "long", "run": ["sleep", "60"]},
    ]}));
    let run = home.wait_for_run("the run driven at its long step", |shown| {
        !shown["driver"].is_null() && shown["current_step"] == "long#0"
    });
    signal(driver.id(), "-STOP");

    for args in [
        vec!["workflow", "list", "--all", "--output", "json"],
        vec!["workflow", "status", &run],
        vec!["workflow", "show", &run],
        vec!["workflow", "cancel", &run],
    ] {
        let began = Instant::now();
        let out = output_within(&mut home.cmd(&args), &args.join(" "), BOUND);
        let took = began.elapsed();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("foundry {}: {took:?}", args.join(" "));
        assert!(!out.status.success(), "{args:?} succeeded: {all}");
        assert!(
            all.contains("did not answer") || all.contains("driven by"),
            "{args:?}: {all}"
        );
        if args[1] == "cancel" {
            assert!(
                all.contains("the cancel waits on its socket"),
                "{args:?}: {all}"
            );
        }
    }

    signal(driver.id(), "-CONT");
    // Awake again, it answers, and takes the cancel it was left.
    home.wait_for_run("the run cancelled once its driver woke", |shown| {
        shown["state"] == "cancelled"
    });
    kill(&mut driver);
}
