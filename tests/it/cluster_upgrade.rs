//! `foundry component upgrade k3s --to VERSION` on a lab of systemd hosts: two servers and
//! an agent made at v1.31 from the lab's K3s stand-ins (one file per release, each saying
//! its own version: the Node's kubeletVersion is the running binary's), then taken to
//! v1.32. Skipping a minor version is refused before any run, a binary of another release
//! before any node is touched; the upgrade is killed
//! (SIGKILL, a failpoint) once the first server is done and resumed: the first server is
//! not restarted again, every node is restarted once, drained and uncordoned, keeps its
//! config.yaml byte for byte, and is Ready at v1.32; etcd's members, sampled throughout,
//! stay voters; a second upgrade has nothing to do. The servers run Debian's real etcd 3.4;
//! the API is the lab's Kubernetes API stand-in.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::{json_lines, killed};

const OLD: &str = "v1.31.9+k3s1";
const NEW: &str = "v1.32.4+k3s1";
const SKIPS: &str = "v1.33.1+k3s1";

fn foundry(lab: &Lab, args: &[&str]) -> Command {
    let config = lab.config.to_str().expect("utf8").to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend(args);
    lab.home.cmd(&all)
}

fn said(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(lab: &Lab, args: &[&str]) -> Output {
    let out = foundry(lab, args).output().expect("foundry");
    assert!(out.status.success(), "foundry {args:?}: {}", said(&out));
    out
}

/// `script` run by `sh` as root in host `name`'s container: its stdout, trimmed.
fn on(lab: &Lab, name: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", &lab.container(name), "sh", "-c", script])
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// How many times host `name`'s K3s unit started at `release` (its journal's lines).
fn starts(lab: &Lab, name: &str, release: &str) -> usize {
    on(
        lab,
        name,
        &format!(
            "journalctl --no-pager -o cat -u k3s -u k3s-agent | grep -c 'Starting k3s [a-z]* {release} (stand-in)' || true"
        ),
    )
    .parse()
    .unwrap_or(0)
}

/// The config's K3s binary: the lab's stand-in at `release`.
fn use_release(lab: &Lab, release: &str) {
    let dir = lab.home.path().join("labs").join(&lab.name).join("k3s");
    let text = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("binary:"))
        .expect("the config names the K3s binary");
    let indent = &line[..line.len() - line.trim_start().len()];
    let path = dir.join(format!("k3s-{release}"));
    assert!(path.exists(), "the lab wrote {}", path.display());
    let text = text.replacen(
        line,
        &format!("{indent}binary: {}", path.to_str().expect("utf8")),
        1,
    );
    std::fs::write(&lab.config, text).expect("writing the config");
}

/// `cluster node list -o json`: (name, version, Ready, cordoned).
fn nodes(lab: &Lab) -> Vec<(String, String, bool, bool)> {
    let out = ok(lab, &["cluster", "node", "list", "-o", "json"]);
    let mut found: Vec<_> = json_lines(&out.stdout)
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["kubelet_version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                n["ready"].as_bool().unwrap_or(false),
                n["cordoned"].as_bool().unwrap_or(true),
            )
        })
        .collect();
    found.sort();
    found
}

/// One look at etcd on a server's container: its members (node, is a learner), and the
/// nodes the API stand-in keeps there that are cordoned. Nothing when it did not answer
/// (its server restarting).
#[derive(Clone, Debug, Default)]
struct Sample {
    members: Vec<(String, bool)>,
    cordoned: Vec<String>,
}

fn sample(container: &str) -> Sample {
    let etcdctl = crate::k3s_standin::ETCDCTL;
    let script = format!(
        "{etcdctl} member list -w json 2>/dev/null; echo; echo '--- nodes'; \
         {etcdctl} get --prefix /registry/minions/ --print-value-only 2>/dev/null"
    );
    let Ok(out) = Command::new("docker")
        .args(["exec", container, "sh", "-c", &script])
        .output()
    else {
        return Sample::default();
    };
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (members, nodes) = text.split_once("--- nodes").unwrap_or((&text, ""));
    let members = crate::cluster_common::parse_members(members.trim().as_bytes());
    let cordoned = nodes
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|n| n["spec"]["unschedulable"] == true)
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    Sample { members, cordoned }
}

#[test]
fn an_upgrade_skipping_a_minor_is_refused_and_one_killed_between_servers_resumes_at_the_next() {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("upg", 3, &["--systemd"]);
    phase("lab up");
    use_release(&lab, OLD);
    ok(&lab, &["component", "install", "openbao"]);
    ok(&lab, &["cluster", "init", "--yes"]);
    ok(
        &lab,
        &[
            "cluster", "node", "add", "host-2", "--role", "server", "--yes",
        ],
    );
    ok(&lab, &["cluster", "node", "add", "host-3", "--yes"]);
    phase("cluster at v1.31");
    let hosts = ["host-1", "host-2", "host-3"];
    let at = |release: &str| -> Vec<(String, String, bool, bool)> {
        hosts
            .iter()
            .map(|h| (h.to_string(), release.to_string(), true, false))
            .collect()
    };
    assert_eq!(nodes(&lab), at(OLD));
    let config_yaml = |h: &str| on(&lab, h, "sha256sum /etc/rancher/k3s/config.yaml");
    let configs: Vec<String> = hosts.iter().map(|h| config_yaml(h)).collect();
    assert!(configs.iter().all(|c| c.len() > 64), "{configs:?}");

    // v1.31 -> v1.33 skips v1.32: refused before any run, nothing touched.
    use_release(&lab, SKIPS);
    let runs = lab.home.runs().len();
    let out = foundry(
        &lab,
        &["component", "upgrade", "k3s", "--to", SKIPS, "--yes"],
    )
    .output()
    .expect("foundry");
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("skips minor version v1.32"), "{text}");
    assert!(text.contains("version skew policy"), "{text}");
    assert!(
        text.contains("hint: upgrade to a v1.32 release first"),
        "{text}"
    );
    assert_eq!(lab.home.runs().len(), runs, "no run was started");
    assert_eq!(nodes(&lab), at(OLD));
    phase("a skipped minor refused");

    // --to v1.32 with the config's binary still v1.33's: the binary is asked its release on
    // the first server before any node is touched, and the run stops there.
    let out = foundry(&lab, &["component", "upgrade", "k3s", "--to", NEW, "--yes"])
        .output()
        .expect("foundry");
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("is not K3s {NEW}")), "{text}");
    assert!(text.contains("no node was changed"), "{text}");
    assert_eq!(nodes(&lab), at(OLD));
    for h in hosts {
        assert!(
            on(&lab, h, "/usr/local/bin/k3s --version").contains(OLD),
            "{h}'s binary untouched"
        );
    }
    phase("a binary of another release refused");

    // To v1.32, killed once host-1 is done (its uncordon recorded), before host-2 starts.
    use_release(&lab, NEW);
    let seen: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (seen, stop) = (seen.clone(), stop.clone());
        let containers = [lab.container("host-1"), lab.container("host-2")];
        std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(600);
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                let sample = sample(&containers[i % 2]);
                if !sample.members.is_empty() {
                    seen.lock().expect("samples").push(sample);
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let upgrade = ["component", "upgrade", "k3s", "--to", NEW, "--yes"];
    let out = foundry(&lab, &upgrade)
        .env("FOUNDRY_FAILPOINTS", "k3s/host-1/uncordon#0@completed")
        .output()
        .expect("foundry");
    assert!(killed(out.status), "not killed: {}", said(&out));
    assert_eq!(
        starts(&lab, "host-1", NEW),
        1,
        "host-1 upgraded before the kill"
    );
    assert_eq!(
        starts(&lab, "host-2", NEW),
        0,
        "host-2 not started before the kill"
    );
    assert!(
        on(&lab, "host-2", "/usr/local/bin/k3s --version").contains(OLD),
        "host-2's binary untouched before the kill"
    );
    phase("killed between the servers");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let run = stderr
        .lines()
        .find_map(|l| l.strip_prefix("starting stack-upgrade run "))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| panic!("the killed run's id: {stderr}"));
    ok(&lab, &["workflow", "resume", &run]);
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    phase("resumed");

    for h in hosts {
        assert_eq!(starts(&lab, h, NEW), 1, "{h} restarted once at {NEW}");
        assert!(
            on(&lab, h, "/usr/local/bin/k3s --version").contains(NEW),
            "{h}'s binary"
        );
    }
    assert_eq!(nodes(&lab), at(NEW), "all Ready at {NEW}, none cordoned");
    let after: Vec<String> = hosts.iter().map(|h| config_yaml(h)).collect();
    assert_eq!(after, configs, "config.yaml kept byte for byte");
    // etcd: both servers' members, voters, in every sample; each node seen cordoned (its
    // drain) at some point, and none is now.
    let samples = seen.lock().expect("samples").clone();
    assert!(samples.len() > 10, "etcd was sampled: {}", samples.len());
    for sample in &samples {
        let mut members = sample.members.clone();
        members.sort();
        assert_eq!(
            members,
            [("host-1".to_string(), false), ("host-2".to_string(), false)],
            "a member lost or a learner during the upgrade"
        );
    }
    for h in hosts {
        assert!(
            samples.iter().any(|s| s.cordoned.iter().any(|c| c == h)),
            "{h} was never seen cordoned: it was not drained"
        );
    }

    // Again: nothing to do, nothing restarted.
    let out = ok(&lab, &upgrade);
    let text = said(&out);
    assert!(text.contains("nothing to upgrade"), "{text}");
    for h in hosts {
        assert_eq!(starts(&lab, h, NEW), 1, "{h} not restarted again");
    }
    phase("again: nothing to do");
}
