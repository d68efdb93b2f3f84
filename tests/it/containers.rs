//! The container activities against the real Docker Engine, through both endpoints: the
//! local socket, and the same Engine's socket on a lab's engine host reached through SSH.
//! Each answer path (404 then create, 409 on a concurrent create, a running container left
//! alone, a changed spec, a network looked up by name) is one function taking the
//! endpoint, hit for real through each. The lab's containers share the Engine with the
//! test's: test containers have unique names and are removed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use foundry_activities::container::{
    ContainerFile, ContainerSpec, Endpoint, EnsureContainer, EnsureImage, EnsureNetwork,
    RemoveContainer,
};
use foundry_core::{Activity, ActivityCx};
use foundry_tests::docker::{Cleanup, engine, test_image, unique};
use foundry_tests::lab::Lab;

fn cx() -> ActivityCx {
    ActivityCx::standalone("test")
}

/// The docker CLI on this machine: an independent witness of the one Engine both
/// endpoints reach.
fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Now, as `docker events --since` reads it (seconds since the epoch, with nanoseconds).
fn engine_clock() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}

/// The actions the Engine recorded on container `name` from `since` until now (the Engine
/// records an action before it answers the request).
fn container_events(name: &str, since: &str) -> Vec<String> {
    let until = engine_clock();
    docker(&[
        "events",
        "--since",
        since,
        "--until",
        &until,
        "--filter",
        &format!("container={name}"),
        "--format",
        "{{.Action}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// 404 then create, its files put in before it starts; a running one as specified left
/// alone (no file put, no start); a stopped one started again, its files put first; a
/// changed spec recreated; removal, then absent is fine.
async fn created_kept_started_and_recreated_on_change(endpoint: &Endpoint) {
    let image = test_image();
    let mut cleanup = Cleanup::default();
    let name = unique("c");
    cleanup.containers.push(name.clone());
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("role.conf");
    std::fs::write(&source, "role=one\n").expect("file");
    let spec = ContainerSpec {
        name: name.clone(),
        image: image.to_string(),
        env: BTreeMap::from([("ROLE".into(), "one".into())]),
        files: BTreeMap::from([(
            "/etc/role.conf".into(),
            ContainerFile::of(&source, 0o600).expect("digest"),
        )]),
        ..ContainerSpec::default()
    };
    let ensure = EnsureContainer {
        endpoint: endpoint.clone(),
        spec: spec.clone(),
    };

    // 404: created and started.
    assert_eq!(ensure.probe(&cx()).await.expect("probe"), None);
    let first = ensure.apply(&cx()).await.expect("create");
    assert!(
        first.created && !first.recreated && !first.concurrent,
        "{first:?}"
    );
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );

    assert_eq!(
        docker(&["exec", &name, "cat", "/etc/role.conf"]),
        "role=one"
    );

    // Same spec, running: kept, and nothing is asked of it but its inspection: the
    // Engine's events show no file put into it and no start.
    let since = engine_clock();
    let again = ensure.apply(&cx()).await.expect("again");
    assert_eq!(
        (again.id.as_str(), again.created, again.recreated),
        (first.id.as_str(), false, false)
    );
    assert!(ensure.probe(&cx()).await.expect("probe").is_some());
    let actions = container_events(&name, &since);
    assert!(
        !actions
            .iter()
            .any(|a| a == "extract-to-dir" || a == "start"),
        "a running container as specified was touched: {actions:?}"
    );

    // Stopped: started again, same container, its files put again first.
    docker(&["stop", "-t", "1", &name]);
    let since = engine_clock();
    assert_eq!(
        ensure.probe(&cx()).await.expect("probe"),
        None,
        "a stopped container is not in place"
    );
    let restarted = ensure.apply(&cx()).await.expect("restart");
    assert_eq!(restarted.id, first.id);
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );
    let actions = container_events(&name, &since);
    assert!(
        actions.iter().any(|a| a == "extract-to-dir") && actions.iter().any(|a| a == "start"),
        "a stopped container's files put and it started: {actions:?}"
    );

    // A changed spec: recreated, with the new hash on it.
    let mut changed = spec.clone();
    changed.env.insert("ROLE".into(), "two".into());
    let ensure2 = EnsureContainer {
        endpoint: endpoint.clone(),
        spec: changed.clone(),
    };
    assert_eq!(ensure2.probe(&cx()).await.expect("probe"), None);
    let replaced = ensure2.apply(&cx()).await.expect("recreate");
    assert!(
        replaced.recreated && !replaced.created && replaced.id != first.id,
        "{replaced:?}"
    );
    let label = docker(&[
        "inspect",
        "-f",
        "{{index .Config.Labels \"foundry.spec-hash\"}}",
        &name,
    ]);
    assert_eq!(label, changed.hash());
    let env = docker(&[
        "inspect",
        "-f",
        "{{range .Config.Env}}{{println .}}{{end}}",
        &name,
    ]);
    assert!(env.lines().any(|l| l == "ROLE=two"), "{env}");

    // Removed, then absent is fine.
    let remove = RemoveContainer {
        endpoint: endpoint.clone(),
        name: name.clone(),
    };
    assert!(remove.apply(&cx()).await.expect("remove"));
    assert!(!remove.apply(&cx()).await.expect("remove again"));
    assert_eq!(remove.probe(&cx()).await.expect("probe"), Some(false));
}

/// Concurrent creates end in one container; a caller answered 409 takes the winner's. A
/// round whose callers happen not to collide proves nothing, so rounds go on (a bounded
/// number) until one shows a 409 taken.
async fn concurrent_creates_end_in_one_container(endpoint: &Endpoint) {
    const ROUNDS: usize = 6;
    const CALLERS: usize = 6;
    let image = test_image();
    for round in 1..=ROUNDS {
        let mut cleanup = Cleanup::default();
        let name = unique("race");
        cleanup.containers.push(name.clone());
        let ensure = EnsureContainer {
            endpoint: endpoint.clone(),
            spec: ContainerSpec {
                name: name.clone(),
                image: image.to_string(),
                ..ContainerSpec::default()
            },
        };
        // All inspect (404), all create: one wins, the others get 409 and take its
        // container.
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let ensure = ensure.clone();
                tokio::spawn(async move { ensure.apply(&cx()).await })
            })
            .collect();
        let mut outputs = Vec::new();
        for t in tasks {
            outputs.push(t.await.expect("task").expect("ensure"));
        }
        let created = outputs.iter().filter(|o| o.created).count();
        assert_eq!(created, 1, "exactly one call created it: {outputs:?}");
        assert!(outputs.iter().all(|o| o.id == outputs[0].id), "{outputs:?}");
        let listed = docker(&["ps", "-aq", "--filter", &format!("name=^{name}$")]);
        assert_eq!(listed.lines().count(), 1, "{listed}");
        if outputs.iter().any(|o| o.concurrent) {
            return;
        }
        eprintln!("round {round}: no caller was answered 409; again");
    }
    panic!("no caller was answered 409 in {ROUNDS} rounds of {CALLERS} concurrent creates");
}

/// Concurrent creates of one network: Engine 20.10 would make one network per caller, so
/// they take turns; exactly one creates it, every caller names it, and it is listed once.
async fn networks_are_looked_up_by_name_and_never_duplicated(endpoint: &Endpoint) {
    let mut cleanup = Cleanup::default();
    let name = unique("net");
    cleanup.networks.push(name.clone());
    let ensure = EnsureNetwork {
        endpoint: endpoint.clone(),
        name: name.clone(),
        subnet: None,
        labels: Default::default(),
    };
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let ensure = ensure.clone();
            tokio::spawn(async move { ensure.apply(&cx()).await })
        })
        .collect();
    let mut outputs = Vec::new();
    for t in tasks {
        outputs.push(t.await.expect("task").expect("ensure network"));
    }
    assert!(outputs.iter().all(|o| o.id == outputs[0].id), "{outputs:?}");
    assert_eq!(
        outputs.iter().filter(|o| o.created).count(),
        1,
        "{outputs:?}"
    );
    let listed = docker(&["network", "ls", "-q", "--filter", &format!("name=^{name}$")]);
    assert_eq!(
        listed.lines().count(),
        1,
        "duplicates are removed: {listed}"
    );
    let again = ensure.apply(&cx()).await.expect("again");
    assert_eq!(again.id, outputs[0].id);
    assert!(!again.created);
}

async fn a_missing_image_is_a_clear_permanent_error(endpoint: &Endpoint) {
    let image = EnsureImage {
        endpoint: endpoint.clone(),
        name: "foundry-no-such-image:0".into(),
    };
    let err = image.apply(&cx()).await.expect_err("missing");
    assert!(!err.transient);
    assert!(
        err.message.contains("foundry-no-such-image:0"),
        "{}",
        err.message
    );
    let present = EnsureImage {
        endpoint: endpoint.clone(),
        name: test_image().into(),
    };
    assert!(
        present
            .apply(&cx())
            .await
            .expect("present")
            .id
            .starts_with("sha256:")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_containers_are_created_kept_started_and_recreated_on_change() {
    created_kept_started_and_recreated_on_change(&engine()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_concurrent_creates_end_in_one_container() {
    concurrent_creates_end_in_one_container(&engine()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_networks_are_looked_up_by_name_and_never_duplicated() {
    networks_are_looked_up_by_name_and_never_duplicated(&engine()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_a_missing_image_is_a_clear_permanent_error() {
    a_missing_image_is_a_clear_permanent_error(&engine()).await;
}

/// Every answer path again, through SSH to a lab's engine host (one lab for all of them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_lab_every_engine_answer_path_through_ssh() {
    let lab = Lab::up("dock", 1);
    let endpoint = lab.engine();
    assert!(
        matches!(endpoint, Endpoint::Ssh { .. }),
        "through SSH: {endpoint:?}"
    );
    created_kept_started_and_recreated_on_change(&endpoint).await;
    concurrent_creates_end_in_one_container(&endpoint).await;
    networks_are_looked_up_by_name_and_never_duplicated(&endpoint).await;
    a_missing_image_is_a_clear_permanent_error(&endpoint).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_that_does_not_answer_is_named() {
    let ensure = EnsureContainer {
        endpoint: Endpoint::Local {
            socket: "/nonexistent/docker.sock".into(),
        },
        spec: ContainerSpec {
            name: "x".into(),
            image: "y".into(),
            ..ContainerSpec::default()
        },
    };
    let err = ensure.apply(&cx()).await.expect_err("no engine");
    assert!(err.transient, "worth another attempt");
    assert!(
        err.message.contains("/nonexistent/docker.sock"),
        "{}",
        err.message
    );
}

/// Through SSH: a socket that is not there is a clear permanent error naming the host and
/// the path; a host cut off its network is a transient error within a bound, whether the
/// connection is made after the cut or was open before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_lab_a_wrong_socket_is_named_and_a_cut_host_is_transient() {
    let lab = Lab::up("dock", 1);
    let (host, target) = lab.engine_host();
    let spec = ContainerSpec {
        name: unique("never"),
        image: test_image().into(),
        ..ContainerSpec::default()
    };
    let ensure = |endpoint: Endpoint| EnsureContainer {
        endpoint,
        spec: spec.clone(),
    };

    let wrong = Endpoint::Ssh {
        target: target.clone(),
        socket: "/var/run/foundry-no-such.sock".into(),
    };
    let err = ensure(wrong).apply(&cx()).await.expect_err("no socket");
    assert!(!err.transient, "a wrong path stays wrong: {err:?}");
    for needle in [
        target.to_string().as_str(),
        "/var/run/foundry-no-such.sock",
        "hint:",
    ] {
        assert!(err.message.contains(needle), "{needle}: {}", err.message);
    }

    // An Engine client made before the cut: its next request fails once the connection is
    // found dead (SSH keepalive, about 15 s), not after the Engine request timeout (120 s).
    // The bound is only that it does not hang: generous for a loaded machine.
    let endpoint = Endpoint::ssh(target.clone());
    let before = endpoint.connect().await.expect("connected before the cut");
    lab.cable(&host, false);
    let started = Instant::now();
    let pinged = before.ping().await;
    assert!(pinged.is_err(), "a cut host answered: {pinged:?}");
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "waited for the request timeout: {:?}",
        started.elapsed()
    );

    // A connection made after the cut: a transient error within the connect deadline
    // (10 s), not the request timeout; again only a bound against hanging.
    let started = Instant::now();
    let err = ensure(endpoint.clone())
        .apply(&cx())
        .await
        .expect_err("cut off");
    assert!(err.transient, "worth another attempt: {err:?}");
    assert!(
        err.message.contains(&target.to_string()) && err.message.contains("/var/run/docker.sock"),
        "{}",
        err.message
    );
    assert!(
        started.elapsed() < Duration::from_secs(100),
        "waited for the request timeout: {:?}",
        started.elapsed()
    );

    // Restored: the Engine answers through it again.
    lab.cable(&host, true);
    assert_eq!(
        ensure(endpoint).probe(&cx()).await.expect("restored"),
        None,
        "the container was never made"
    );
    assert_eq!(
        docker(&["ps", "-aq", "--filter", &format!("name=^{}$", spec.name)]),
        ""
    );
}
