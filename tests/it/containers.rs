//! The container activities against the real Docker Engine on this machine: each answer
//! path (404 then create, 409 on a concurrent create, 304 on start of a running
//! container, a changed spec) hit for real.

use std::collections::BTreeMap;

use foundry_activities::container::{
    ContainerSpec, EnsureContainer, EnsureImage, EnsureNetwork, RemoveContainer,
};
use foundry_core::{Activity, ActivityCx};
use foundry_tests::docker::{Cleanup, engine, test_image, unique};

fn cx() -> ActivityCx {
    ActivityCx::standalone("test")
}

fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_are_created_kept_started_and_recreated_on_change() {
    let image = test_image();
    let mut cleanup = Cleanup::default();
    let name = unique("c");
    cleanup.containers.push(name.clone());
    let spec = ContainerSpec {
        name: name.clone(),
        image: image.to_string(),
        env: BTreeMap::from([("ROLE".into(), "one".into())]),
        ..ContainerSpec::default()
    };
    let ensure = EnsureContainer {
        endpoint: engine(),
        spec: spec.clone(),
    };

    // 404: created and started.
    assert_eq!(ensure.probe(&cx()).await.expect("probe"), None);
    let first = ensure.apply(&cx()).await.expect("create");
    assert!(first.created && !first.recreated, "{first:?}");
    assert_eq!(
        docker(&["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );

    // Same spec, running: kept; the start is answered 304, which is success.
    let again = ensure.apply(&cx()).await.expect("again");
    assert_eq!(
        (again.id.as_str(), again.created, again.recreated),
        (first.id.as_str(), false, false)
    );
    assert!(ensure.probe(&cx()).await.expect("probe").is_some());

    // Stopped: started again, same container.
    docker(&["stop", "-t", "1", &name]);
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

    // A changed spec: recreated, with the new hash on it.
    let mut changed = spec.clone();
    changed.env.insert("ROLE".into(), "two".into());
    let ensure2 = EnsureContainer {
        endpoint: engine(),
        spec: changed.clone(),
    };
    assert_eq!(ensure2.probe(&cx()).await.expect("probe"), None);
    let replaced = ensure2.apply(&cx()).await.expect("recreate");
    assert!(
        replaced.recreated && replaced.id != first.id,
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
        endpoint: engine(),
        name: name.clone(),
    };
    assert!(remove.apply(&cx()).await.expect("remove"));
    assert!(!remove.apply(&cx()).await.expect("remove again"));
    assert_eq!(remove.probe(&cx()).await.expect("probe"), Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_end_in_one_container() {
    let image = test_image();
    let mut cleanup = Cleanup::default();
    let name = unique("race");
    cleanup.containers.push(name.clone());
    let ensure = EnsureContainer {
        endpoint: engine(),
        spec: ContainerSpec {
            name: name.clone(),
            image: image.to_string(),
            ..ContainerSpec::default()
        },
    };
    // All inspect (404), all create: one wins, the others get 409 and take its container.
    let tasks: Vec<_> = (0..6)
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn networks_are_looked_up_by_name_and_never_duplicated() {
    engine();
    let mut cleanup = Cleanup::default();
    let name = unique("net");
    cleanup.networks.push(name.clone());
    let ensure = EnsureNetwork {
        endpoint: engine(),
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
    // Engine 20.10 may create duplicates under a race; every call still names the first.
    assert!(outputs.iter().all(|o| o.id == outputs[0].id), "{outputs:?}");
    let again = ensure.apply(&cx()).await.expect("again");
    assert_eq!(again.id, outputs[0].id);
    assert!(!again.created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_a_clear_permanent_error() {
    let image = EnsureImage {
        endpoint: engine(),
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
        endpoint: engine(),
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
async fn an_engine_that_does_not_answer_is_named() {
    let ensure = EnsureContainer {
        endpoint: foundry_activities::container::Endpoint::Local {
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
