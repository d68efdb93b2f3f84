//! `registry-install` through the real `foundry` binary against a real registry: the lab's
//! stand-in for Zot (whose upstream image cannot be pulled here), which keeps Zot's image
//! contract (`zot serve /etc/zot/config.json`, Zot's `config.json`, port 5000,
//! `/var/lib/registry`) with Debian's `docker-registry` behind it. It runs in a container on
//! a Docker network this test makes on a /24 of 10.77.251.0-10.77.254.0 (the other tests
//! take theirs from 10.77.1.0-10.77.250.0), published on a free loopback port. Installed
//! from nothing (the container runs Zot's command with the `config.json` Foundry wrote),
//! again (nothing changes), then used with the real `docker` client: an image pushed to
//! `127.0.0.1:<port>` (the daemon speaks plain HTTP to loopback registries without any
//! configuration), found in the catalog and tags over the published port and over the
//! container's own address, pulled back with the same id and digest; `foundry registry
//! status` answers from the live container and API. Last, the stand-in refuses a
//! `config.json` with a key it does not translate.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;

use foundry_activities::registry::RegistryClient;
use foundry_tests::docker::{Cleanup, engine, test_image, unique};
use foundry_tests::{Home, json_lines};
use serde_json::{Value, json};

use foundry_tests::docker::docker;

fn ok(out: Output, what: &str) -> String {
    foundry_tests::assert_success(&out, what);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The lab's base image the registry image is layered on, made by `foundry lab up` when
/// it is missing.
fn base_image() {
    engine();
    let base = foundry_workflows::lab::LAB_IMAGE;
    if !docker(&["image", "inspect", base]).status.success() {
        drop(foundry_tests::lab::Lab::up("bi", 1));
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The install's Docker objects, removed when dropped: the container, then its volume and
/// the image tag pushed from here, then the network (by the `Cleanup`).
struct Objects {
    container: String,
    volume: String,
    tag: String,
    _cleanup: Cleanup,
}

impl Drop for Objects {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", "-v", &self.container]);
        let _ = docker(&["volume", "rm", "-f", &self.volume]);
        let _ = docker(&["image", "rm", &self.tag]);
    }
}

/// A network of this test's own on the first free /24 of 10.77.251-254: its name and the
/// first three octets.
fn network(name: &str) -> String {
    let mut last = String::new();
    for third in 251..=254 {
        let prefix = format!("10.77.{third}");
        let out = docker(&[
            "network",
            "create",
            "--subnet",
            &format!("{prefix}.0/24"),
            name,
        ]);
        if out.status.success() {
            return prefix;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
    }
    panic!("no free subnet in 10.77.251.0-10.77.254.0 for the test network: {last}");
}

fn client(addr: &str) -> RegistryClient {
    RegistryClient::new(addr).expect("a registry client")
}

/// The container's id and when it last started: both unchanged when nothing was changed.
fn started(container: &str) -> String {
    ok(
        docker(&["inspect", "-f", "{{.Id}} {{.State.StartedAt}}", container]),
        "docker inspect",
    )
}

/// The digest `docker push` or `docker pull` printed (`digest: sha256:…`).
fn digest_in(printed: &str) -> String {
    printed
        .split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .unwrap_or_else(|| panic!("no digest in: {printed}"))
        .to_string()
}

#[test]
fn registry_install_then_again_then_push_list_and_pull_through_it() {
    base_image();
    let busybox = test_image();
    foundry_tests::foundry_bin();
    let home = Home::new();
    let name = unique("registry");
    let net = unique("registry-net");
    let port = free_port();
    let published = format!("http://127.0.0.1:{port}");
    let repo = "foundry/busybox";
    let tag = format!("127.0.0.1:{port}/{repo}:1");
    let objects = Objects {
        container: name.clone(),
        volume: format!("{name}-data"),
        tag: tag.clone(),
        _cleanup: Cleanup {
            containers: vec![name.clone()],
            networks: vec![net.clone()],
        },
    };
    let prefix = network(&net);
    let addr = format!("http://{prefix}.30:5000");
    let input: PathBuf = home.scratch().join("registry.json");
    let value = json!({
        "name": name,
        "image": foundry_workflows::registry::REGISTRY_IMAGE,
        "build_image": true,
        "network": net,
        "ipv4": format!("{prefix}.30"),
        "volume": objects.volume,
        "publish": format!("127.0.0.1:{port}"),
    });
    std::fs::write(&input, value.to_string()).expect("writing the input");
    let input = input.to_str().expect("utf8");

    // From nothing, through `workflow start`: every step runs, the last waits for `/v2/`.
    let events = json_lines(
        ok(
            home.run(&[
                "workflow",
                "start",
                "registry-install",
                "--input",
                input,
                "--output",
                "json",
            ]),
            "the first install",
        )
        .as_bytes(),
    );
    let completed: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_completed")
        .filter_map(|e| e["step"].as_str())
        .collect();
    for step in ["image-build", "image", "container", "ready"] {
        assert!(
            completed
                .iter()
                .any(|s| s.starts_with(&format!("registry/{step}"))),
            "registry/{step} did not complete: {events:?}"
        );
    }
    assert_eq!(
        events.last().map(|e| &e["state"]),
        Some(&json!("completed")),
        "{events:?}"
    );
    let before = started(&name);
    zots_contract(&home, &name);

    // Again, through `foundry registry install`: its output says nothing changed, and the
    // container is the same one, not restarted.
    let again = json_lines(
        ok(
            home.run(&["registry", "install", "--input", input, "--output", "json"]),
            "the second install",
        )
        .as_bytes(),
    );
    let output: &Value = again.last().expect("an output line");
    assert_eq!(output["container_created"], false, "{output}");
    assert_eq!(output["container_recreated"], false, "{output}");
    assert_eq!(output["addr"], addr.as_str(), "{output}");
    assert_eq!(output["published"], published.as_str(), "{output}");
    assert_eq!(
        started(&name),
        before,
        "the second install touched the container"
    );

    // Push an image built here with the docker client to the published port.
    ok(docker(&["tag", busybox, &tag]), "docker tag");
    let pushed = digest_in(&ok(docker(&["push", &tag]), "docker push"));
    let original = ok(
        docker(&["image", "inspect", "-f", "{{.Id}}", busybox]),
        "docker image inspect",
    );

    // The catalog and tags, over the published port and over the container's address.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    for at in [&published, &addr] {
        let registry = client(at);
        let (version, catalog, tags) = rt.block_on(async {
            (
                registry.ping().await.expect("GET /v2/"),
                registry.catalog().await.expect("the catalog"),
                registry.tags(repo).await.expect("the tags"),
            )
        });
        assert_eq!(version.as_deref(), Some("registry/2.0"), "at {at}");
        assert_eq!(catalog, [repo], "at {at}");
        assert_eq!(tags, ["1"], "at {at}");
        let unknown = rt
            .block_on(registry.tags("foundry/nothing"))
            .expect_err("an unknown repository");
        assert!(
            unknown.message.contains("404") && unknown.message.contains("NAME_UNKNOWN"),
            "{}",
            unknown.message
        );
    }

    // Stored where Zot's `storage.rootDirectory` says, on the volume.
    ok(
        docker(&[
            "exec",
            &name,
            "test",
            "-d",
            &format!("/var/lib/registry/docker/registry/v2/repositories/{repo}"),
        ]),
        "the repository in /var/lib/registry",
    );

    // Without the local tag, the image comes back from the registry, the same.
    ok(docker(&["image", "rm", &tag]), "docker image rm");
    assert!(!docker(&["image", "inspect", &tag]).status.success());
    let pulled = digest_in(&ok(docker(&["pull", &tag]), "docker pull"));
    assert_eq!(pulled, pushed, "the digest pulled is not the one pushed");
    let back = ok(
        docker(&["image", "inspect", "-f", "{{.Id}}", &tag]),
        "docker image inspect",
    );
    assert_eq!(
        back, original,
        "the image pulled back is not the one pushed"
    );
    let digests = ok(
        docker(&["image", "inspect", "-f", "{{json .RepoDigests}}", &tag]),
        "docker image inspect",
    );
    assert!(
        digests.contains(&format!("127.0.0.1:{port}/{repo}@{pushed}")),
        "{digests}"
    );

    // `status` asks the container and the registry, now.
    let status = home.json(&["registry", "status", "--name", &name, "--addr", &published]);
    let status = status.first().expect("a status line");
    assert_eq!(status["container"], "running", "{status}");
    assert_eq!(status["api"], true, "{status}");
    assert_eq!(status["api_version"], "registry/2.0", "{status}");
    assert_eq!(status["repositories"], json!([repo]), "{status}");
    assert_eq!(status["error"], Value::Null, "{status}");

    // A stopped registry: its state, and why the API did not answer, naming the address.
    ok(docker(&["stop", "-t", "5", &name]), "docker stop");
    let status = home.json(&["registry", "status", "--name", &name, "--addr", &published]);
    let status = status.first().expect("a status line");
    assert_eq!(status["container"], "exited", "{status}");
    assert_eq!(status["api"], false, "{status}");
    assert!(
        status["error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("GET /v2/ at {published}"))),
        "{status}"
    );
    drop(objects);
    the_stand_in_refuses_what_it_does_not_translate(&name);
}

/// The container runs as upstream Zot's image would: the image's entrypoint, Zot's command
/// `serve /etc/zot/config.json`, no environment of Foundry's (nothing of docker-registry's
/// flags or `REGISTRY_*` variables), its storage on `/var/lib/registry`; the file at
/// `/etc/zot/config.json` is, byte for byte, the `config.json` Foundry wrote.
fn zots_contract(home: &Home, name: &str) {
    let inspected = ok(
        docker(&[
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .Mounts}}",
            name,
        ]),
        "docker inspect",
    );
    assert!(
        inspected.starts_with(r#"["/usr/bin/zot"] ["serve","/etc/zot/config.json"] "#),
        "{inspected}"
    );
    assert!(
        inspected.contains(r#""Destination":"/var/lib/registry""#),
        "{inspected}"
    );
    let image_env = ok(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Env}}",
            foundry_workflows::registry::REGISTRY_IMAGE,
        ]),
        "docker image inspect",
    );
    let env = ok(
        docker(&["inspect", "-f", "{{json .Config.Env}}", name]),
        "docker inspect",
    );
    assert_eq!(
        env, image_env,
        "the container has an environment of its own"
    );
    assert!(!env.contains("REGISTRY_"), "{env}");
    let label = ok(
        docker(&[
            "image",
            "inspect",
            "-f",
            "{{index .Config.Labels \"org.opencontainers.image.description\"}}",
            foundry_workflows::registry::REGISTRY_IMAGE,
        ]),
        "docker image inspect",
    );
    assert!(label.contains("stand-in for Zot"), "{label}");

    let inside = ok(
        docker(&["exec", name, "cat", "/etc/zot/config.json"]),
        "docker exec cat",
    );
    let kept = home
        .path()
        .join("registry")
        .join(format!("{name}-config.json"));
    let written = std::fs::read_to_string(&kept).expect("the config.json Foundry wrote");
    assert_eq!(inside, written);
    let config: Value = serde_json::from_str(&inside).expect("config.json is JSON");
    assert_eq!(
        config["storage"]["rootDirectory"], "/var/lib/registry",
        "{config}"
    );
    assert_eq!(config["http"]["port"], "5000", "{config}");
    assert_eq!(config["http"]["address"], "0.0.0.0", "{config}");
    assert!(config["distSpecVersion"].is_string(), "{config}");

    // Each key the product writes reached docker-registry's config through the stand-in's
    // translation.
    let translated = ok(
        docker(&["exec", name, "cat", "/run/zot-stand-in/registry.yml"]),
        "docker exec cat",
    );
    for line in [
        "  level: info",
        r#"    rootdirectory: "/var/lib/registry""#,
        r#"  addr: "0.0.0.0:5000""#,
    ] {
        assert!(
            translated.lines().any(|l| l == line),
            "{line}: {translated}"
        );
    }
}

/// The stand-in, started as the product starts Zot (its default command, the file put in
/// through the Engine's archive API), exits non-zero naming a key it does not translate:
/// nothing Foundry writes can be silently ignored in the lab.
fn the_stand_in_refuses_what_it_does_not_translate(name: &str) {
    let good: Value = json!({
        "distSpecVersion": "1.1.1",
        "storage": { "rootDirectory": "/var/lib/registry" },
        "http": { "address": "0.0.0.0", "port": "5000", "compat": ["docker2s2"] },
        "log": { "level": "info" },
    });
    let with = |path: &[&str], value: Value| -> Value {
        let mut config = good.clone();
        let mut at = &mut config;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        config
    };
    let scratch = tempfile::tempdir().expect("tempdir");
    for (config, says) in [
        (
            with(&["extensions"], json!({"search": {"enable": true}})),
            "unsupported key `extensions`",
        ),
        (
            with(&["storage", "dedupe"], json!(true)),
            "unsupported key `storage.dedupe`",
        ),
        (
            with(&["http", "realm"], json!("zot")),
            "unsupported key `http.realm`",
        ),
        (
            with(&["log", "output"], json!("/tmp/zot.log")),
            "unsupported key `log.output`",
        ),
        (with(&["http", "port"], json!(5000)), "`http.port` 5000"),
        (with(&["log", "level"], json!("loud")), "`log.level` 'loud'"),
    ] {
        let container = format!("{name}-bad");
        let file = scratch.path().join("config.json");
        std::fs::write(&file, config.to_string()).expect("writing the config");
        let file = file.to_str().expect("utf8");
        let _ = docker(&["rm", "-f", &container]);
        ok(
            docker(&[
                "create",
                "--name",
                &container,
                "--network",
                "none",
                foundry_workflows::registry::REGISTRY_IMAGE,
            ]),
            "docker create",
        );
        ok(
            docker(&["cp", file, &format!("{container}:/etc/zot/config.json")]),
            "docker cp",
        );
        let started = docker(&["start", "-a", &container]);
        let _ = docker(&["rm", "-f", &container]);
        let stderr = String::from_utf8_lossy(&started.stderr);
        assert_eq!(started.status.code(), Some(1), "{config}: {stderr}");
        assert!(
            stderr.contains("the lab's stand-in for Zot") && stderr.contains(says),
            "{config}: expected `{says}` in: {stderr}"
        );
    }
}
