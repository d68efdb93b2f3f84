//! The cluster's joins and removals under faults, through the `foundry` binary on a lab of
//! systemd hosts (`lab up --systemd`) running the lab's K3s stand-in (real systemd units,
//! Debian's real etcd 3.4 for the servers, the Kubernetes API stand-in on :6443):
//! `foundry` killed (SIGKILL) during the agent fan-out and resumed by the same command; an
//! agent removed, drained first past a disruption budget; a joining server cut off the
//! network for 60 s in the middle of its join, the join finishing without the operator.
//! etcd's quorum is sampled throughout (the member list and each member's health, as
//! etcd answers them). The installer counts its runs on each host and can be held in its
//! middle (`cluster_common::count_installs`).

use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::{json_lines, output_within, wait_for, wait_for_while_running};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::cluster_common::{
    QuorumSampler, count_installs, foundry, hold, installing, installs, killed, members, ok, on,
    release, starts,
};

/// `components.k3s.agents_at_once` set in the lab's config.
fn agents_at_once(lab: &Lab, n: u32) {
    let config = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let mut out = String::new();
    let mut done = false;
    for line in config.lines() {
        let trimmed = line.trim_start();
        if !done && trimmed.starts_with("binary:") && line.contains("k3s") {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}agents_at_once: {n}\n"));
            done = true;
        }
        out.push_str(line);
        out.push('\n');
    }
    assert!(done, "components.k3s.binary in the lab's config: {config}");
    std::fs::write(&lab.config, out).expect("writing the config");
}

/// The nodes `foundry cluster node list` shows (one JSON line each): (name, Ready).
fn node_list(lab: &Lab) -> Vec<(String, bool)> {
    let out = ok(lab, &["cluster", "node", "list", "-o", "json"]);
    let mut nodes: Vec<(String, bool)> = json_lines(&out.stdout)
        .iter()
        .filter_map(|n| {
            let name = n["name"].as_str()?;
            Some((name.to_string(), n["ready"].as_bool().unwrap_or(false)))
        })
        .collect();
    nodes.sort();
    nodes
}

fn assert_ready(lab: &Lab, hosts: &[&str]) {
    let nodes = node_list(lab);
    for host in hosts {
        assert!(
            nodes.contains(&(host.to_string(), true)),
            "{host} Ready in {nodes:?}"
        );
    }
}

fn report(out: &Output) -> serde_json::Value {
    json_lines(&out.stdout)
        .last()
        .cloned()
        .expect("a report on stdout")
}

/// A kube client of the test's own, with the admin kubeconfig OpenBAO keeps, at the first
/// server's address (the test sets the scene: a pod, a budget).
fn kube_client(lab: &Lab, rt: &tokio::runtime::Runtime) -> kube::Client {
    let kept = ok(
        lab,
        &["secret", "get", "foundry-core/k3s:kubeconfig", "--yes"],
    );
    let text = String::from_utf8_lossy(&kept.stdout).to_string();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("the kubeconfig");
    rt.block_on(async {
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("a kube config");
        let first = &lab.targets[0].address;
        config.cluster_url = format!("https://{first}:6443").parse().expect("a URL");
        kube::Client::try_from(config).expect("a kube client")
    })
}

/// The removal's view, once: whether the node is there and cordoned, and whether the pod
/// is still on it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    node: Option<bool>,
    pod: bool,
}

async fn look(kube: &kube::Client, node: &str, pod: &str) -> Option<Seen> {
    let nodes: Api<Node> = Api::all(kube.clone());
    let pods: Api<Pod> = Api::all(kube.clone());
    let found = nodes.get_opt(node).await.ok()?;
    let on_it = pods
        .list(&ListParams::default().fields(&format!("spec.nodeName={node}")))
        .await
        .ok()?;
    Some(Seen {
        node: found.map(|n| n.spec.and_then(|s| s.unschedulable).unwrap_or(false)),
        pod: on_it
            .items
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(pod)),
    })
}

/// Waits for `child` to end within `deadline`, its output captured.
fn finished(child: Child, what: &str, deadline: Duration) -> Output {
    let mut child = child;
    let end = Instant::now() + deadline;
    while child.try_wait().expect("polling foundry").is_none() {
        if Instant::now() > end {
            killed(child);
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().expect("foundry's output")
}

#[test]
fn agents_resumed_after_a_kill_in_the_fan_out_one_removed_drained_first_and_a_server_cut_off_for_60_s()
 {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("flt", 5, &["--systemd"]);
    count_installs(&lab);
    agents_at_once(&lab, 2);
    phase("lab up");
    ok(&lab, &["component", "install", "openbao", "-o", "json"]);
    ok(&lab, &["cluster", "init", "--yes", "-o", "json"]);
    assert_eq!(starts(&lab, "host-1"), 1);
    phase("init");
    let quorum = QuorumSampler::start(&lab, "host-1", Duration::from_secs(1200));

    // The agent fan-out, two at a time, killed while one agent is done and another's
    // install runs (held); the third is not started or held too.
    let agents = ["host-2", "host-3", "host-4"];
    for host in agents {
        hold(&lab, host);
    }
    let add = [
        "cluster", "node", "add", "host-2", "host-3", "host-4", "--role", "agent", "--yes", "-o",
        "json",
    ];
    let mut child = foundry(&lab, &add)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("foundry");
    let running = |lab: &Lab| -> Vec<&str> {
        agents
            .iter()
            .copied()
            .filter(|h| installing(lab, h))
            .collect()
    };
    wait_for_while_running(
        &mut child,
        "two agents' installs to start",
        Duration::from_secs(180),
        || running(&lab).len() == 2,
    );
    let two = running(&lab);
    assert_eq!(two.len(), 2, "at most two agents at once: {two:?}");
    let first = two[0];
    release(&lab, first);
    wait_for_while_running(
        &mut child,
        "the first agent's install to end",
        Duration::from_secs(180),
        || starts(&lab, first) == 1 && !installing(&lab, first),
    );
    killed(child);
    let done: Vec<&str> = agents
        .iter()
        .copied()
        .filter(|h| starts(&lab, h) == 1 && !installing(&lab, h))
        .collect();
    let runs: Vec<&str> = agents
        .iter()
        .copied()
        .filter(|h| installing(&lab, h))
        .collect();
    assert_eq!(done, [first], "killed with one agent done");
    assert!(!runs.is_empty(), "killed while an install runs");
    phase(&format!("killed: {first} done, {runs:?} installing"));
    for host in agents {
        release(&lab, host);
    }
    let out = ok(&lab, &add);
    assert_eq!(
        report(&out)["changed"],
        true,
        "{:?}",
        json_lines(&out.stdout)
    );
    for host in agents {
        assert_eq!(
            starts(&lab, host),
            1,
            "{host} installed once, across the kill: {:?}",
            installs(&lab, host)
        );
        assert_eq!(on(&lab, host, "systemctl is-active k3s-agent"), "active");
    }
    assert_ready(&lab, &agents);
    let again = ok(&lab, &add);
    assert_eq!(
        report(&again)["changed"],
        false,
        "a third run changes nothing"
    );
    for host in agents {
        assert_eq!(starts(&lab, host), 1, "{host} not installed again");
    }
    phase("agents joined once each, a third run changed nothing");

    // Removing an agent drains it first: a pod on it and a budget that blocks its
    // eviction until the test relaxes it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let kube = kube_client(&lab, &rt);
    let gone = "host-4";
    rt.block_on(async {
        let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web-0", "labels": {"app": "web"}},
            "spec": {"nodeName": gone, "containers": [{"name": "web", "image": "registry.example/web:1"}]},
            "status": {"phase": "Running"}
        }))
        .expect("a pod");
        pods.create(&PostParams::default(), &pod).await.expect("the pod");
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(kube.clone(), "default");
        let pdb: PodDisruptionBudget = serde_json::from_value(json!({
            "metadata": {"name": "web-budget"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}}
        }))
        .expect("a budget");
        pdbs.create(&PostParams::default(), &pdb).await.expect("the budget");
    });
    assert_eq!(
        on(
            &lab,
            gone,
            "test -x /usr/local/bin/k3s-agent-uninstall.sh && echo yes"
        ),
        "yes"
    );
    // A drain that the budget outlasts: the run stops, naming the pod and its budget; the
    // node stays cordoned, the pod on it.
    let held = crate::cluster_common::run(
        &lab,
        &[
            "cluster",
            "node",
            "remove",
            gone,
            "--yes",
            "--drain-timeout",
            "2",
        ],
    );
    let said = String::from_utf8_lossy(&held.stderr).to_string();
    assert!(!held.status.success(), "{said}");
    for needed in ["default/web-0", "web-budget", "hint:"] {
        assert!(said.contains(needed), "{needed} in: {said}");
    }
    let now = rt.block_on(look(&kube, gone, "web-0")).expect("the API");
    assert!(now.node == Some(true) && now.pod, "{now:?}");
    phase("a drain timeout names the pod its budget keeps");
    let remover = {
        let mut cmd = foundry(
            &lab,
            &[
                "cluster",
                "node",
                "remove",
                gone,
                "--yes",
                "--drain-timeout",
                "120",
                "-o",
                "json",
            ],
        );
        std::thread::spawn(move || output_within(&mut cmd, "the removal", Duration::from_secs(300)))
    };
    let mut seen: Vec<Seen> = Vec::new();
    let mut relaxed = false;
    let end = Instant::now() + Duration::from_secs(300);
    while !remover.is_finished() && Instant::now() < end {
        if let Some(s) = rt.block_on(look(&kube, gone, "web-0")) {
            seen.push(s);
        }
        let held = seen
            .iter()
            .filter(|s| s.node == Some(true) && s.pod)
            .count();
        // Cordoned, the pod kept by its budget for a few looks: the budget relaxed.
        if !relaxed && held >= 5 {
            rt.block_on(async {
                let pdbs: Api<PodDisruptionBudget> = Api::namespaced(kube.clone(), "default");
                pdbs.patch(
                    "web-budget",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"minAvailable": 0}})),
                )
                .await
                .expect("the budget relaxed");
            });
            relaxed = true;
            phase("cordoned, the pod held by its budget: budget relaxed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = remover.join().expect("the removal's thread");
    assert!(
        out.status.success(),
        "remove: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        relaxed,
        "the node was never seen cordoned with its pod: {seen:?}"
    );
    for s in &seen {
        assert!(
            s.pod || s.node != Some(false),
            "the pod left before the node was cordoned: {seen:?}"
        );
    }
    let said = report(&out);
    assert!(
        said.to_string().contains("default/web-0"),
        "the pod evicted: {said}"
    );
    let after = rt.block_on(look(&kube, gone, "web-0")).expect("the API");
    assert!(after.node.is_none() && !after.pod, "{after:?}");
    assert!(!node_list(&lab).iter().any(|(n, _)| n == gone));
    assert_eq!(
        on(
            &lab,
            gone,
            "test -e /usr/local/bin/k3s-agent-uninstall.sh && echo still; systemctl is-enabled k3s-agent 2>/dev/null || true"
        ),
        "",
        "K3s uninstalled on {gone}"
    );
    phase("agent drained, deleted, uninstalled");

    // A joining server cut off the network for 60 s in the middle of its join (its
    // install.sh started, its etcd member not yet added): the command goes on by itself and
    // finishes; the install ran once; the node is Ready and its etcd member a voter.
    let cut = "host-5";
    hold(&lab, cut);
    let mut child = foundry(
        &lab,
        &[
            "cluster", "node", "add", cut, "--role", "server", "--yes", "-o", "json",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("foundry");
    wait_for_while_running(
        &mut child,
        "the cut node's install to start",
        Duration::from_secs(180),
        || installing(&lab, cut),
    );
    lab.cut(cut);
    // The install goes on while the node is cut off: it cannot reach the first server.
    release(&lab, cut);
    let cut_at = Instant::now();
    phase("cut off in its join");
    wait_for("60 s of the cut", Duration::from_secs(90), || {
        assert!(
            child.try_wait().expect("polling foundry").is_none(),
            "foundry gave up {:.0} s into the cut",
            cut_at.elapsed().as_secs_f64()
        );
        cut_at.elapsed() >= Duration::from_secs(60)
    });
    assert!(
        installing(&lab, cut),
        "the join did not wait for the server: {:?}",
        installs(&lab, cut)
    );
    lab.restore(cut);
    phase("restored");
    let out = finished(child, "the join after the cut", Duration::from_secs(600));
    assert!(
        out.status.success(),
        "the join across the cut: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(report(&out)["changed"], true);
    assert_eq!(
        starts(&lab, cut),
        1,
        "installed once: {:?}",
        installs(&lab, cut)
    );
    assert_eq!(on(&lab, cut, "systemctl is-active k3s"), "active");
    assert_ready(&lab, &["host-1", "host-2", "host-3", cut]);
    let mut voters = members(&lab);
    voters.sort();
    assert_eq!(
        voters,
        [("host-1".to_string(), false), (cut.to_string(), false)],
        "both servers etcd voters"
    );
    phase("joined across the cut");

    let samples = quorum.assert_quorum_kept("etcd through the kill, the removal and the cut");
    phase(&format!("etcd's quorum kept in {} samples", samples.len()));
}
