//! K3s for air-gapped hosts from the stack's registry, on a lab of systemd hosts: the
//! registry installed by Foundry (the lab's stand-in for Zot, Debian's `docker-registry`,
//! the real distribution API), K3s's binary and install.sh pushed into it as an OCI
//! artifact by `foundry registry push-k3s`, and a cluster whose `components.k3s.source` is
//! `registry`: each node fetches them itself over the lab's network (the registry's log
//! shows each host's GET of each blob, once), nothing the size of the binary goes over SSH
//! (no upload step, only the fetch), and `/etc/rancher/k3s/registries.yaml` sends the
//! nodes' images through the registry; an upgrade fetches the next release there the same
//! way. K3s itself is the lab's stand-in (no K3s binary can
//! be had here): it reads registries.yaml when it starts and pulls kube-vip's image's
//! manifest through the mirror it names, as containerd would; the image is a small one
//! this test puts at `kube-vip/kube-vip` (no pod runs in the stand-in).

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use foundry_activities::registry::{Blob, BlobSource, RegistryClient, SshFetchBlob};
use foundry_core::{Activity, ActivityCx};
use foundry_tests::json_lines;
use foundry_tests::lab::Lab;

use crate::cluster_common::{ok, on, run};

const RELEASE: &str = "v1.32.4+k3s1";
const REFERENCE: &str = "foundry/k3s:v1.32.4-k3s1";

/// Polls `cond` every half second until it holds; panics naming `what` after `deadline`.
fn until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    loop {
        if cond() {
            return;
        }
        assert!(Instant::now() < end, "timed out after {deadline:?}: {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The registry's log (its access lines).
fn registry_log(lab: &Lab) -> String {
    let name = format!("foundry-lab-{}-zot", lab.name);
    let out = Command::new("docker")
        .args(["logs", &name])
        .output()
        .expect("docker logs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The successful GETs of `digest`'s blob that `address` made, as the registry logged them.
fn blob_gets(log: &str, address: &str, digest: &str) -> usize {
    let request = format!("\"GET /v2/foundry/k3s/blobs/{digest} HTTP/1.1\" 200");
    log.lines()
        .filter(|l| l.starts_with(&format!("{address} ")) && l.contains(&request))
        .count()
}

/// The k3s unit's journal on a host.
fn k3s_journal(lab: &Lab, host: &str) -> String {
    on(lab, host, "journalctl -u k3s --no-pager -o cat 2>/dev/null")
}

/// A small image at `kube-vip/kube-vip:<tag>`, as `docker push` would store it (an OCI
/// image manifest, its config and one layer): the one the mirror serves for
/// `ghcr.io/kube-vip/kube-vip`.
fn push_kube_vip_image(registry: &str) {
    let image = foundry_workflows::k3s::kube_vip::KUBE_VIP_IMAGE;
    let tag = image.rsplit_once(':').map(|(_, t)| t).expect("a tag");
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let client = RegistryClient::new(registry).expect("a client");
    runtime
        .block_on(client.push_artifact(
            "kube-vip/kube-vip",
            tag,
            None,
            Some(Blob {
                media_type: "application/vnd.oci.image.config.v1+json".into(),
                title: None,
                source: BlobSource::Bytes(config.to_vec()),
            }),
            &[Blob {
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                title: None,
                source: BlobSource::Bytes(vec![0; 1024]),
            }],
            BTreeMap::new(),
        ))
        .expect("kube-vip's image pushed");
}

fn sha256_of(path: &std::path::Path) -> String {
    let bytes = std::fs::read(path).expect("reading the binary");
    foundry_activities::registry::artifact::digest_of(&bytes)
}

#[test]
fn k3s_and_kube_vips_image_from_the_stacks_registry_fetched_by_the_nodes() {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("air", 2, &["--systemd"]);
    phase("lab up");
    // K3s from the registry, at the release the lab's stand-in is.
    let config = std::fs::read_to_string(&lab.config).expect("the lab's config");
    assert!(config.contains("  k3s:\n"), "{config}");
    let config = config.replacen(
        "  k3s:\n",
        &format!("  k3s:\n    source: registry\n    tag: {RELEASE}\n"),
        1,
    );
    std::fs::write(&lab.config, &config).expect("writing the config");
    let stack = foundry_workflows::config::load(&lab.config).expect("the config");
    let plan = foundry_workflows::k3s::ClusterPlan::of(&stack).expect("the cluster");
    let artifact = plan.setup.registry.clone().expect("K3s from the registry");
    let registry = artifact.registry.clone();
    assert_eq!(artifact.reference(), REFERENCE);
    let binary = plan.setup.binary.clone();
    let addresses: Vec<String> = stack.hosts.iter().map(|h| h.address.clone()).collect();

    ok(&lab, &["component", "install", "openbao", "zot"]);
    phase("openbao and the registry");

    // Nothing pushed yet: the release is not in the registry, and no node is touched.
    let refused = run(&lab, &["cluster", "init", "--yes"]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains(&format!("{REFERENCE} is not in the registry at {registry}")),
        "{said}"
    );
    assert!(said.contains("foundry registry push-k3s"), "{said}");
    assert_eq!(
        on(
            &lab,
            "host-1",
            "ls /usr/local/bin/k3s /etc/rancher/k3s 2>/dev/null | wc -l"
        ),
        "0",
        "nothing on the node"
    );

    // The push, then again: the second sends nothing.
    let pushed = ok(&lab, &["registry", "push-k3s", "-o", "json"]);
    let pushed = json_lines(&pushed.stdout);
    let pushed = pushed.last().expect("the push's report");
    assert_eq!(pushed["reference"], REFERENCE, "{pushed}");
    let layers = pushed["layers"].as_array().expect("layers");
    let titles: Vec<&str> = layers.iter().filter_map(|l| l["title"].as_str()).collect();
    assert_eq!(titles, ["k3s", "install.sh"]);
    assert!(layers.iter().all(|l| l["sent"] == true), "{pushed}");
    let digest = sha256_of(&binary);
    assert_eq!(layers[0]["digest"], digest.as_str());
    let again = ok(&lab, &["registry", "push-k3s", "-o", "json"]);
    let again = json_lines(&again.stdout);
    let again = again.last().expect("the push's report");
    assert!(
        again["layers"]
            .as_array()
            .expect("layers")
            .iter()
            .all(|l| l["sent"] == false),
        "{again}"
    );
    assert_eq!(again["digest"], pushed["digest"]);
    phase("pushed");

    // The first server, before kube-vip's image is in the registry.
    let out = ok(&lab, &["cluster", "init", "--yes", "-o", "json"]);
    let events = json_lines(&out.stdout);
    let steps: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "step_started")
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("fetch-binary")),
        "the node fetched the binary: {steps:?}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| s.ends_with("/binary#0") || s.ends_with("/installer#0")),
        "nothing uploaded from here: {steps:?}"
    );
    assert_eq!(
        on(
            &lab,
            "host-1",
            "sha256sum < /usr/local/bin/k3s | cut -c1-64"
        ),
        digest.trim_start_matches("sha256:")
    );
    let log = registry_log(&lab);
    assert_eq!(
        blob_gets(&log, &addresses[0], &digest),
        1,
        "host-1 fetched the binary from the registry once: {log}"
    );
    let mirrors = on(&lab, "host-1", "cat /etc/rancher/k3s/registries.yaml");
    for registry_name in ["docker.io", "ghcr.io"] {
        assert!(mirrors.contains(registry_name), "{mirrors}");
    }
    assert!(mirrors.contains(&registry), "{mirrors}");
    phase("init");

    // kube-vip's pod cannot start: its image is not in the mirror, so no VIP.
    let vip = plan.setup.vip.clone().expect("the lab's VIP");
    let holds_vip = |host: &str| {
        on(
            &lab,
            host,
            &format!("ip -4 -o addr show | grep -c ' inet {vip}/32 ' || true"),
        ) == "1"
    };
    until(
        "the stand-in's failed pull",
        Duration::from_secs(30),
        || k3s_journal(&lab, "host-1").contains("failed to pull image ghcr.io/kube-vip/kube-vip"),
    );
    assert!(!holds_vip("host-1"), "no image, no kube-vip, no VIP");

    // The image in the registry: the next pull gets it through the mirror, and the VIP
    // comes up.
    push_kube_vip_image(&registry);
    until("the VIP on host-1", Duration::from_secs(30), || {
        holds_vip("host-1")
    });
    let journal = k3s_journal(&lab, "host-1");
    assert!(
        journal.contains(&format!(
            "pulled {} through the mirror {registry}",
            foundry_workflows::k3s::kube_vip::KUBE_VIP_IMAGE
        )),
        "{journal}"
    );
    phase("kube-vip");

    // An agent, through the VIP: it fetches its own copy from the registry.
    ok(&lab, &["cluster", "node", "add", "host-2", "--yes"]);
    let log = registry_log(&lab);
    assert_eq!(blob_gets(&log, &addresses[1], &digest), 1, "{log}");
    let nodes = ok(&lab, &["cluster", "node", "list", "-o", "json"]);
    let nodes = String::from_utf8_lossy(&nodes.stdout).to_string();
    assert!(nodes.contains("host-2"), "{nodes}");
    phase("agent");

    // Again: nothing changes, nothing is fetched.
    let out = ok(&lab, &["cluster", "init", "--yes", "-o", "json"]);
    let report = json_lines(&out.stdout);
    assert_eq!(
        report.last().expect("a report")["changed"],
        false,
        "{report:?}"
    );
    let log = registry_log(&lab);
    assert_eq!(blob_gets(&log, &addresses[0], &digest), 1, "{log}");
    phase("again");

    // An upgrade from the registry: the next release pushed there, and each node fetches
    // it itself (the first server once more, to ask the new binary its release before any
    // node is touched); nothing goes over SSH.
    let newer = "v1.33.1+k3s1";
    let newer_binary = binary.with_file_name(format!("k3s-{newer}"));
    assert!(
        newer_binary.exists(),
        "the lab wrote {}",
        newer_binary.display()
    );
    let refused = run(
        &lab,
        &["component", "upgrade", "k3s", "--to", newer, "--yes"],
    );
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{said}");
    assert!(said.contains("foundry/k3s:v1.33.1-k3s1"), "{said}");
    let newer_path = newer_binary.to_str().expect("utf8");
    ok(
        &lab,
        &[
            "registry",
            "push-k3s",
            "--binary",
            newer_path,
            "--release",
            newer,
        ],
    );
    let newer_digest = sha256_of(&newer_binary);
    let out = ok(
        &lab,
        &[
            "component",
            "upgrade",
            "k3s",
            "--to",
            newer,
            "--yes",
            "-o",
            "json",
        ],
    );
    let steps: Vec<String> = json_lines(&out.stdout)
        .iter()
        .filter(|e| e["event"] == "step_started")
        .filter_map(|e| e["step"].as_str().map(str::to_string))
        .collect();
    assert!(
        steps.iter().any(|s| s.contains("k3s/fetch-binary-staged")),
        "{steps:?}"
    );
    assert!(
        !steps
            .iter()
            .any(|s| s.ends_with("/binary#0") || s.contains("/binary-staged#")),
        "nothing uploaded from here: {steps:?}"
    );
    let log = registry_log(&lab);
    assert_eq!(blob_gets(&log, &addresses[0], &newer_digest), 2, "{log}");
    assert_eq!(blob_gets(&log, &addresses[1], &newer_digest), 1, "{log}");
    for host in ["host-1", "host-2"] {
        assert!(
            on(&lab, host, "/usr/local/bin/k3s --version").contains(newer),
            "{host} runs {newer}"
        );
    }
    phase("upgrade");

    // A registry that serves other bytes than the digest (its storage damaged here): the
    // fetch is a permanent error naming the reference and the registry, and nothing is
    // put in place.
    let installer = layers[1]["digest"].as_str().expect("a digest").to_string();
    let hex = installer.trim_start_matches("sha256:");
    let data = format!(
        "/var/lib/registry/docker/registry/v2/blobs/sha256/{}/{hex}/data",
        &hex[..2]
    );
    let damaged = Command::new("docker")
        .args([
            "exec",
            &format!("foundry-lab-{}-zot", lab.name),
            "sh",
            "-c",
            // One byte changed, the size kept (the registry serves as many bytes as it
            // recorded).
            &format!("test -f {data} && printf X | dd of={data} bs=1 count=1 conv=notrunc"),
        ])
        .status()
        .expect("docker exec");
    assert!(
        damaged.success(),
        "the blob's file in the registry's storage"
    );
    let fetch = SshFetchBlob {
        target: lab.targets[0].clone(),
        registry: registry.clone(),
        repository: artifact.repository.clone(),
        reference: format!("{REFERENCE} (install.sh)"),
        digest: installer.clone(),
        path: "/root/fetched-install.sh".into(),
        mode: 0o755,
    };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let e = runtime
        .block_on(fetch.apply(&ActivityCx::standalone("fetch")))
        .expect_err("another digest");
    assert!(!e.transient, "{}", e.message);
    assert!(
        e.message.contains(&format!(
            "{REFERENCE} (install.sh) from the registry at {registry} is not {installer}"
        )),
        "{}",
        e.message
    );
    assert_eq!(
        on(&lab, "host-1", "ls /root/ | grep -c fetched || true"),
        "0",
        "nothing in place, no temporary file left"
    );
}
