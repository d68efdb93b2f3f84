//! Images as on a real server: a lab host with a Docker Engine of its own (`foundry lab
//! up --own-engine`), so an install crosses SSH to an Engine that has nothing of this
//! machine's. The registry (`foundry component install zot`, the lab's stand-in image
//! built here) reaches that Engine by the load path: the image is there with the id it has
//! here, the host's Engine saw one `load` and no pull, and every container it ever ran is
//! the registry's (a build would have run its steps in containers of its own); this
//! machine's Engine runs no registry of the lab's; the registry answers at its lab address.
//! A second install loads nothing (the load step's probe finds the image). Pulls through
//! that Engine: an image pushed to the lab's registry is pulled through it as a mirror,
//! under its upstream name, once; an image its registry does not have is a permanent error
//! naming the image and the Engine; a registry it cannot reach is a transient one that
//! says so. And the lab
//! as it is otherwise, one Engine for both: a load finds the image there and moves nothing.

use std::time::{SystemTime, UNIX_EPOCH};

use foundry_activities::container::{Endpoint, ImageOutput, LoadImage, PullImage};
use foundry_activities::registry::RegistryClient;
use foundry_core::{Activity, ActivityCx};
use foundry_tests::docker::{docker, engine, test_image};
use foundry_tests::lab::Lab;
use foundry_workflows::registry::REGISTRY_IMAGE;

fn cx() -> ActivityCx {
    ActivityCx::standalone("test")
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker ARGS` run by the host's own Engine, inside its container, expecting success.
fn inside(container: &str, args: &[&str]) -> String {
    let mut all = vec!["exec", container, "docker"];
    all.extend(args);
    let out = docker(&all);
    foundry_tests::assert_success(&out, &format!("docker {args:?} on the host's Engine"));
    text(&out)
}

/// What the host's Engine did since it started, as `TYPE ACTION NAME` lines. `--until`
/// is in whole seconds, so it is a second ahead (the Engine streams until then): what
/// happened in the current second is included.
fn events(container: &str) -> Vec<String> {
    let until = (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 1)
    .to_string();
    inside(
        container,
        &[
            "events",
            "--since",
            "0",
            "--until",
            &until,
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ],
    )
    .lines()
    .map(str::to_string)
    .collect()
}

fn image_loads(events: &[String]) -> usize {
    events
        .iter()
        .filter(|e| e.starts_with("image load"))
        .count()
}

#[test]
fn lab_own_engine_host_gets_the_registry_image_by_the_load_path_once() {
    let lab = Lab::up_with("re", 1, &["--own-engine"]);
    let host = lab.container("host-1");
    let config = lab.config.display().to_string();
    let stack = foundry_workflows::config::load(&lab.config).expect("the lab's config");
    let zot = stack
        .components
        .as_ref()
        .map(|c| c.zot.clone())
        .expect("the lab's config places the registry");
    let name = zot.name.clone().expect("its container's name");
    let address = zot.address.as_ref().map(|a| a.value).expect("its address");

    assert_eq!(
        inside(&host, &["images", "-q"]),
        "",
        "the host's Engine starts empty"
    );
    let first = lab
        .home
        .ok(&["--config", &config, "component", "install", "zot"]);
    assert!(first.contains("container created"), "{first}");

    // The image on the host's Engine is this machine's, loaded: same id, one load, no pull,
    // and no container but the registry's (a build runs each step in a container).
    let here = text(&docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        REGISTRY_IMAGE,
    ]));
    assert!(here.starts_with("sha256:"), "{here}");
    let there = inside(
        &host,
        &["image", "inspect", "-f", "{{.Id}}", REGISTRY_IMAGE],
    );
    assert_eq!(there, here);
    let seen = events(&host);
    assert_eq!(image_loads(&seen), 1, "{seen:#?}");
    assert!(
        !seen.iter().any(|e| e.starts_with("image pull")),
        "{seen:#?}"
    );
    let containers: Vec<&String> = seen
        .iter()
        .filter(|e| e.starts_with("container "))
        .collect();
    assert!(!containers.is_empty(), "{seen:#?}");
    assert!(
        containers.iter().all(|e| e.ends_with(&format!(" {name}"))),
        "only the registry's container ran there: {containers:#?}"
    );
    assert_eq!(
        inside(&host, &["images", "-a", "--filter", "dangling=true", "-q"]),
        "",
        "no intermediate image of a build"
    );
    // It runs there, not here, and answers at its lab address from this machine.
    assert_eq!(
        inside(&host, &["inspect", "-f", "{{.State.Running}}", &name]),
        "true"
    );
    assert_eq!(
        text(&docker(&[
            "ps",
            "-a",
            "-q",
            "--filter",
            &format!("name=^{name}$")
        ])),
        "",
        "this machine's Engine has no container of the registry"
    );
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let registry = RegistryClient::new(&format!("http://{address}:5000")).expect("a client");
    let version = rt.block_on(registry.ping()).expect("the registry answers");
    assert_eq!(version.as_deref(), Some("registry/2.0"));

    // Again: nothing changed, nothing loaded.
    let second = lab
        .home
        .ok(&["--config", &config, "component", "install", "zot"]);
    assert!(second.contains("nothing changed"), "{second}");
    let seen = events(&host);
    assert_eq!(image_loads(&seen), 1, "{seen:#?}");

    // Pulls through the host's Engine (which takes the lab's registry over plain HTTP).
    let endpoint = Endpoint::ssh(lab.targets[0].clone());
    let mirror = format!("{address}:5000");
    pulled_through_the_mirror(&rt, &host, &endpoint, &mirror);
    let absent = format!("{address}:5000/foundry/absent:1");
    let pull = PullImage {
        endpoint: endpoint.clone(),
        image: absent.clone(),
        mirror: None,
    };
    let err = rt
        .block_on(pull.apply(&cx()))
        .expect_err("not in the registry");
    assert!(!err.transient, "{}", err.message);
    assert!(
        err.message.contains(&absent)
            && err.message.contains(&endpoint.to_string())
            && err.message.contains("hint:"),
        "{}",
        err.message
    );
    // The same image named by its upstream registry, through the lab's registry as the
    // mirror: the mirror's answer decides, and the error names what was pulled.
    let mirrored = PullImage {
        endpoint: endpoint.clone(),
        image: "ghcr.io/foundry/absent:1".into(),
        mirror: Some(mirror.clone()),
    };
    let err = rt
        .block_on(mirrored.apply(&cx()))
        .expect_err("not in the mirror");
    assert!(!err.transient, "{}", err.message);
    assert!(err.message.contains(&absent), "{}", err.message);
    let unreachable = PullImage {
        endpoint: endpoint.clone(),
        image: "127.0.0.1:1/foundry/absent:1".into(),
        mirror: None,
    };
    let err = rt
        .block_on(unreachable.apply(&cx()))
        .expect_err("no registry there");
    assert!(err.transient, "{}", err.message);
    assert!(
        err.message.contains("127.0.0.1:1/foundry/absent:1")
            && err.message.contains(&endpoint.to_string())
            && err.message.contains("connection refused")
            && err.message.contains("image_source: load"),
        "{}",
        err.message
    );
}

/// An image loaded into the host's Engine and pushed from there to the lab's registry,
/// then removed: named by an upstream registry, it is pulled through the lab's registry
/// as the mirror, with the same id, under its own name; then found, not pulled again.
fn pulled_through_the_mirror(
    rt: &tokio::runtime::Runtime,
    host: &str,
    endpoint: &Endpoint,
    mirror: &str,
) {
    let load = LoadImage {
        source: engine(),
        target: endpoint.clone(),
        image: test_image().into(),
    };
    let loaded = rt.block_on(load.apply(&cx())).expect("loaded");
    assert!(loaded.transferred);
    let here = text(&docker(&[
        "image",
        "inspect",
        "-f",
        "{{.Id}}",
        test_image(),
    ]));
    assert_eq!(loaded.id, here);
    let pushed = format!("{mirror}/foundry/busybox:1");
    inside(host, &["tag", test_image(), &pushed]);
    inside(host, &["push", &pushed]);
    inside(host, &["rmi", test_image(), &pushed]);

    let upstream = "ghcr.io/foundry/busybox:1";
    let pull = PullImage {
        endpoint: endpoint.clone(),
        image: upstream.into(),
        mirror: Some(mirror.into()),
    };
    assert_eq!(pull.pulled().expect("a reference"), pushed);
    let first = rt
        .block_on(pull.apply(&cx()))
        .expect("pulled through the mirror");
    assert!(first.transferred);
    assert_eq!(first.id, here);
    assert_eq!(
        inside(host, &["image", "inspect", "-f", "{{.Id}}", upstream]),
        here
    );
    let again = rt.block_on(pull.apply(&cx())).expect("found");
    assert!(!again.transferred);
    assert_eq!(again.id, here);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_into_the_engine_that_has_the_image_moves_nothing() {
    let load = LoadImage {
        source: engine(),
        target: engine(),
        image: test_image().into(),
    };
    let ImageOutput { id, transferred } = load.apply(&cx()).await.expect("found");
    assert!(id.starts_with("sha256:"), "{id}");
    assert!(!transferred);

    let missing = LoadImage {
        source: engine(),
        target: engine(),
        image: "foundry-no-such-image:0".into(),
    };
    let err = missing.apply(&cx()).await.expect_err("nowhere");
    assert!(!err.transient);
    assert!(
        err.message.contains("foundry-no-such-image:0") && err.message.contains("hint:"),
        "{}",
        err.message
    );
}
