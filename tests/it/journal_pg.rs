//! The shared journal on a real PostgreSQL (a throwaway cluster made with `initdb` per
//! test): two homes standing for two machines race for one run, the server restarts in the
//! middle of a run, and a commit's connection is cut.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry_core::journal::pg_cluster::{Cluster, certificates};
use foundry_tests::{Home, kill, lines_of, signal, wait_for};
use serde_json::{Value, json};

use crate::cancel::undoable;
use crate::drivers::{gated_step, start_until_running};

/// The lease TTL the machines run with, and so their heartbeat (a third of it).
const TTL: Duration = Duration::from_secs(3);

fn server() -> Cluster {
    Cluster::start_in(None).unwrap_or_else(|e| panic!("{e}"))
}

/// A home standing for the machine `name`, its runs in `server`'s database.
fn machine(server: &Cluster, name: &str) -> Home {
    Home::new()
        .with_var("FOUNDRY_JOURNAL", &server.socket_url())
        .with_var("FOUNDRY_HOSTNAME", name)
        .with_var("FOUNDRY_LEASE_TTL", &format!("{}s", TTL.as_secs()))
}

/// A step that appends one line to `file`: its effect, counted.
fn append(key: &str, file: &std::path::Path) -> Value {
    json!({"key": key, "run": ["sh", "-c", format!("echo {key} >> '{}'", file.display())]})
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The lines a child writes on stderr, gathered as they come.
fn gather_stderr(child: &mut Child) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let pipe = child.stderr.take().expect("stderr piped");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            sink.lock().expect("lines").push(line);
        }
    });
    lines
}

fn said(lines: &Arc<Mutex<Vec<String>>>, what: &str) -> bool {
    lines
        .lock()
        .expect("lines")
        .iter()
        .any(|l| l.contains(what))
}

/// `workflow resume` from `home` again and again until it is not refused; every refusal
/// names `owner` and its pid. Returns how long after `since` the run was taken, and when
/// the last refusal was.
fn resume_once_lapsed(home: &Home, run: &str, owner: (&str, u32), since: Instant) -> Duration {
    let mut last_refused = None;
    let deadline = since + TTL * 4;
    loop {
        assert!(Instant::now() < deadline, "never taken over");
        let out = home.run(&["workflow", "resume", run]);
        let at = since.elapsed();
        if out.status.success() {
            let last = last_refused.expect("refused at least once before the TTL");
            // Refused until just before the lease lapsed (its last heartbeat was at most a
            // third of the TTL before `since`).
            assert!(last + TTL / 2 >= TTL - TTL / 3, "refused last at {last:?}");
            assert!(at >= TTL - TTL / 3, "taken over at {at:?}, before the TTL");
            return at;
        }
        let all = text(&out);
        assert_eq!(out.status.code(), Some(6), "{all}");
        assert!(all.contains(&format!("pid {}", owner.1)), "{all}");
        assert!(all.contains(&format!("on host {}", owner.0)), "{all}");
        last_refused = Some(at);
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn two_machines_one_run_the_second_takes_over_only_once_the_lease_lapses() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let gate = a.scratch().join("go");
    let count = a.scratch().join("after");
    let plan = json!({"steps": [gated_step("wait", &gate), append("after", &count)]});
    let (mut owner, run) = start_until_running(&a, &plan, "wait#0");
    let pid = owner.id();

    // Both machines see the run; the second is refused, told who drives it.
    let listed = b.runs();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["run"], run.as_str(), "{listed:?}");

    kill(&mut owner);
    let killed = Instant::now();
    std::fs::write(&gate, b"").expect("gate");
    let took = resume_once_lapsed(&b, &run, ("machine-a", pid), killed);
    println!("taken over {took:?} after the owner was killed (TTL {TTL:?})");
    assert_eq!(b.show(&run)["state"], "completed");
    assert_eq!(a.show(&run)["state"], "completed");
    assert_eq!(lines_of(&count), ["after"]);
}

#[test]
fn a_driver_stopped_past_the_ttl_is_fenced_and_stops_writing_nothing() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let gate = a.scratch().join("go");
    let count = a.scratch().join("after");
    let plan = json!({"steps": [gated_step("wait", &gate), append("after", &count)]});
    let mut stale = a
        .start_cmd(&plan)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("foundry");
    let stale_err = gather_stderr(&mut stale);
    let run = a.wait_for_run("step wait#0 running", |shown| {
        shown["current_step"] == "wait#0"
    });
    signal(stale.id(), "-STOP");
    let stopped = Instant::now();

    // The second machine is refused while the lease stands, then takes the run; its own
    // attempt at the gated step waits for the gate.
    let refused = b.run(&["workflow", "resume", &run]);
    assert_eq!(refused.status.code(), Some(6), "{}", text(&refused));
    let mut driver = None;
    wait_for("the run taken over by machine-b", TTL * 4, || {
        let mut child = b
            .cmd(&["workflow", "resume", &run])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("foundry");
        // Refused, it ends at once; taking over, it drives until the gate opens.
        let mut taken = false;
        wait_for("a refusal or a take-over", Duration::from_secs(10), || {
            taken = b.show(&run)["driver"]["host"] == "machine-b";
            taken || child.try_wait().expect("poll").is_some()
        });
        if taken {
            driver = Some(child);
        }
        taken
    });
    let mut driver = driver.expect("the new driver");
    assert!(
        stopped.elapsed() >= TTL - TTL / 3,
        "taken over before the TTL"
    );

    // The stale driver wakes: its next heartbeat is refused, and it stops at once, its
    // long step (still waiting for the gate) killed, not waited for.
    signal(stale.id(), "-CONT");
    let woke = Instant::now();
    let mut ended = None;
    wait_for("the stale driver to stop", Duration::from_secs(5), || {
        ended = stale.try_wait().expect("poll");
        ended.is_some()
    });
    println!(
        "the stale driver stopped {:?} after SIGCONT",
        woke.elapsed()
    );
    let status = ended.expect("ended");
    assert!(!status.success(), "the stale driver succeeded");
    wait_for("the stale driver's error", Duration::from_secs(5), || {
        said(&stale_err, "taken over by another process")
    });
    assert!(lines_of(&count).is_empty(), "{:?}", lines_of(&count));
    std::fs::write(&gate, b"").expect("gate");
    let status = driver.wait().expect("new driver");
    assert!(status.success(), "the new driver failed: {status:?}");
    assert!(
        said(&stale_err, "on host machine-b"),
        "{:?}",
        stale_err.lock().expect("lines")
    );
    // Its next step never ran, and the run is the new driver's, completed.
    assert_eq!(lines_of(&count), ["after"]);
    assert_eq!(a.show(&run)["state"], "completed");
}

#[test]
fn a_server_restarted_mid_run_is_waited_for_and_nothing_is_lost_or_run_twice() {
    let server = server();
    let home = machine(&server, "machine-a");
    let gate = home.scratch().join("go");
    let count = home.scratch().join("count");
    let plan = json!({"steps": [
        append("one", &count),
        gated_step("wait", &gate),
        append("two", &count),
        append("three", &count),
    ]});
    let mut driver = home
        .start_cmd(&plan)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("foundry");
    let err = gather_stderr(&mut driver);
    home.wait_for_run("step wait#0 running", |shown| {
        shown["current_step"] == "wait#0"
    });
    server.stop().expect("stop");
    std::fs::write(&gate, b"").expect("gate");
    wait_for(
        "the driver to say it waits",
        Duration::from_secs(20),
        || said(&err, "waiting up to"),
    );
    assert!(said(&err, "cannot reach PostgreSQL"));
    server.start_again().expect("start");
    let status = driver.wait().expect("driver");
    let lines = err.lock().expect("lines").clone();
    assert!(status.success(), "{lines:?}");
    assert!(said(&err, "the journal answers again"), "{lines:?}");
    assert_eq!(lines_of(&count), ["one", "two", "three"]);
    let run = home.only_run();
    assert_eq!(home.show(&run)["state"], "completed");
}

#[test]
fn a_connection_cut_inside_a_commit_is_made_again_and_the_step_runs_once() {
    let server = server();
    let home = machine(&server, "machine-a");
    let count = home.scratch().join("count");
    let plan = json!({"steps": [append("one", &count), append("two", &count)]});
    for point in ["one#0@started-cut", "two#0@completed-cut"] {
        std::fs::remove_file(&count).ok();
        let out = home
            .start_cmd(&plan)
            .env("FOUNDRY_FAILPOINTS", point)
            .output()
            .expect("foundry");
        let all = text(&out);
        assert!(out.status.success(), "{point}: {all}");
        assert!(all.contains("the journal answers again"), "{point}: {all}");
        assert_eq!(lines_of(&count), ["one", "two"], "{point}");
    }
}

#[test]
fn a_step_whose_outcome_commit_was_cut_is_in_doubt_and_its_probe_settles_it() {
    let server = server();
    let home = machine(&server, "machine-a").with_var("FOUNDRY_JOURNAL_WAIT", "0s");
    let count = home.scratch().join("count");
    let mut one = append("one", &count);
    one["probe"] = json!(["grep", "-q", "one", count.display().to_string()]);
    let plan = json!({"steps": [one, append("two", &count)]});
    let out = home
        .start_cmd(&plan)
        .env("FOUNDRY_FAILPOINTS", "one#0@completed-cut")
        .output()
        .expect("foundry");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("cannot reach PostgreSQL"), "{all}");
    // The effect happened, its record did not reach the journal: in doubt, not lost.
    assert_eq!(lines_of(&count), ["one"]);
    let run = home.only_run();
    let shown = home.show(&run);
    assert_eq!(shown["step_list"][0]["state"], "in_doubt", "{shown}");

    let out = home.run(&["workflow", "resume", &run]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(all.contains("found done by its probe"), "{all}");
    assert_eq!(lines_of(&count), ["one", "two"]);
}

#[test]
fn the_password_comes_from_a_private_pgpass_never_from_the_url() {
    use std::os::unix::fs::PermissionsExt;
    let server = server();
    let url = server.tcp_url("postgres");
    let home = Home::new().with_var("FOUNDRY_JOURNAL", &url);
    let pgpass = home.scratch().join("pgpass");
    let line = format!(
        "127.0.0.1:{}:postgres:{}:{}\n",
        server.port,
        foundry_core::journal::pg_cluster::USER,
        foundry_core::journal::pg_cluster::PASSWORD
    );
    std::fs::write(&pgpass, line).expect("pgpass");
    let pgpass_text = pgpass.display().to_string();
    let with_file = |mode: u32| {
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(mode)).expect("chmod");
        home.cmd(&["workflow", "list"])
            .env("PGPASSFILE", &pgpass_text)
            .output()
            .expect("foundry")
    };
    let out = with_file(0o644);
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("may be read by others"), "{all}");
    assert!(all.contains(&format!("chmod 600 {pgpass_text}")), "{all}");
    let out = with_file(0o600);
    assert!(out.status.success(), "{}", text(&out));

    // The same password in the URL is refused, and never shown.
    let secret = foundry_core::journal::pg_cluster::PASSWORD;
    let in_url = url.replace('@', &format!(":{secret}@"));
    let out = home
        .cmd(&["workflow", "list"])
        .env("FOUNDRY_JOURNAL", &in_url)
        .output()
        .expect("foundry");
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(
        all.contains("holds a password") && all.contains(".pgpass"),
        "{all}"
    );
    assert!(!all.contains(secret), "{all}");
}

/// A plan paused half-way: `one` done, `check` failed once (its retries exhausted) until
/// `gate` exists, `two` not run.
fn paused_plan(home: &Home, gate: &std::path::Path, count: &std::path::Path) -> String {
    let plan = json!({"steps": [
        append("one", count),
        {"key": "check", "run": ["test", "-f", gate.display().to_string()], "retry": {"max_attempts": 1}},
        append("two", count),
    ]});
    let out = home.start_plan(&plan);
    assert_eq!(out.status.code(), Some(4), "paused: {}", text(&out));
    home.only_run()
}

fn migrate(home: &Home, to: &str) -> std::process::Output {
    home.cmd(&["journal", "migrate", "--to", to, "--output", "json"])
        .output()
        .expect("foundry")
}

#[test]
fn journal_migrate_moves_a_paused_run_both_ways_and_leaves_a_driven_one() {
    let server = server();
    let url = server.socket_url();
    // One home, its runs in its files (redb) or, with FOUNDRY_JOURNAL, in the database.
    let files = Home::new();
    let shared = |args: &[&str]| {
        let mut cmd = files.cmd(args);
        cmd.env("FOUNDRY_JOURNAL", &url);
        cmd.output().expect("foundry")
    };
    let gate = files.scratch().join("gate");
    let count = files.scratch().join("count");
    let run = paused_plan(&files, &gate, &count);

    // A target that cannot be used moves nothing, and the source keeps the run.
    let out = migrate(&files, "postgres://nobody@127.0.0.1:1/none");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("cannot reach PostgreSQL"),
        "{}",
        text(&out)
    );
    assert_eq!(files.only_run(), run);

    // A run a live process drives stays where it is.
    let wait_gate = files.scratch().join("go");
    let live_plan = json!({"steps": [gated_step("live", &wait_gate)]});
    let mut live = files.spawn_plan(&live_plan);
    wait_for("the live run driven", Duration::from_secs(20), || {
        files.runs().iter().any(|r| r["current_step"] == "live#0")
    });
    let out = migrate(&files, &url);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out));
    let lines = foundry_tests::json_lines(&out.stdout);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["run"] == run.as_str() && l["moved"] == true),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l["moved"] == false && l["driver"]["pid"] == live.id()),
        "{lines:?}"
    );
    std::fs::write(&wait_gate, b"").expect("gate");
    assert!(live.wait().expect("live").success());

    // Moved: in the database, paused at its step, and no longer in the files.
    assert!(files.runs().iter().all(|r| r["run"] != run.as_str()));
    let listed = foundry_tests::json_lines(
        &shared(&["workflow", "list", "--all", "--output", "json"]).stdout,
    );
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["state"], "paused", "{listed:?}");

    // And back to the files, then resumed there to its end: `one` ran once.
    let out = shared(&["journal", "migrate", "--to", "redb"]);
    assert!(out.status.success(), "{}", text(&out));
    let listed = foundry_tests::json_lines(
        &shared(&["workflow", "list", "--all", "--output", "json"]).stdout,
    );
    assert!(listed.is_empty(), "{listed:?}");
    let shown = files.show(&run);
    assert_eq!(shown["state"], "paused", "{shown}");
    assert_eq!(shown["step_list"][1]["attempts"], 1, "{shown}");
    std::fs::write(&gate, b"").expect("gate");
    let out = files.run(&["workflow", "resume", &run]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines_of(&count), ["one", "two"]);

    // A run moved to the database resumes there to its end too.
    std::fs::remove_file(&gate).expect("gate");
    std::fs::remove_file(&count).expect("count");
    let files = Home::new();
    let run = paused_plan(&files, &gate, &count);
    let out = migrate(&files, &url);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(&gate, b"").expect("gate");
    let mut resume = files.cmd(&["workflow", "resume", &run]);
    resume.env("FOUNDRY_JOURNAL", &url);
    let out = resume.output().expect("foundry");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines_of(&count), ["one", "two"]);
}

/// The workflow CLI's tests, their bodies as they run on the home's files, on a
/// PostgreSQL journal: list, status, show, resume, cancel, status --follow.
mod cli {
    use super::*;

    fn on(server: &Cluster) -> Home {
        Home::new().with_var("FOUNDRY_JOURNAL", &server.socket_url())
    }

    #[test]
    fn a_second_driver_is_refused_and_a_dead_owner_is_taken_over() {
        let server = server();
        crate::drivers::a_second_driver_is_refused_and_a_dead_owner_is_taken_over_in(on(&server));
    }

    #[test]
    fn status_follow_streams_a_driven_run_to_its_end() {
        let server = server();
        crate::drivers::status_follow_streams_a_driven_run_to_its_end_in(on(&server));
    }

    #[test]
    fn cancel_from_another_terminal_runs_undo_in_reverse() {
        let server = server();
        crate::cancel::cancel_from_another_terminal_runs_undo_in_reverse_in(on(&server));
    }

    #[test]
    fn cancel_of_an_undriven_run_runs_its_undo_here() {
        let server = server();
        crate::cancel::cancel_of_an_undriven_run_runs_its_undo_here_in(on(&server));
    }

    #[test]
    fn schedule_survives_a_restart_and_exhaustion_pauses() {
        let server = server();
        crate::retries::schedule_survives_a_restart_and_exhaustion_pauses_in(on(&server));
    }

    #[test]
    fn in_doubt_a_probed_command_is_decided_by_its_probe_not_run_again() {
        let server = server();
        crate::in_doubt::in_doubt_a_probed_command_is_decided_by_its_probe_not_run_again_in(on(
            &server,
        ));
    }

    #[test]
    fn runs_started_together_get_different_short_ids_that_resolve() {
        let server = server();
        crate::short_ids::runs_started_together_get_different_short_ids_that_resolve_in(on(
            &server,
        ));
    }

    #[test]
    fn gc_forgets_ended_runs() {
        let server = server();
        let home = on(&server);
        let failed = home.start_plan(&json!({"steps": [
            {"key": "fails", "run": ["false"], "retry": {"max_attempts": 1}},
        ]}));
        assert_eq!(failed.status.code(), Some(4), "{}", text(&failed));
        let run = home.only_run();
        let planned = home.json(&["workflow", "gc", "--older-than", "0s", "--dry-run"]);
        assert!(
            planned.iter().any(|l| l["removed"] == run.as_str()),
            "{planned:?}"
        );
        assert_eq!(home.only_run(), run, "a dry run removed it");
        let removed = home.json(&["workflow", "gc", "--older-than", "0s"]);
        assert!(
            removed.iter().any(|l| l["removed"] == run.as_str()),
            "{removed:?}"
        );
        assert!(home.runs().is_empty());
    }
}

/// A home whose journal is `server`'s over loopback TCP, TLS as `options` say (the CA,
/// when named, written to the home's scratch dir).
fn over_tcp(server: &Cluster, options: &str, ca_pem: Option<&str>) -> Home {
    let home = Home::new();
    let mut url = format!("{}?{options}", server.tcp_url("postgres"));
    if let Some(pem) = ca_pem {
        let ca = home.scratch().join("ca.pem");
        std::fs::write(&ca, pem).expect("CA");
        url.push_str(&format!("&sslrootcert={}", ca.display()));
    }
    home.with_var("FOUNDRY_JOURNAL", &url)
        .with_var("PGPASSWORD", foundry_core::journal::pg_cluster::PASSWORD)
}

#[test]
fn a_journal_over_tls_is_verified_against_its_ca_and_a_wrong_ca_is_refused() {
    let pki = tempfile::tempdir().expect("dir");
    let (ca, cert, key) = certificates(pki.path(), "journal CA").unwrap_or_else(|e| panic!("{e}"));
    // The server refuses TCP in clear, so a run that gets through spoke TLS.
    let server = Cluster::start_with_tls(&cert, &key).unwrap_or_else(|e| panic!("{e}"));
    let home = over_tcp(&server, "sslmode=verify-full", Some(&ca));
    let count = home.scratch().join("count");
    let out = home.start_plan(&json!({"steps": [append("one", &count)]}));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines_of(&count), ["one"]);
    let run = home.only_run();
    assert_eq!(home.show(&run)["state"], "completed");

    // Another CA: refused at the handshake, said as such, nothing run.
    let elsewhere = tempfile::tempdir().expect("dir");
    let (other_ca, _, _) =
        certificates(elsewhere.path(), "another CA").unwrap_or_else(|e| panic!("{e}"));
    let stranger = over_tcp(&server, "sslmode=verify-full", Some(&other_ca));
    let out = stranger.start_plan(&json!({"steps": [append("two", &count)]}));
    let all = text(&out);
    assert!(!out.status.success(), "{all}");
    assert!(all.contains("TLS session with PostgreSQL failed"), "{all}");
    assert!(all.contains("UnknownIssuer"), "{all}");
    assert!(all.contains("sslrootcert"), "{all}");
    assert_eq!(lines_of(&count), ["one"]);

    // In clear, the server turns the client away: the check above is not vacuous.
    let clear = over_tcp(&server, "sslmode=disable", None);
    let out = clear.run(&["workflow", "list"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no encryption"), "{}", text(&out));
}

#[test]
fn a_run_holding_a_secret_of_one_machine_is_not_resumed_on_another_and_says_why() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let secret = "only-on-machine-a-5f2c";
    let count = a.scratch().join("last");
    // A secret answer kept in machine-a's home, then machine-a dies before the last step.
    let run = crate::run_secrets::killed_before_last(&a, secret, append("last", &count));

    // Once machine-a's lease lapses, machine-b may open the run, and refuses to drive it.
    let mut out = b.run(&["workflow", "resume", &run]);
    let deadline = Instant::now() + TTL * 4;
    while out.status.code() == Some(6) {
        assert!(Instant::now() < deadline, "the lease never lapsed");
        std::thread::sleep(Duration::from_millis(100));
        out = b.run(&["workflow", "resume", &run]);
    }
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("kept only on the machine that drove it (machine-a)"),
        "{all}"
    );
    assert!(all.contains("(step ask/token#0)"), "{all}");
    assert!(all.contains("local:"), "{all}");
    assert!(all.contains("OpenBAO"), "{all}");
    assert!(all.contains("resume it on machine-a"), "{all}");
    assert!(!all.contains(secret), "{all}");
    assert!(lines_of(&count).is_empty(), "{:?}", lines_of(&count));
    assert_eq!(b.show(&run)["state"], "interrupted");

    // Where the secret is, the run goes on.
    let out = a.run(&["workflow", "resume", &run]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(lines_of(&count), ["last"]);
    assert_eq!(b.show(&run)["state"], "completed");
}

#[test]
fn status_follow_from_another_machine_reads_the_journal_to_the_runs_end() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let gate = a.scratch().join("go");
    let count = a.scratch().join("after");
    // Each later step takes a second, so a reader every half second sees it start and end.
    let slow = |key: &str| json!({"key": key, "run": ["sh", "-c", format!("sleep 1; echo {key} >> '{}'", count.display())]});
    let plan = json!({"steps": [gated_step("wait", &gate), slow("first"), slow("second")]});
    let (mut owner, run) = start_until_running(&a, &plan, "wait#0");

    // Machine B has no socket of A's driver: it follows through the shared journal.
    let mut follower = b
        .cmd(&["workflow", "status", &run, "--follow", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("foundry");
    let pipe = follower.stdout.take().expect("stdout");
    let lines = Arc::new(Mutex::new(Vec::<Value>::new()));
    let sink = lines.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str(&line) {
                sink.lock().expect("lines").push(v);
            }
        }
    });
    // The follower shows the run as it stands first, the gated step running, and stays.
    wait_for("the follower's first view", Duration::from_secs(20), || {
        !lines.lock().expect("lines").is_empty()
    });
    assert!(
        follower.try_wait().expect("poll").is_none(),
        "the follower ended early"
    );
    assert_eq!(lines.lock().expect("lines")[0]["state"], "running");

    std::fs::write(&gate, b"").expect("gate");
    let end = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = follower.try_wait().expect("poll") {
            break status;
        }
        assert!(Instant::now() < end, "the follower never ended");
        std::thread::sleep(Duration::from_millis(50));
    };
    reader.join().expect("reader");
    assert!(owner.wait().expect("owner").success());
    assert_eq!(
        status.code(),
        Some(0),
        "a completed run ends the follow with 0"
    );
    let events = lines.lock().expect("lines").clone();
    let completed: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_completed")
        .filter_map(|e| e["step"].as_str())
        .collect();
    // The last step ends with the run, whose journal keeps only a summary once it is
    // completed: its end may show only as the run's.
    assert!(completed.starts_with(&["wait#0", "first#0"]), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step_started" && e["step"] == "second#0"),
        "{events:?}"
    );
    let last = events.last().expect("events");
    assert_eq!(last["event"], "run_finished", "{events:?}");
    assert_eq!(last["state"], "completed", "{events:?}");
    assert_eq!(lines_of(&count), ["first", "second"]);
}

/// A run machine-a drives, at a gated step that would wait 30 s, after a step with an
/// undo; returns its driver (stderr gathered), the run, and the scratch dir of its files.
fn driven_at_a_gate(a: &Home) -> (Child, Arc<Mutex<Vec<String>>>, String, std::path::PathBuf) {
    let dir = a.scratch();
    let plan = json!({"steps": [
        undoable("a", &dir),
        gated_step("wait", &dir.join("never")),
        undoable("never-reached", &dir),
    ]});
    let mut owner = a
        .start_cmd(&plan)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("foundry");
    let owner_err = gather_stderr(&mut owner);
    let run = a.wait_for_run("step wait#0 running", |shown| {
        shown["step_list"].as_array().is_some_and(|s| {
            s.iter()
                .any(|s| s["key"] == "wait#0" && s["state"] == "running")
        })
    });
    (owner, owner_err, run, dir)
}

/// Waits for `child` to end, at most `within`; its exit code.
fn ended_within(child: &mut Child, within: Duration) -> Option<i32> {
    let mut status = None;
    wait_for("the driver to end", within, || {
        status = child.try_wait().expect("poll");
        status.is_some()
    });
    status.and_then(|s| s.code())
}

/// What both machines show of a cancelled run: cancelled, its gated step stopped by the
/// cancel (not run to its end), the step before it undone, the one after never run.
fn cancelled_everywhere(a: &Home, b: &Home, run: &str, dir: &std::path::Path) {
    for home in [a, b] {
        let shown = home.show(run);
        assert_eq!(shown["state"], "cancelled", "{shown}");
        let listed = home.runs();
        assert_eq!(listed[0]["state"], "cancelled", "{listed:?}");
        let wait = shown["step_list"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["key"] == "wait#0"))
            .cloned()
            .unwrap_or_default();
        assert!(
            wait["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("the run is cancelled")),
            "{shown}"
        );
    }
    assert_eq!(lines_of(&dir.join("undo.log")), ["undo-a"]);
    assert!(!dir.join("a").exists() && !dir.join("never-reached").exists());
}

#[test]
fn cancel_from_another_machine_stops_the_driver_at_once_and_undoes_its_steps() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let (mut owner, owner_err, run, dir) = driven_at_a_gate(&a);
    let pid = owner.id();

    let asked = Instant::now();
    let out = b.run(&["workflow", "cancel", &run]);
    let took = asked.elapsed();
    let all = text(&out);
    // B says what it did, and follows the run to its end through the journal.
    assert_eq!(out.status.code(), Some(7), "{all}");
    assert!(
        all.contains(&format!("asked of its driver, pid {pid} on host machine-a")),
        "{all}"
    );
    assert!(all.contains("through the shared journal"), "{all}");
    assert!(all.contains("cancel requested"), "{all}");
    assert!(all.contains("cancelled"), "{all}");
    // A heard it at once (or read it at a heartbeat, a third of the TTL, at the latest), its
    // gated step stopped rather than waited for (30 s), and ended with cancel's exit code.
    assert_eq!(ended_within(&mut owner, TTL * 2), Some(7));
    println!(
        "cancelled from another machine in {took:?} (heartbeat {:?})",
        TTL / 3
    );
    assert!(took < TTL * 2, "{took:?}");
    assert!(
        said(&owner_err, "cancel requested"),
        "{:?}",
        owner_err.lock().expect("lines")
    );
    cancelled_everywhere(&a, &b, &run, &dir);
}

#[test]
fn cancel_from_another_machine_says_what_it_did_as_json() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let (mut owner, _, run, dir) = driven_at_a_gate(&a);
    let pid = owner.id();

    let out = b.run(&["workflow", "cancel", &run, "--output", "json"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out));
    let lines = foundry_tests::json_lines(&out.stdout);
    let first = lines.first().cloned().unwrap_or_default();
    assert_eq!(first["run"], run.as_str(), "{lines:?}");
    assert_eq!(first["cancel"], "asked", "{lines:?}");
    assert_eq!(first["driver"]["host"], "machine-a", "{lines:?}");
    assert_eq!(first["driver"]["pid"], json!(pid), "{lines:?}");
    let events: Vec<&str> = lines[1..]
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.contains(&"cancel_requested"), "{lines:?}");
    let last = lines.last().cloned().unwrap_or_default();
    assert_eq!(last["event"], "run_finished", "{lines:?}");
    assert_eq!(last["state"], "cancelled", "{lines:?}");
    assert_eq!(ended_within(&mut owner, TTL * 2), Some(7));
    cancelled_everywhere(&a, &b, &run, &dir);
}

#[test]
fn cancel_from_another_machine_of_a_run_nobody_drives_runs_its_undo_there() {
    let server = server();
    let (a, b) = (machine(&server, "machine-a"), machine(&server, "machine-b"));
    let dir = a.scratch();
    let plan = json!({"steps": [
        undoable("a", &dir),
        {"key": "fails", "run": ["false"], "retry": {"max_attempts": 1}},
    ]});
    let out = a.start_plan(&plan);
    assert_eq!(out.status.code(), Some(4), "paused: {}", text(&out));
    let run = a.only_run();
    let out = b.run(&["workflow", "cancel", &run]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(7), "{all}");
    assert!(!all.contains("asked of its driver"), "{all}");
    assert_eq!(lines_of(&dir.join("undo.log")), ["undo-a"]);
    for home in [&a, &b] {
        assert_eq!(home.show(&run)["state"], "cancelled");
    }
}
