//! `foundry lab` against the real Docker Engine: real Debian hosts with sshd, reached with
//! the real OpenSSH client, host keys checked strictly against the lab's host list.

use std::process::Command;

use foundry_tests::Home;
use foundry_tests::docker::engine;

/// Removes the lab's containers and network if the test fails half-way.
struct LabGuard(String);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let label = format!("label=foundry.lab={}", self.0);
        let _ = Command::new("sh")
            .args(["-c", &format!("docker ps -aq --filter {label} | xargs -r docker rm -f; docker network ls -q --filter {label} | xargs -r docker network rm")])
            .output();
    }
}

/// (address, host key) of each host in the lab's stack config, read by Foundry's loader.
fn hosts_of(config: &std::path::Path) -> Vec<(String, String)> {
    let config = foundry_workflows::config::load(config).expect("the lab's config loads");
    config
        .hosts
        .into_iter()
        .map(|h| (h.address, h.host_key.unwrap_or_default()))
        .collect()
}

/// The owner, group and mode of this machine's Docker Engine socket.
fn socket_mode() -> String {
    let out = Command::new("stat")
        .args(["-c", "%u:%g %a", "/var/run/docker.sock"])
        .output()
        .expect("stat");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn container_ids(lab: &str) -> String {
    let out = Command::new("docker")
        .args([
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("label=foundry.lab={lab}"),
        ])
        .output()
        .expect("docker ps");
    let mut ids: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    ids.sort();
    ids.join(",")
}

#[test]
fn lab_up_gives_hosts_reachable_by_ssh_with_checked_host_keys() {
    engine();
    let home = Home::new();
    let lab = format!("it{:06x}", rand::random::<u32>() & 0xff_ffff);
    let _guard = LabGuard(lab.clone());
    let subnet = format!("10.77.{}.0/24", 100 + rand::random::<u8>() % 100);
    let up = [
        "lab",
        "up",
        "--hosts",
        "2",
        "--name",
        lab.as_str(),
        "--subnet",
        subnet.as_str(),
    ];
    let socket_before = socket_mode();
    home.ok(&up);

    let dir = home.path().join("labs").join(&lab);
    let config = home.path().join(format!("lab-{lab}.yaml"));
    let yaml = std::fs::read_to_string(&config).expect("the lab's config");
    let hosts = hosts_of(&config);
    assert_eq!(hosts.len(), 2, "{yaml}");
    assert!(
        hosts.iter().all(|(_, k)| k.starts_with("ssh-ed25519 ")),
        "{yaml}"
    );
    let known = home.scratch().join("known_hosts");
    let lines: Vec<String> = hosts.iter().map(|(a, k)| format!("{a} {k}")).collect();
    std::fs::write(&known, lines.join("\n") + "\n").expect("known_hosts");
    // The OpenSSH client, host keys checked strictly against the lab's config.
    let ssh = |address: &str, timeout: u32, command: &str| {
        Command::new("ssh")
            .args([
                "-i",
                dir.join("id_ed25519").to_str().expect("utf8"),
                "-o",
                &format!("UserKnownHostsFile={}", known.display()),
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                &format!("ConnectTimeout={timeout}"),
                &format!("admin@{address}"),
                command,
            ])
            .output()
            .expect("ssh")
    };
    for (i, (address, _)) in hosts.iter().enumerate() {
        let out = ssh(address, 10, "sudo -n true && hostname");
        assert!(out.status.success(), "ssh to {address}: {out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("host-{}", i + 1)
        );
    }

    // Cut off, a host does not answer; restored, it does again at the same address.
    let ssh_ok = |address: &str| ssh(address, 3, "true").status.success();
    home.ok(&["lab", "cut", "host-2", "--name", &lab]);
    assert!(!ssh_ok(&hosts[1].0), "a cut host answered");
    assert!(ssh_ok(&hosts[0].0), "the other host stays reachable");
    home.ok(&["lab", "restore", "host-2", "--name", &lab]);
    assert!(ssh_ok(&hosts[1].0), "a restored host does not answer");

    let listed = home.json(&["lab", "list", "--name", &lab]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|h| h["state"] == "running"), "{listed:?}");

    // host-1, the engine host, has the Engine's socket, and admin may use it over SSH
    // without the socket's owner or mode changing; host-2 has no socket.
    let engine: Vec<&str> = listed
        .iter()
        .filter(|h| h["labels"]["foundry.lab.engine"] == "1")
        .filter_map(|h| h["labels"]["foundry.lab.host"].as_str())
        .collect();
    assert_eq!(engine, ["host-1"], "{listed:?}");
    let ping = "python3 -c 'import socket; s = socket.socket(socket.AF_UNIX); \
        s.connect(\"/var/run/docker.sock\"); s.sendall(b\"GET /_ping HTTP/1.0\\r\\n\\r\\n\"); \
        r = b\"\".join(iter(lambda: s.recv(4096), b\"\")); print(r.decode().split(\"\\r\\n\")[-1])'";
    let out = ssh(&hosts[0].0, 10, ping);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
    let out = ssh(&hosts[1].0, 10, "test -e /var/run/docker.sock");
    assert!(!out.status.success(), "host-2 has no socket: {out:?}");
    let human = home.ok(&["lab", "list", "--name", &lab]);
    assert!(
        human.lines().next().is_some_and(|h| h.contains("ENGINE"))
            && human
                .lines()
                .any(|l| l.contains("host-1") && l.contains("/var/run/docker.sock")),
        "{human}"
    );

    // Again: nothing changes; the same containers run on.
    let before = container_ids(&lab);
    home.ok(&up);
    assert_eq!(container_ids(&lab), before);
    assert_eq!(std::fs::read_to_string(&config).expect("config"), yaml);
    assert_eq!(socket_mode(), socket_before, "the socket is untouched");

    home.ok(&["lab", "down", "--name", &lab]);
    assert_eq!(container_ids(&lab), "");
    assert!(home.json(&["lab", "list", "--name", &lab]).is_empty());
    assert!(
        !dir.exists() && !config.exists(),
        "the lab's files are gone"
    );
}

#[test]
fn lab_up_refuses_a_bad_name_or_subnet_before_touching_anything() {
    engine();
    let home = Home::new();
    for (args, needle) in [
        (
            [
                "lab",
                "up",
                "--name",
                "no spaces",
                "--subnet",
                "10.77.250.0/24",
            ],
            "lab name `no spaces`",
        ),
        (
            ["lab", "up", "--name", "ok", "--subnet", "10.77.250.0/16"],
            "expected a /24",
        ),
        (
            ["lab", "up", "--name", "ok", "--engine-host", "host-4"],
            "engine host `host-4` is not in the lab: its hosts are host-1 to host-3",
        ),
    ] {
        let out = home.run(&args);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    assert!(home.runs().is_empty());
}

/// The subnet of the Docker network `name`, as the Engine reports it.
fn network_subnet(name: &str) -> String {
    let out = Command::new("docker")
        .args([
            "network",
            "inspect",
            "-f",
            "{{range .IPAM.Config}}{{.Subnet}}{{end}}",
            name,
        ])
        .output()
        .expect("docker network inspect");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes a network the test made.
struct NetworkGuard(String);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

#[test]
fn lab_up_takes_a_free_subnet_keeps_its_own_and_explains_an_overlap() {
    engine();
    let home = Home::new();
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);

    // A network of someone else's holds a subnet: asking for it is refused in Foundry's
    // words, naming that network, before any run starts.
    let occupier = format!("foundry-test-occupy-{tag}");
    let taken = format!("10.79.{}.0/24", rand::random::<u8>());
    let made = Command::new("docker")
        .args(["network", "create", "--subnet", &taken, &occupier])
        .output()
        .expect("docker network create");
    assert!(made.status.success(), "{made:?}");
    let _occupier = NetworkGuard(occupier.clone());
    let name = format!("sub{tag}");
    let _lab = LabGuard(name.clone());
    let refused = home.run(&[
        "lab", "up", "--hosts", "1", "--name", &name, "--subnet", &taken,
    ]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains(&format!("overlaps Docker network `{occupier}` ({taken})")),
        "{err}"
    );
    assert!(err.contains("hint: leave out --subnet"), "{err}");
    assert!(!err.contains("Pool overlaps"), "{err}");
    assert!(home.runs().is_empty(), "a run was started");

    // Without --subnet: a /24 no network overlapped when it was chosen.
    let up = home.run(&["lab", "up", "--hosts", "1", "--name", &name]);
    assert!(up.status.success(), "{up:?}");
    let network = format!("foundry-lab-{name}");
    let subnet = network_subnet(&network);
    assert!(
        subnet.starts_with("10.77.") && subnet.ends_with(".0/24"),
        "{subnet}"
    );
    let addresses: Vec<String> = hosts_of(&home.path().join(format!("lab-{name}.yaml")))
        .into_iter()
        .map(|(address, _)| address)
        .collect();
    let prefix = subnet.trim_end_matches("0/24");
    assert!(
        addresses.iter().all(|a| a.starts_with(prefix)),
        "{addresses:?} outside {subnet}"
    );

    // Grown without --subnet: the lab keeps its own. Another subnet for it is refused.
    let grown = home.run(&["lab", "up", "--hosts", "2", "--name", &name]);
    assert!(grown.status.success(), "{grown:?}");
    assert_eq!(network_subnet(&network), subnet);
    let moved = home.run(&[
        "lab", "up", "--hosts", "2", "--name", &name, "--subnet", &taken,
    ]);
    assert_eq!(moved.status.code(), Some(1), "{moved:?}");
    let err = String::from_utf8_lossy(&moved.stderr);
    assert!(
        err.contains(&format!("lab `{name}` is on {subnet}, not {taken}")),
        "{err}"
    );

    let down = home.run(&["lab", "down", "--name", &name]);
    assert!(down.status.success(), "{down:?}");
}
