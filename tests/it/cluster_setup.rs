//! `foundry setup` bringing up the whole cluster the config describes, on a lab of systemd
//! hosts (`lab up --systemd`): 3 servers and 3 agents running the lab's K3s stand-in (real
//! systemd units, Debian's real etcd 3.4 for the servers, the Kubernetes API stand-in on
//! :6443 with its helm-controller), then the charts. The servers are seen joining strictly
//! one at a time in etcd's own member list (sampled throughout), the agents side by side
//! (their install windows, written on each host by a counting installer, overlap), every
//! join through the VIP that kube-vip's stand-in holds; the charts are HelmCharts in the
//! API. A second setup changes nothing and installs nothing again.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry_tests::json_lines;
use foundry_tests::lab::Lab;

use crate::cluster_common::{
    Members, count_installs, installs, member_list, on, parse_members, starts,
};

/// The lab's config with `servers` control-plane nodes (the first hosts), the rest workers.
fn with_servers(lab: &Lab, servers: usize) {
    let mut stack = foundry_workflows::config::load(&lab.config).expect("the lab's config");
    let cluster = stack
        .cluster
        .as_mut()
        .expect("a systemd lab's config has a cluster");
    assert_eq!(cluster.nodes.len(), lab.names.len(), "every host a node");
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        node.role = if i < servers {
            foundry_workflows::config::NodeRole::ControlPlane
        } else {
            foundry_workflows::config::NodeRole::Worker
        };
    }
    let text = foundry_workflows::config::render(&stack, "The lab's hosts, 3 of them servers.")
        .expect("render");
    std::fs::write(&lab.config, text).expect("writing the config");
}

fn setup(lab: &Lab, json: bool) -> std::process::Output {
    let config = lab.config.to_str().expect("utf8");
    let mut args = vec!["--config", config, "setup", "--yes"];
    if json {
        args.extend(["-o", "json"]);
    }
    lab.home
        .cmd(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("foundry setup")
}

fn said(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The body of an answer of [`crate::k3s_standin::api`] (its last line is the code).
fn body(answer: &str) -> &str {
    answer.rsplit_once('\n').map_or(answer, |(body, _)| body)
}

/// The start and end of `host`'s one install.
fn window(lab: &Lab, host: &str) -> (f64, f64) {
    let seen = installs(lab, host);
    let at = |what: &str| {
        seen.iter()
            .find(|(w, _)| w == what)
            .map(|(_, at)| *at)
            .unwrap_or_else(|| panic!("{host}'s install has no {what}: {seen:?}"))
    };
    (at("start"), at("end"))
}

#[test]
fn setup_brings_up_three_servers_one_at_a_time_three_agents_together_and_the_charts() {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("cset", 6, &["--systemd"]);
    phase("lab up");
    with_servers(&lab, 3);
    count_installs(&lab);
    let (servers, agents) = (
        ["host-1", "host-2", "host-3"],
        ["host-4", "host-5", "host-6"],
    );

    // etcd's members, sampled on host-1 all through the setup.
    let seen: Arc<Mutex<Vec<Members>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let container = lab.container("host-1");
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(1500);
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                if let Ok(out) = Command::new("docker")
                    .args(["exec", &container, "sh", "-c", &member_list()])
                    .output()
                {
                    let members = parse_members(&out.stdout);
                    if !members.is_empty() {
                        seen.lock().expect("samples").push(members);
                    }
                }
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let out = setup(&lab, true);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    assert!(out.status.success(), "setup: {}", said(&out));
    phase("setup");
    let report = json_lines(&out.stdout);
    let summary = report.last().expect("setup's summary");
    assert_eq!(summary["changed"], true, "{report:?}");
    let healthy: Vec<(String, bool)> = summary["status"]
        .as_array()
        .expect("status")
        .iter()
        .map(|s| {
            (
                s["component"].as_str().unwrap_or_default().to_string(),
                s["healthy"] == true,
            )
        })
        .collect();
    for c in ["openbao", "k3s", "contour", "cert-manager"] {
        assert!(
            healthy.contains(&(c.to_string(), true)),
            "{c} healthy after setup: {healthy:?}"
        );
    }

    // Every node installed once; the servers strictly one at a time: never two learners,
    // a server a member only once the one before it is a voter, its install started
    // after the one before it ended.
    for host in servers.iter().chain(&agents) {
        assert_eq!(starts(&lab, host), 1, "{host} installed once");
    }
    let samples = seen.lock().expect("samples").clone();
    assert!(samples.len() > 10, "etcd was sampled: {}", samples.len());
    for sample in &samples {
        let learners = sample.iter().filter(|(_, l)| *l).count();
        assert!(learners <= 1, "two learners at once: {sample:?}");
        let has = |n: &str| sample.iter().any(|(m, _)| m == n);
        let voter = |n: &str| sample.iter().any(|(m, l)| m == n && !l);
        for pair in servers.windows(2) {
            assert!(
                !has(pair[1]) || voter(pair[0]),
                "{} joined before {} was a voter: {sample:?}",
                pair[1],
                pair[0]
            );
        }
    }
    for pair in servers.windows(2) {
        let (_, ended) = window(&lab, pair[0]);
        let (started, _) = window(&lab, pair[1]);
        assert!(
            started > ended,
            "{} started at {started}, before {} ended at {ended}",
            pair[1],
            pair[0]
        );
    }
    let mut voters = parse_members(on(&lab, "host-1", &member_list()).as_bytes());
    voters.sort();
    let want: Members = servers.iter().map(|s| (s.to_string(), false)).collect();
    assert_eq!(voters, want, "three voters");
    // The agents side by side: every agent's install started before any of them ended,
    // and after the last server's ended.
    let windows: Vec<(f64, f64)> = agents.iter().map(|a| window(&lab, a)).collect();
    let last_start = windows.iter().map(|w| w.0).fold(f64::MIN, f64::max);
    let first_end = windows.iter().map(|w| w.1).fold(f64::MAX, f64::min);
    assert!(
        last_start < first_end,
        "the agents' installs overlap: {windows:?}"
    );
    let (_, servers_done) = window(&lab, "host-3");
    assert!(
        windows.iter().all(|w| w.0 > servers_done),
        "agents after the servers: {windows:?} vs {servers_done}"
    );
    // Every join went through the VIP, and every node's unit runs.
    let vip = foundry_workflows::config::load(&lab.config)
        .expect("config")
        .cluster
        .and_then(|c| c.k8s_vip)
        .map(|v| v.value.to_string())
        .expect("the lab's VIP");
    for host in servers.iter().skip(1).chain(&agents) {
        let config = on(&lab, host, "cat /etc/rancher/k3s/config.yaml");
        assert!(
            config.contains(&format!("server: https://{vip}:6443")),
            "{host} joins through the VIP: {config}"
        );
    }
    for host in servers {
        assert_eq!(
            on(&lab, host, "systemctl is-active k3s"),
            "active",
            "{host}"
        );
    }
    for host in agents {
        assert_eq!(
            on(&lab, host, "systemctl is-active k3s-agent"),
            "active",
            "{host}"
        );
    }
    phase("servers one at a time, agents together, through the VIP");

    // The cluster as `cluster status` sees it, through the VIP: six nodes Ready.
    let config = lab.config.to_str().expect("utf8");
    let status = lab
        .home
        .ok(&["--config", config, "cluster", "status", "-o", "json"]);
    let status = json_lines(status.as_bytes());
    let status = status.last().expect("status");
    assert_eq!(status["api"], format!("https://{vip}:6443"), "{status}");
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 6, "{status}");
    assert!(nodes.iter().all(|n| n["ready"] == true), "{status}");
    assert_eq!(status["etcd"]["voters"], 3, "{status}");

    // The charts: HelmCharts in the API (through the first server's own API stand-in),
    // each with its install Job complete.
    let charts = crate::k3s_standin::api(&lab, 0, "GET", "/apis/helm.cattle.io/v1/helmcharts");
    let charts: serde_json::Value = serde_json::from_str(body(&charts)).expect("a HelmChart list");
    let names: Vec<&str> = charts["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|c| c["metadata"]["name"].as_str())
        .collect();
    for chart in ["contour", "cert-manager"] {
        assert!(names.contains(&chart), "HelmChart {chart}: {names:?}");
    }
    let jobs = crate::k3s_standin::api(&lab, 0, "GET", "/apis/batch/v1/jobs");
    let jobs: serde_json::Value = serde_json::from_str(body(&jobs)).expect("a Job list");
    for chart in ["contour", "cert-manager"] {
        let job = jobs["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|j| j["metadata"]["name"] == format!("helm-install-{chart}"))
            .unwrap_or_else(|| panic!("helm-install-{chart}: {jobs}"));
        assert_eq!(job["status"]["succeeded"], 1, "{job}");
    }
    phase("charts");

    // The plan: the cluster and the charts as the last phases, nothing left to do.
    let planned = lab.home.ok(&[
        "--config",
        lab.config.to_str().expect("utf8"),
        "stack",
        "plan",
        "-o",
        "json",
    ]);
    let planned = json_lines(planned.as_bytes());
    let order: Vec<&str> = planned
        .iter()
        .filter_map(|p| p["component"].as_str())
        .collect();
    let at = |c: &str| order.iter().position(|o| *o == c).unwrap_or(usize::MAX);
    assert!(
        at("openbao") < at("k3s") && at("k3s") < at("contour") && at("k3s") < at("cert-manager"),
        "{order:?}"
    );
    assert_eq!(
        order.len() - 3,
        at("k3s"),
        "the cluster and the charts last: {order:?}"
    );
    for p in &planned {
        assert_eq!(p["plan"], serde_json::json!([]), "{p}");
    }

    // Again: nothing changes, nothing is installed again.
    let again = setup(&lab, false);
    let text = said(&again);
    assert!(again.status.success(), "setup again: {text}");
    assert!(text.contains("setup complete: nothing changed"), "{text}");
    for host in servers.iter().chain(&agents) {
        assert_eq!(starts(&lab, host), 1, "{host} not installed again");
    }
    phase("again: nothing changed");
}

/// The wait for the VIP before the first join through it, against the Kubernetes API
/// stand-in through the real `kube` crate: a VIP where nothing answers is said to be
/// kube-vip not running while nobody holds its lease, and an address outside the servers'
/// network once a server holds it; a VIP that answers ends the wait at once.
#[tokio::test]
async fn the_vip_wait_says_whether_kube_vip_runs_or_the_vip_is_out_of_reach() {
    use foundry_activities::kube::KubeAccess;
    use foundry_core::secret::{FileSecretStore, SecretStore};
    use foundry_core::{Activity, ActivityCx, SecretValue};
    use foundry_tests::kube_standin::{KubeApi, Store, free_port};
    use foundry_workflows::k3s::add::VipAnswers;
    use k8s_openapi::api::coordination::v1::Lease;

    let pki = crate::kube_api_standin::pki();
    let api = KubeApi::start(Store::Memory, &pki, &[]);
    let kube = crate::kube_api_standin::client(&api, None).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Arc::new(FileSecretStore::new(dir.path().join("secrets")));
    let kubeconfig = crate::kube_activities::inline_kubeconfig(&pki, "https://127.0.0.1:9");
    let reference = store.put(&SecretValue::new(kubeconfig)).expect("put");
    let cx = ActivityCx::standalone("vip-test").with_secrets(store.clone());
    let at = |server: String| KubeAccess {
        kubeconfig: reference.clone(),
        server: Some(server),
    };
    // Nothing listens at the "VIP": a loopback port nobody holds.
    let mut wait = VipAnswers {
        access: at(format!("https://127.0.0.1:{}", free_port())),
        first: at(api.url()),
        vip: "10.77.0.220".into(),
        timeout_s: 1,
    };
    let e = wait.apply(&cx).await.expect_err("nothing answers");
    assert!(!e.transient, "{}", e.message);
    assert!(
        e.message
            .contains("the cluster's API does not answer at its VIP 10.77.0.220 after 1 s"),
        "{}",
        e.message
    );
    assert!(
        e.message
            .contains("kube-vip is not running, no server holds its lease plndr-cp-lock"),
        "{}",
        e.message
    );
    assert!(e.message.contains("hint: "), "{}", e.message);

    let leases: kube::Api<Lease> = kube::Api::namespaced(kube.clone(), "kube-system");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "plndr-cp-lock", "namespace": "kube-system"},
        "spec": {"holderIdentity": "host-2", "leaseDurationSeconds": 15}
    }))
    .expect("a lease");
    leases
        .create(&kube::api::PostParams::default(), &lease)
        .await
        .expect("lease");
    let e = wait.apply(&cx).await.expect_err("still nothing answers");
    assert!(
        e.message.contains("kube-vip on host-2 holds its lease")
            && e.message
                .contains("a free address of the servers' own network"),
        "{}",
        e.message
    );

    // The VIP answering: no wait.
    wait.access = at(api.url());
    let began = Instant::now();
    wait.apply(&cx).await.expect("the VIP answers");
    assert!(began.elapsed() < Duration::from_secs(1));
}
