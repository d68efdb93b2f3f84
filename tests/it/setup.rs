//! `foundry setup` on a fresh lab: the hosts configured, OpenBAO, PowerDNS and the registry
//! installed, the last look healthy, as one durable run. Killed (SIGKILL) at chosen step
//! boundaries and at random moments, `foundry setup` again resumes it each time; it
//! converges, and every remote effect happened once: each container created once (the
//! Engine's events), OpenBAO initialized once (its log), each zone created once (the
//! servers' own database). Run again, it changes nothing. A config that does not read
//! stops it before anything is changed.
//!
//! A kill while OpenBAO's init is in flight is among the moments: the init runs in the
//! server's container and leaves its answer there, so the resume finds it.
//!
//! In CI the boundaries are a sample (one phase per step, chosen by a seed that is
//! printed) and the random kills are few; `FOUNDRY_CRASH_FULL=1` kills at every phase of
//! every step (three chains, each on a fresh stack) and at 30 random moments.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::{Home, docker::docker, kill, killed};
use rand::{Rng, SeedableRng};
use serde_json::Value;

fn full() -> bool {
    std::env::var_os("FOUNDRY_CRASH_FULL").is_some()
}

/// The crash tests' random source: `FOUNDRY_CRASH_SEED`, else a fresh seed, printed so a
/// failure can be replayed.
fn seeded() -> (u64, rand::rngs::StdRng) {
    let seed: u64 = std::env::var("FOUNDRY_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash seed {seed} (FOUNDRY_CRASH_SEED={seed} replays it)");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
}

/// `foundry setup --yes` on the lab's config.
fn setup(lab: &Lab) -> Command {
    let config = lab.config.to_str().expect("utf8");
    let mut cmd = lab.home.cmd(&["--config", config, "setup", "--yes"]);
    cmd.stdin(Stdio::null());
    cmd
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The setup runs of the lab's home, newest last.
fn setup_runs(home: &Home) -> Vec<Value> {
    let mut runs: Vec<Value> = home
        .runs()
        .into_iter()
        .filter(|r| r["workflow"] == "setup")
        .collect();
    runs.reverse();
    runs
}

/// The names of the containers the lab's stack runs.
pub(crate) fn containers(lab: &Lab) -> Vec<String> {
    [
        "openbao",
        "dns-internal",
        "dns-external",
        "dns-recursor",
        "zot",
    ]
    .iter()
    .map(|c| format!("foundry-lab-{}-{c}", lab.name))
    .collect()
}

/// Every step key of a setup of the lab, in an order each comes after what it needs.
fn step_keys(lab: &Lab) -> Vec<String> {
    let stack = foundry_workflows::config::load(&lab.config).expect("the lab's config");
    let mut keys = vec!["add/read".to_string(), "hosts/read".to_string()];
    for host in &lab.names {
        for step in [
            "existing-user",
            "user",
            "sudoers",
            "ssh-key",
            "packages",
            "hostname",
        ] {
            keys.push(format!("hosts/{host}/{step}"));
        }
    }
    keys.push("network/plan".into());
    keys.push("network/validate".into());
    keys.push("stack/read".into());
    for step in crate::openbao::STEPS {
        keys.push(format!("stack/openbao/openbao/{step}"));
    }
    for step in ["image-build", "image", "container", "ready"] {
        keys.push(format!("stack/zot/registry/{step}"));
    }
    for step in ["image", "api-key", "api-key-conf"] {
        keys.push(format!("stack/dns/{step}"));
    }
    for role in ["internal", "external", "recursor"] {
        keys.push(format!(
            "stack/dns/container/foundry-lab-{}-dns-{role}",
            lab.name
        ));
    }
    keys.push("stack/dns/ready/internal".into());
    keys.push("stack/dns/ready/external".into());
    let dns = stack.dns.as_ref().expect("the lab's zones");
    for zone in &dns.infrastructure_zones {
        let name = zone.name.value.as_str().trim_end_matches('.').to_string();
        keys.push(format!("stack/dns/internal/zone/{name}."));
        if zone.public {
            keys.push(format!("stack/dns/external/zone/{name}."));
        }
    }
    keys.push("keys/read".into());
    keys.push("verify".into());
    keys
}

/// The state of each step the unfinished run `run` has a record of, by key.
fn step_states(home: &Home, run: &str) -> std::collections::BTreeMap<String, String> {
    home.show(run)["step_list"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .filter_map(|s| {
                    let key = s["key"].as_str()?.trim_end_matches("#0").to_string();
                    Some((key, s["state"].as_str()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Setup killed at each of `points` (`<step>@<phase>`) in turn, each time resumed by
/// `foundry setup` again; a point whose step has a record already (done, or left in doubt
/// by a kill at a step beside it) is passed over, and every other point must kill it.
/// Returns how many kills there were.
fn killed_along(lab: &Lab, points: &[String]) -> usize {
    let mut kills = 0;
    let mut run: Option<String> = None;
    for point in points {
        let (step, _) = point.split_once('@').expect("step@phase");
        let before = run
            .as_deref()
            .map(|r| step_states(&lab.home, r))
            .unwrap_or_default();
        // Done already, or left in doubt by a kill elsewhere (its probe may complete it
        // without the point being reached): passed over.
        if before.contains_key(step) {
            continue;
        }
        let out = setup(lab)
            .env(
                "FOUNDRY_FAILPOINTS",
                format!("{step}#0@{}", &point[step.len() + 1..]),
            )
            .output()
            .expect("setup");
        if run.is_some() {
            assert!(
                text(&out).contains("resuming the unfinished setup"),
                "{point}: not resumed: {}",
                text(&out)
            );
        }
        if killed(out.status) {
            kills += 1;
            let runs = setup_runs(&lab.home);
            let last = runs.last().expect("a setup run");
            // The last step's completion is durable with the run's end.
            if last["state"] == "completed" {
                assert!(point.starts_with("verify@"), "{point}: {last}");
                break;
            }
            run = last["run"].as_str().map(str::to_string);
            // Wherever it was killed, what its completed steps did is there, as their
            // probes find it.
            if let Some(run) = &run {
                let (v, _) = crate::verify::verify(&lab.home, run);
                let unsound = crate::verify::unsound(&v);
                assert!(unsound.is_empty(), "{point}: verify found {unsound:?}");
            }
            continue;
        }
        panic!("{point}: the setup was not killed there: {}", text(&out));
    }
    kills
}

/// The Engine's container creations, followed live from when it is made (the Engine keeps
/// too few past events to ask for them afterwards while other tests run).
pub(crate) struct Creations {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Creations {
    pub(crate) fn follow(lab: &Lab) -> Creations {
        let log = lab.home.scratch().join("creations.log");
        let file = std::fs::File::create(&log).expect("events log");
        let child = Command::new("docker")
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=create",
                "--format",
                "{{.Actor.Attributes.name}}",
            ])
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        // Following once a creation made now shows up (bounded). `docker events` may
        // subscribe only after a first probe is made under load: each try makes another.
        let creations = Creations { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        for attempt in 0.. {
            let probe = format!("foundry-lab-{}-events-probe-{attempt}", lab.name);
            let made = docker(&[
                "create",
                "--name",
                &probe,
                foundry_tests::docker::test_image(),
            ]);
            assert!(made.status.success(), "{made:?}");
            let seen = Instant::now() + Duration::from_secs(3);
            while !creations.names().contains(&probe) && Instant::now() < seen {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = docker(&["rm", "-f", &probe]);
            if creations.names().contains(&probe) {
                break;
            }
            assert!(Instant::now() < deadline, "docker events shows nothing");
        }
        creations
    }

    pub(crate) fn names(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Creations {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// What the Engine, OpenBAO and PowerDNS say happened: each container created once (as
/// followed by `creations`), OpenBAO initialized once, each zone created once.
fn assert_effects_once(lab: &Lab, creations: &Creations) {
    let created = creations.names();
    for name in containers(lab) {
        let times = created.iter().filter(|l| **l == name).count();
        assert_eq!(times, 1, "{name} created {times} times: {created:?}");
    }
    let logs = docker(&["logs", &format!("foundry-lab-{}-openbao", lab.name)]);
    let inits = text(&logs)
        .lines()
        .filter(|l| l.contains("security barrier initialized"))
        .count();
    assert_eq!(inits, 1, "OpenBAO initialized {inits} times");
    for role in ["internal", "external"] {
        let container = format!("foundry-lab-{}-dns-{role}", lab.name);
        let out = docker(&[
            "exec",
            &container,
            "sqlite3",
            "/var/lib/powerdns/pdns.sqlite3",
            "select count(*) || ' ' || max(id) from domains",
        ]);
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let (count, max) = said.split_once(' ').expect("count and max");
        assert_eq!(
            count, max,
            "{container}: a zone was made more than once (ids skip): {said}"
        );
    }
}

/// Run once more with its events: DNS's two servers are waited for side by side (both
/// `ready` steps start before either ends), as are its two servers' zones.
fn assert_independent_steps_overlap(lab: &Lab) {
    let out = setup(lab)
        .args(["--output", "json"])
        .output()
        .expect("setup --output json");
    assert!(out.status.success(), "{}", text(&out));
    let events: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|e| {
            Some((
                e["event"].as_str()?.to_string(),
                e["step"].as_str()?.to_string(),
            ))
        })
        .collect();
    let at = |event: &str, step: &str| {
        events
            .iter()
            .position(|(e, s)| e == event && s.starts_with(step))
            .unwrap_or_else(|| panic!("no {event} of {step}: {events:?}"))
    };
    for (a, b) in [
        ("stack/dns/ready/internal", "stack/dns/ready/external"),
        ("stack/dns/internal/zone/", "stack/dns/external/zone/"),
    ] {
        let both_started = at("step_started", a).max(at("step_started", b));
        let first_done = at("step_completed", a).min(at("step_completed", b));
        assert!(
            both_started < first_done,
            "{a} and {b} did not run side by side: {events:?}"
        );
    }
}

/// The setup completes (resumed, when a kill left it unfinished), every component
/// healthy, and run again it changes nothing.
fn assert_converged(lab: &Lab) {
    let out = setup(lab).output().expect("setup");
    assert!(out.status.success(), "{}", text(&out));
    let out = setup(lab).output().expect("setup again");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("setup complete: nothing changed"), "{said}");
    for c in ["openbao", "dns", "zot"] {
        assert!(
            said.lines()
                .any(|l| l.starts_with(c) && l.contains("healthy") && !l.contains("unhealthy")),
            "{c}: {said}"
        );
    }
    assert_independent_steps_overlap(lab);
    let runs = setup_runs(&lab.home);
    assert!(
        runs.iter().all(|r| r["state"] == "completed"),
        "every setup run completed: {runs:?}"
    );
}

#[test]
fn setup_killed_at_step_boundaries_resumes_and_converges_with_each_effect_once() {
    let (_, mut rng) = seeded();
    let phases = ["started", "effect", "completed"];
    // Full: one chain per phase, each on a fresh stack; else one chain with a phase
    // chosen per step, over a sample of the steps.
    let chains: Vec<Option<&str>> = if full() {
        phases.iter().map(|p| Some(*p)).collect()
    } else {
        vec![None]
    };
    for phase in chains {
        let lab = Lab::up("setup", 2);
        let creations = Creations::follow(&lab);
        let keys = step_keys(&lab);
        let mut points = Vec::new();
        for k in &keys {
            if phase.is_none() && !rng.random_bool(0.4) {
                continue;
            }
            let p = phase.unwrap_or_else(|| phases[rng.random_range(0..phases.len())]);
            points.push(format!("{k}@{p}"));
        }
        let started = Instant::now();
        let kills = killed_along(&lab, &points);
        eprintln!(
            "{kills} kills at {} chosen points in {:?}: {points:?}",
            points.len(),
            started.elapsed()
        );
        assert!(kills >= points.len() / 3, "{kills} kills of {points:?}");
        assert_converged(&lab);
        assert_effects_once(&lab, &creations);
    }
}

#[test]
fn setup_killed_at_random_moments_resumes_and_converges_with_each_effect_once() {
    let (seed, mut rng) = seeded();
    let wanted = if full() { 30 } else { 4 };
    let lab = Lab::up("setuprand", 1);
    let creations = Creations::follow(&lab);
    let mut kills = 0;
    for round in 0..(wanted * 3) {
        if kills >= wanted {
            break;
        }
        let mut child = setup(&lab)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("setup");
        // Later rounds get longer, so the setup eventually gets through.
        let delay = Duration::from_millis(rng.random_range(200..(1500 + 700 * round as u64)));
        let deadline = Instant::now() + delay;
        let mut status = None;
        while Instant::now() < deadline && status.is_none() {
            status = child.try_wait().expect("try_wait");
            std::thread::sleep(Duration::from_millis(20));
        }
        match status {
            // Done before the kill came: the kills so far must still have converged.
            Some(s) => {
                assert!(s.success(), "round {round}: {s:?}");
                break;
            }
            None => {
                kill(&mut child);
                kills += 1;
            }
        }
    }
    eprintln!("{kills} kills at random moments (seed {seed})");
    assert!(kills >= 1, "no kill landed while the setup ran");
    assert_converged(&lab);
    assert_effects_once(&lab, &creations);
}

#[test]
fn a_config_that_does_not_read_stops_setup_before_any_change() {
    let home = Home::new();
    let config = home.scratch().join("stack.yaml");
    std::fs::write(
        &config,
        "hosts:\n  - name: a\n    address: 10.77.3.5\n    user: admin\n    colour: blue\n",
    )
    .expect("write");
    let out = home
        .cmd(&["--config", config.to_str().expect("utf8"), "setup", "--yes"])
        .output()
        .expect("setup");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("stack.yaml") && said.contains("line 5") && said.contains("colour"),
        "names the file, line and field: {said}"
    );
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        home.runs().is_empty(),
        "a run was started: {:?}",
        home.runs()
    );
    // Nothing to resume, said plainly.
    let good = home.scratch().join("empty.yaml");
    std::fs::write(&good, "hosts: []\n").expect("write");
    let out = home
        .cmd(&[
            "--config",
            good.to_str().expect("utf8"),
            "setup",
            "--resume",
        ])
        .output()
        .expect("setup --resume");
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("no unfinished setup"), "{said}");
}

/// The infrastructure host cut off its network for 30 s once the stack's installs have
/// begun: the setup rides it out on its retries and completes with nobody's help, each
/// effect once.
#[test]
fn setup_survives_the_infrastructure_host_cut_off_for_30_s() {
    let lab = Lab::up("setupcut", 1);
    let creations = Creations::follow(&lab);
    let started = Instant::now();
    // Its output goes to a file: a pipe nobody reads while the host is cut would fill.
    let log = lab.home.scratch().join("setup.log");
    let file = std::fs::File::create(&log).expect("log");
    let mut child = setup(&lab)
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .expect("setup");
    // Until the run is in its stack phase (bounded: the hosts' phase takes seconds).
    let deadline = Instant::now() + Duration::from_secs(180);
    let in_stack = loop {
        let runs = setup_runs(&lab.home);
        let stack = runs
            .last()
            .and_then(|r| r["run"].as_str())
            .is_some_and(|run| {
                step_states(&lab.home, run)
                    .keys()
                    .any(|k| k.starts_with("stack/") && k != "stack/read")
            });
        if stack || Instant::now() > deadline {
            break stack;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(in_stack, "the setup never reached its stack phase");
    let host = &lab.names[0];
    lab.cut(host);
    let cut_at = started.elapsed();
    // The length of the outage is what this test is about.
    std::thread::sleep(Duration::from_secs(30));
    lab.restore(host);
    let end = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > end {
            kill(&mut child);
            panic!("the setup did not end within 600 s of the cut's end");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let said = std::fs::read_to_string(&log).expect("the setup's output");
    eprintln!(
        "cut at {cut_at:?} for 30 s; the setup ended after {:?}",
        started.elapsed()
    );
    assert!(status.success(), "{said}");
    assert!(said.contains("setup complete"), "{said}");
    assert_converged(&lab);
    assert_effects_once(&lab, &creations);
    assert_plans_what_is_missing(&lab);
}

/// `stack plan` of a complete setup plans nothing; with one container removed by hand, it
/// plans exactly that one; `foundry setup` makes it again, and the plan is empty again.
fn assert_plans_what_is_missing(lab: &Lab) {
    let config = lab.config.to_str().expect("utf8");
    let plans_of = |args: &[&str]| -> Vec<(String, Value)> {
        let mut all = vec!["--config", config];
        all.extend(args);
        lab.home
            .json(&all)
            .into_iter()
            .map(|p| {
                (
                    p["component"].as_str().unwrap_or("?").to_string(),
                    p["plan"].clone(),
                )
            })
            .collect()
    };
    let plans = || plans_of(&["stack", "plan"]);
    let empty = serde_json::json!([]);
    let before = plans();
    assert_eq!(before.len(), 3, "{before:?}");
    assert!(before.iter().all(|(_, p)| *p == empty), "{before:?}");
    let zot = format!("foundry-lab-{}-zot", lab.name);
    let removed = docker(&["rm", "-f", &zot]);
    assert!(removed.status.success(), "{removed:?}");
    let after = plans();
    for (component, plan) in &after {
        let expected = match component.as_str() {
            "zot" => serde_json::json!([format!("create container {zot}")]),
            _ => empty.clone(),
        };
        assert_eq!(*plan, expected, "{component}: {after:?}");
    }
    // `setup --dry-run` plans the same, and changes nothing.
    assert_eq!(plans_of(&["setup", "--dry-run"]), after);
    assert_eq!(plans(), after);
    let out = setup(lab).output().expect("setup");
    assert!(out.status.success(), "{}", text(&out));
    assert!(plans().iter().all(|(_, p)| *p == empty));
}
