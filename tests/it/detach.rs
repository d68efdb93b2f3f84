//! Long commands run detached on lab hosts: a host cut off the network mid-command, and a
//! `foundry` killed mid-command, both end with the command run exactly once and its true
//! exit code reported. Each command counts its runs in a file on its host.

use std::process::Stdio;
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::{json_lines, kill, wait_for, wait_for_while_running};
use serde_json::{Value, json};

/// A command that counts its runs in `counter`, then lives `secs` seconds and exits `code`.
fn counted(counter: &str, secs: u32, code: u8) -> Value {
    json!([
        "sh",
        "-c",
        "n=$(cat \"$1\" 2>/dev/null || echo 0); echo $((n + 1)) > \"$1\"; echo begun; sleep \"$2\"; echo finished; echo \"exiting $3\" >&2; exit \"$3\"",
        "sh",
        counter,
        secs.to_string(),
        code.to_string(),
    ])
}

fn plan(lab: &Lab, host: &str, run: Value, max_attempts: u32) -> Value {
    json!({
        "config": lab.config,
        "steps": [{
            "key": "long",
            "host": host,
            "detach": true,
            "run": run,
            "retry": {"initial_ms": 200, "factor": 2.0, "max_delay_ms": 1000,
                      "max_attempts": max_attempts, "max_elapsed_ms": null, "jitter": 0.0},
        }],
    })
}

/// The count in `path` on the lab's host `i`, 0 when absent.
fn count(lab: &Lab, i: usize, path: &str) -> u32 {
    lab.read_file(&lab.targets[i], path)
        .and_then(|b| String::from_utf8_lossy(&b).trim().parse().ok())
        .unwrap_or(0)
}

/// The output lines the run streamed as events (`--output json`).
fn output_lines(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["event"] == "step_output")
        .filter_map(|e| e["line"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_host_cut_off_mid_command_for_5_30_and_120_seconds_ends_with_one_run() {
    let lab = Lab::up("cut", 3);
    let cuts = [5u64, 30, 120];
    let runs: Vec<_> = cuts
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let plan = plan(&lab, &lab.names[i], counted("/tmp/counter", 60, 0), 1);
            let mut cmd = lab.home.start_cmd(&plan);
            cmd.args(["--output", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            cmd.spawn().expect("foundry")
        })
        .collect();
    let started = Instant::now();
    let ended: Vec<_> = std::thread::scope(|scope| {
        let cases: Vec<_> = runs
            .into_iter()
            .zip(cuts)
            .enumerate()
            .map(|(i, (child, cut))| {
                let lab = &lab;
                scope.spawn(move || {
                    let mut child = child;
                    // Generous: the suite runs many labs at once on few cores.
                    wait_for_while_running(
                        &mut child,
                        "the command to start",
                        Duration::from_secs(120),
                        || count(lab, i, "/tmp/counter") == 1,
                    );
                    lab.cut(&lab.names[i]);
                    // The length of the outage is what this case is about.
                    std::thread::sleep(Duration::from_secs(cut));
                    lab.restore(&lab.names[i]);
                    let restored = started.elapsed();
                    let out = child.wait_with_output().expect("foundry");
                    (out, restored, started.elapsed())
                })
            })
            .collect();
        cases.into_iter().map(|c| c.join().expect("case")).collect()
    });
    for (i, (out, restored, done)) in ended.into_iter().enumerate() {
        let case = format!("cut for {}s", cuts[i]);
        eprintln!("{case}: restored at {restored:.1?}, the run ended at {done:.1?}");
        assert!(
            out.status.success(),
            "{case}: the run ended {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(count(&lab, i, "/tmp/counter"), 1, "{case}: ran once");
        let lines = output_lines(&json_lines(&out.stdout));
        for line in ["begun", "finished", "exiting 0"] {
            assert_eq!(
                lines.iter().filter(|l| *l == line).count(),
                1,
                "{case}: `{line}` streamed once: {lines:?}"
            );
        }
    }
    assert!(
        started.elapsed() >= Duration::from_secs(120),
        "the longest cut really lasted"
    );
}

#[test]
fn a_killed_foundry_reattaches_to_its_detached_command_and_reports_the_true_exit_code() {
    let lab = Lab::up("kill", 2);
    let home = foundry_tests::Home::new();

    // Killed while the command runs: the command lives on; resume waits for it and
    // reports its exit code (7) without running it again.
    let mut child = home.spawn_plan(&plan(&lab, &lab.names[0], counted("/tmp/seven", 6, 7), 1));
    wait_for_while_running(
        &mut child,
        "the command to start",
        Duration::from_secs(120),
        || count(&lab, 0, "/tmp/seven") == 1,
    );
    kill(&mut child);
    let alive = lab.ssh(&lab.targets[0], "pgrep -f 'sleep 6' >/dev/null");
    assert!(alive.status.success(), "the command outlived foundry");
    let run = home.only_run();
    let resumed = home.run(&["workflow", "resume", &run, "--output", "json"]);
    assert_eq!(resumed.status.code(), Some(4), "exhausted: paused");
    let events = json_lines(&resumed.stdout);
    assert!(
        events.iter().any(|e| e["event"] == "step_in_doubt"),
        "the step was in doubt: {events:?}"
    );
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "step_failed")
        .collect();
    assert_eq!(failed.len(), 1, "{events:?}");
    let error = failed[0]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("exited with status 7: exiting 7"),
        "the true exit code: {error}"
    );
    assert_eq!(count(&lab, 0, "/tmp/seven"), 1, "not started again");
    assert!(output_lines(&events).contains(&"finished".to_string()));

    // Killed at random moments of a short command, and at chosen points of the step:
    // each resume ends with one run.
    let points = ["long#0@started", "long#0@effect", "long#0@completed"];
    for (n, point) in points
        .iter()
        .map(Some)
        .chain([None, None, None])
        .enumerate()
    {
        let home = foundry_tests::Home::new();
        let counter = format!("/tmp/count-{n}");
        let plan = plan(&lab, &lab.names[1], counted(&counter, 2, 0), 3);
        let mut cmd = home.start_cmd(&plan);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(point) = point {
            cmd.env("FOUNDRY_FAILPOINTS", point);
        }
        let mut child = cmd.spawn().expect("foundry");
        match point {
            Some(_) => {
                let status = child.wait().expect("foundry");
                assert!(foundry_tests::killed(status), "{point:?}: {status:?}");
            }
            None => {
                std::thread::sleep(Duration::from_millis(300 + rand::random::<u64>() % 2200));
                kill(&mut child);
            }
        }
        let run = home.only_run();
        let resumed = home.run(&["workflow", "resume", &run]);
        assert!(
            resumed.status.success(),
            "{point:?}: {}",
            String::from_utf8_lossy(&resumed.stderr)
        );
        assert_eq!(
            count(&lab, 1, &counter),
            1,
            "{point:?} (case {n}): ran once"
        );
    }
}

/// Runs `script` in `container`, expecting success; its stdout.
fn exec(container: &str, script: &str) -> String {
    let out = std::process::Command::new("docker")
        .args(["exec", container, "sh", "-c", script])
        .output()
        .expect("docker exec");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn where_systemd_is_pid_1_the_command_runs_as_a_transient_unit() {
    use foundry_activities::ssh::{SshDetached, SshTarget};
    use foundry_core::{Activity, ActivityCx};
    use foundry_tests::docker::{Cleanup, systemd_image, unique};

    let image = systemd_image();
    let name = unique("systemd");
    let _cleanup = Cleanup {
        containers: vec![name.clone()],
        networks: vec![],
    };
    // systemd as PID 1 in a container: the cgroup tree read-only, /run on tmpfs.
    let started = std::process::Command::new("docker")
        .args([
            "run",
            "-d",
            "--name",
            &name,
            "--cap-add",
            "SYS_ADMIN",
            "--security-opt",
            "seccomp=unconfined",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:ro",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            image,
        ])
        .output()
        .expect("docker run");
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );
    wait_for("systemd to boot", Duration::from_secs(60), || {
        std::process::Command::new("docker")
            .args(["exec", &name, "systemctl", "is-system-running"])
            .output()
            .is_ok_and(|o| !String::from_utf8_lossy(&o.stdout).contains("starting"))
    });
    let keys = tempfile::tempdir().expect("tempdir");
    let key = keys.path().join("id_ed25519");
    let made = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(made.success());
    let public = std::fs::read_to_string(key.with_extension("pub")).expect("public key");
    exec(
        &name,
        &format!(
            "ssh-keygen -A >/dev/null && mkdir -p -m 700 /root/.ssh && printf '%s' '{}' > /root/.ssh/authorized_keys \
             && systemctl reset-failed ssh && systemctl restart ssh",
            public.trim()
        ),
    );
    assert_eq!(exec(&name, "cat /proc/1/comm"), "systemd");
    let host_key = exec(&name, "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub");
    let address = exec(&name, "hostname -I | cut -d' ' -f1");
    let target = SshTarget {
        address,
        port: 22,
        user: "root".into(),
        key: key.into(),
        host_key,
    };

    let cx = ActivityCx::standalone("unit");
    let command = SshDetached::new(
        target,
        [
            "sh",
            "-c",
            "cat /proc/self/cgroup > /tmp/cgroup; printf '%s' \"$1\" > /tmp/arg; sleep 1; exit 3",
            "sh",
            "100% $HOME ${x} $$ `id` '\"",
        ]
        .map(String::from)
        .to_vec(),
    );
    let err = command.apply(&cx).await.expect_err("exits 3");
    assert!(err.message.contains("exited with status 3"), "{err:?}");
    assert_eq!(
        exec(&name, "cat /tmp/arg"),
        "100% $HOME ${x} $$ `id` '\"",
        "the argument reached the command as it is"
    );
    let cgroup = exec(&name, "cat /tmp/cgroup");
    assert!(
        cgroup.contains(&format!("foundry-step-{}.service", cx.instance())),
        "ran in its own unit, not in the SSH session: {cgroup}"
    );
    // A second apply of the same attempt reattaches to the ended command.
    exec(&name, "rm /tmp/cgroup");
    let again = command.apply(&cx).await.expect_err("the same outcome");
    assert!(again.message.contains("exited with status 3"), "{again:?}");
    // Not run again: the file it would write is still gone.
    exec(&name, "test ! -e /tmp/cgroup");
}
