//! `foundry cluster init` and `foundry cluster node add` on a lab of systemd hosts (`lab up
//! --systemd`), with OpenBAO installed by Foundry. K3s itself cannot be had here: the nodes
//! run the lab's K3s stand-in (real systemd units, Debian's real etcd 3.4 for the servers,
//! the Kubernetes API stand-in on :6443), uploaded by Foundry as it would upload the real
//! binary. The installer Foundry uploads is the lab's install.sh stand-in with two lines
//! added that write when each run starts and ends into `/root/installs`: how the tests
//! count the installs on each node and see their order.

use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::leak::live::{Procs, Sampler};
use foundry_tests::{json_lines, wait_for};

use crate::cluster_common::{
    Members, QuorumSampler, count_installs, foundry, installs, killed, member_list, members, ok,
    on, parse_members, run, starts,
};

#[test]
fn init_then_servers_one_at_a_time_and_an_agent_resumed_after_a_kill_with_no_secret_shown() {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("clu", 4, &["--systemd"]);
    phase("lab up");
    count_installs(&lab);
    let procs = Sampler::start(Procs::Local, Duration::from_millis(200), 5000);
    let mut outputs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut keep = |what: &str, out: &Output| {
        outputs.push((format!("{what} stdout"), out.stdout.clone()));
        outputs.push((format!("{what} stderr"), out.stderr.clone()));
    };

    // Without OpenBAO's token there is no cluster: nothing is touched.
    let refused = run(&lab, &["cluster", "node", "add", "host-2", "--yes"]);
    assert!(!refused.status.success());
    keep("refused add", &refused);
    let out = ok(&lab, &["component", "install", "openbao", "-o", "json"]);
    keep("openbao", &out);
    phase("openbao");

    // No token in OpenBAO yet: a node cannot join.
    let refused = run(&lab, &["cluster", "node", "add", "host-2", "--yes"]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("OpenBAO holds no cluster's server token"),
        "{said}"
    );
    assert!(said.contains("foundry cluster init"), "{said}");
    assert_eq!(starts(&lab, "host-2"), 0);
    keep("no token", &refused);

    let out = ok(&lab, &["cluster", "init", "--yes", "-o", "json"]);
    keep("init", &out);
    let said = json_lines(&out.stdout);
    let report = said.last().expect("a report");
    assert_eq!(report["changed"], true, "{said:?}");
    assert_eq!(report["server"], "host-1");
    let vip = report["api"].as_str().expect("api").to_string();
    assert!(
        vip.ends_with(".220:6443"),
        "the kubeconfig points at the VIP: {vip}"
    );
    assert_eq!(starts(&lab, "host-1"), 1);
    assert_eq!(members(&lab), [("host-1".to_string(), false)]);
    // The kubeconfig OpenBAO keeps points at the VIP.
    let kept = ok(
        &lab,
        &["secret", "get", "foundry-core/k3s:kubeconfig", "--yes"],
    );
    let kept = String::from_utf8_lossy(&kept.stdout);
    let servers: Vec<&str> = kept
        .lines()
        .filter(|l| l.trim_start().starts_with("server:"))
        .collect();
    assert_eq!(
        servers.len(),
        1,
        "one server line in the kept kubeconfig: {servers:?}"
    );
    assert!(
        servers[0].ends_with(&format!("server: {vip}")),
        "the kept kubeconfig's server: {servers:?}"
    );
    let config_yaml = on(&lab, "host-1", "cat /etc/rancher/k3s/config.yaml");
    for line in [
        "cluster-init: true",
        "token-file: /etc/rancher/k3s/foundry-token",
        "- traefik",
        "- servicelb",
    ] {
        assert!(config_yaml.contains(line), "{line} in {config_yaml}");
    }
    assert_eq!(
        on(&lab, "host-1", "stat -c %a /etc/rancher/k3s/foundry-token"),
        "600"
    );
    assert!(
        on(
            &lab,
            "host-1",
            "cat /var/lib/rancher/k3s/server/manifests/kube-vip.yaml"
        )
        .contains("plndr-cp-lock"),
        "kube-vip's manifest is in the server's manifests directory"
    );
    phase("init");

    // Two servers in one run; foundry killed while the second installs, then the same
    // command resumes it. Meanwhile etcd's members are sampled.
    let seen: Arc<Mutex<Vec<Members>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let lab_container = lab.container("host-1");
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(300);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < end {
                let out = Command::new("docker")
                    .args(["exec", &lab_container, "sh", "-c", &member_list()])
                    .output();
                if let Ok(out) = out {
                    seen.lock()
                        .expect("samples")
                        .push(parse_members(&out.stdout));
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let quorum = QuorumSampler::start(&lab, "host-1", Duration::from_secs(300));
    let add_servers = [
        "cluster", "node", "add", "host-2", "host-3", "--role", "server", "--yes", "-o", "json",
    ];
    let child = foundry(&lab, &add_servers)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("foundry");
    wait_for(
        "host-3's install to start",
        Duration::from_secs(180),
        || starts(&lab, "host-3") == 1,
    );
    killed(child);
    phase("killed during host-3's join");
    let out = ok(&lab, &add_servers);
    keep("add servers", &out);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = sampler.join();
    quorum.assert_quorum_kept("two servers joined across a kill");
    phase("servers joined");
    let said = json_lines(&out.stdout);
    assert_eq!(said.last().expect("a report")["changed"], true, "{said:?}");
    assert_eq!(starts(&lab, "host-2"), 1, "host-2 installed once");
    assert_eq!(
        starts(&lab, "host-3"),
        1,
        "host-3 installed once, across the kill"
    );
    let mut voters = members(&lab);
    voters.sort();
    assert_eq!(
        voters,
        [
            ("host-1".to_string(), false),
            ("host-2".to_string(), false),
            ("host-3".to_string(), false)
        ]
    );
    // Strictly one at a time: never two learners, never host-3 a member while host-2 is
    // not yet a voter, and host-3's install started after host-2's ended.
    let samples = seen.lock().expect("samples").clone();
    assert!(samples.len() > 10, "etcd was sampled: {}", samples.len());
    for sample in &samples {
        let learners = sample.iter().filter(|(_, l)| *l).count();
        assert!(learners <= 1, "two learners at once: {sample:?}");
        let has = |n: &str| sample.iter().any(|(m, _)| m == n);
        let voter = |n: &str| sample.iter().any(|(m, l)| m == n && !l);
        assert!(
            !has("host-3") || voter("host-2"),
            "host-3 joined before host-2 was a voter: {sample:?}"
        );
    }
    let end_2 = installs(&lab, "host-2")
        .iter()
        .find(|(w, _)| w == "end")
        .map(|(_, at)| *at)
        .expect("host-2's install ended");
    let start_3 = installs(&lab, "host-3")
        .iter()
        .find(|(w, _)| w == "start")
        .map(|(_, at)| *at)
        .expect("host-3's install started");
    assert!(
        start_3 > end_2,
        "host-3 started at {start_3}, before host-2 ended at {end_2}"
    );

    // An agent: its role from cluster.nodes (a worker).
    let out = ok(
        &lab,
        &["cluster", "node", "add", "host-4", "--yes", "-o", "json"],
    );
    keep("add agent", &out);
    assert_eq!(starts(&lab, "host-4"), 1);
    assert_eq!(
        on(&lab, "host-4", "systemctl is-active k3s-agent"),
        "active"
    );
    phase("agent joined");

    // Again: nothing changes, nothing is installed again.
    for args in [
        &["cluster", "init", "--yes", "-o", "json"][..],
        &add_servers[..],
        &["cluster", "node", "add", "host-4", "--yes", "-o", "json"][..],
    ] {
        let out = ok(&lab, args);
        keep("again", &out);
        let said = json_lines(&out.stdout);
        assert_eq!(
            said.last().expect("a report")["changed"],
            false,
            "{args:?}: {said:?}"
        );
    }
    for (host, count) in [("host-1", 1), ("host-2", 1), ("host-3", 1), ("host-4", 1)] {
        assert_eq!(starts(&lab, host), count, "{host}");
    }
    // A token in OpenBAO that is not the cluster's: init is refused, nothing touched.
    let held = ok(&lab, &["secret", "get", "foundry-core/k3s:token", "--yes"]);
    let set = |value: &str| {
        use std::io::Write;
        let mut child = foundry(
            &lab,
            &["secret", "set", "foundry-core/k3s:token", "--stdin"],
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("foundry");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(value.as_bytes())
            .expect("stdin");
        assert!(child.wait().expect("secret set").success());
    };
    set("not-the-clusters-token");
    let refused = run(&lab, &["cluster", "init", "--yes"]);
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains("made with another token than the one OpenBAO holds"),
        "{said}"
    );
    set(String::from_utf8_lossy(&held.stdout).trim_end_matches('\n'));
    assert_eq!(starts(&lab, "host-1"), 1);
    let out = ok(&lab, &["cluster", "init", "--yes", "-o", "json"]);
    assert_eq!(
        json_lines(&out.stdout).last().expect("a report")["changed"],
        false
    );
    let planned = ok(
        &lab,
        &[
            "cluster",
            "node",
            "add",
            "host-4",
            "--dry-run",
            "-o",
            "json",
        ],
    );
    assert_eq!(
        json_lines(&planned.stdout)[0]["plan"],
        serde_json::json!([])
    );
    phase("again: nothing changed");

    // The token and the kubeconfig's client key: in no byte of the home, no output, no
    // command line of this machine or of the lab's hosts (their processes share its kernel).
    let token = on(&lab, "host-1", "cat /var/lib/rancher/k3s/server/token");
    let token = token
        .rsplit(':')
        .next()
        .expect("the token's secret")
        .to_string();
    let key = on(
        &lab,
        "host-1",
        "python3 -c 'import yaml; print(yaml.safe_load(open(\"/etc/rancher/k3s/k3s.yaml\"))[\"users\"][0][\"user\"][\"client-key-data\"])'",
    );
    assert!(
        token.len() >= 16 && key.len() > 100,
        "{} {}",
        token.len(),
        key.len()
    );
    let secrets = vec![token, key];
    let sampled = procs.stop();
    assert!(sampled.samples > 10);
    assert!(
        sampled.saw(|l| l.contains("k3s-install.sh")),
        "the installer was sampled"
    );
    sampled.assert_clean("the machine and the lab's hosts", &secrets);
    let extra: Vec<(&str, &[u8])> = outputs
        .iter()
        .map(|(what, bytes)| (what.as_str(), bytes.as_slice()))
        .collect();
    let labs = lab.home.path().join("labs");
    foundry_tests::leak::assert_nowhere(
        &lab.home.path(),
        &[labs.as_path()],
        &|_, _| false,
        &secrets,
        &extra,
    );
    let detached = on(
        &lab,
        "host-3",
        "cat /var/lib/foundry/steps/*/out /var/lib/foundry/steps/*/err 2>/dev/null; journalctl --no-pager -o cat 2>/dev/null",
    );
    for (i, secret) in secrets.iter().enumerate() {
        assert!(
            !detached.contains(secret.as_str()),
            "secret #{i} in host-3's logs"
        );
    }
    phase("no secret shown");
}

/// `cluster init --single-node` while `cluster.nodes` lists two nodes behind a VIP: the
/// cluster has no kube-vip, so `node add` does not go to the VIP (it would wait for
/// `join_timeout` and say kube-vip is not running): a server is refused at once, saying
/// what to do, and an agent joins at the first server's address; `cluster init` without
/// `--single-node`, as the refusal says, then gives the cluster kube-vip and its VIP.
#[test]
fn a_single_node_cluster_takes_agents_at_its_server_and_refuses_a_server_saying_what_to_do() {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("one", 2, &["--systemd"]);
    phase("lab up");
    ok(&lab, &["component", "install", "openbao"]);
    ok(&lab, &["cluster", "init", "--single-node", "--yes"]);
    assert_eq!(
        on(
            &lab,
            "host-1",
            "test -e /var/lib/rancher/k3s/server/manifests/kube-vip.yaml && echo yes || echo no"
        ),
        "no",
        "no kube-vip for a single node"
    );
    phase("init --single-node");
    let first = format!("https://{}:6443", lab.targets[0].address);

    let asked = Instant::now();
    let refused = run(
        &lab,
        &[
            "cluster", "node", "add", "host-2", "--role", "server", "--yes",
        ],
    );
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{said}");
    for needed in [
        "host-2 cannot join as a server: the cluster on host-1 was made with `--single-node`",
        "no node was changed",
        &format!("agents join it at {first}"),
        "hint: run `foundry cluster init --yes` (without --single-node)",
    ] {
        assert!(said.contains(needed), "{needed} in: {said}");
    }
    assert!(
        asked.elapsed() < Duration::from_secs(120),
        "refused at once, not after the VIP's wait: {:?}",
        asked.elapsed()
    );
    assert_eq!(
        on(
            &lab,
            "host-2",
            "test -e /usr/local/bin/k3s && echo yes || echo no"
        ),
        "no",
        "nothing sent to host-2"
    );
    phase("a server refused");

    let out = ok(
        &lab,
        &["cluster", "node", "add", "host-2", "--yes", "-o", "json"],
    );
    let said = json_lines(&out.stdout);
    let report = said.last().expect("a report");
    assert_eq!(report["changed"], true, "{said:?}");
    assert_eq!(report["api"], first.as_str(), "joined at the first server");
    assert_eq!(
        on(&lab, "host-2", "systemctl is-active k3s-agent"),
        "active"
    );
    let listed = ok(&lab, &["cluster", "node", "list", "-o", "json"]);
    let mut nodes: Vec<(String, bool)> = json_lines(&listed.stdout)
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["ready"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    nodes.sort();
    assert_eq!(
        nodes,
        [("host-1".to_string(), true), ("host-2".to_string(), true)]
    );
    phase("an agent joined at the first server");

    // As the refusal's hint says: `cluster init` again without --single-node gives host-1
    // kube-vip, and the VIP comes to it.
    ok(&lab, &["cluster", "init", "--yes"]);
    assert_eq!(
        on(
            &lab,
            "host-1",
            "test -e /var/lib/rancher/k3s/server/manifests/kube-vip.yaml && echo yes || echo no"
        ),
        "yes",
        "kube-vip's manifest on host-1"
    );
    let mut last = serde_json::Value::Null;
    wait_for("host-1 to hold the VIP", Duration::from_secs(90), || {
        let out = run(&lab, &["cluster", "status", "-o", "json"]);
        last = json_lines(&out.stdout).last().cloned().unwrap_or_default();
        last["vip_holder"] == "host-1"
    });
    assert!(
        last["nodes"]
            .as_array()
            .is_some_and(|n| n.len() == 2 && n.iter().all(|n| n["ready"] == true)),
        "{last}"
    );
    phase("init without --single-node: host-1 holds the VIP");
}
