//! `foundry component upgrade k3s --to VERSION` on a lab of systemd hosts: three servers and
//! an agent made at v1.31 from the lab's K3s stand-ins (one file per release, each saying
//! its own version: the Node's kubeletVersion is the running binary's), then taken to
//! v1.32 and to v1.33. Skipping a minor version is refused before any run, a binary of
//! another release before any node is touched. The upgrade to v1.32 is killed (SIGKILL, a
//! failpoint) once the first server is done, and the same command resumes that run: the
//! first server is not restarted again, every node is restarted once, drained and
//! uncordoned, keeps its config.yaml byte for byte, and is Ready at v1.32; the servers'
//! restarts are strictly one at a time (each begins after the previous one's K3s is up
//! again, as their journals date them). On the way to v1.33 one server's K3s never comes
//! back (its token file no longer the one its bootstrap data was made with: K3s exits at
//! start, and systemd keeps restarting it): the run waits the config's `join_timeout`,
//! then pauses naming the node, the version it runs and what to do, with no node after it
//! touched; the host fixed, `workflow resume` finishes it. etcd's quorum, sampled on the
//! servers throughout, is never lost: at every sample at most one server is not a healthy
//! voter. A second upgrade has nothing to do. The servers run Debian's real etcd 3.4; the
//! API is the lab's Kubernetes API stand-in.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::{json_lines, killed};

use crate::cluster_common::{QuorumSample, QuorumSampler, foundry, ok, on};

const OLD: &str = "v1.31.9+k3s1";
const NEW: &str = "v1.32.4+k3s1";
const NEXT: &str = "v1.33.1+k3s1";
const SERVERS: [&str; 3] = ["host-1", "host-2", "host-3"];
const HOSTS: [&str; 4] = ["host-1", "host-2", "host-3", "host-4"];
/// The token file config.yaml names (`token-file`).
const TOKEN_FILE: &str = "/etc/rancher/k3s/foundry-token";

fn said(out: &Output) -> String {
    format!(
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

/// When host `name`'s K3s first started at `release`, and when it was first up after that
/// (Unix seconds, from its unit's journal).
fn restarted(lab: &Lab, name: &str, release: &str) -> (f64, f64) {
    let lines = on(
        lab,
        name,
        "journalctl --no-pager -o short-unix -u k3s -u k3s-agent | grep -e 'Starting k3s' -e 'is up and running'",
    );
    let when = |l: &str| -> f64 {
        l.split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a journal line's time: {l}"))
    };
    let start = lines
        .lines()
        .find(|l| l.contains("Starting k3s") && l.contains(release))
        .map(when)
        .unwrap_or_else(|| panic!("{name} started at {release}: {lines}"));
    let up = lines
        .lines()
        .filter(|l| l.contains("is up and running"))
        .map(when)
        .find(|t| *t > start)
        .unwrap_or_else(|| panic!("{name} up at {release}: {lines}"));
    (start, up)
}

/// The config's K3s binary: the lab's stand-in at `release`.
fn use_release(lab: &Lab, release: &str) {
    let dir = lab.home.path().join("labs").join(&lab.name).join("k3s");
    let path = dir.join(format!("k3s-{release}"));
    assert!(path.exists(), "the lab wrote {}", path.display());
    k3s_setting(lab, "binary", path.to_str().expect("utf8"));
}

/// `components.k3s.<key>` set to `value` in the lab's config (the binary's line is there).
fn k3s_setting(lab: &Lab, key: &str, value: &str) {
    let text = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let binary = text
        .lines()
        .find(|l| l.trim_start().starts_with("binary:"))
        .expect("the config names the K3s binary");
    let indent = &binary[..binary.len() - binary.trim_start().len()];
    let line = format!("{indent}{key}: {value}");
    let text = match text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}:")))
    {
        Some(old) => text.replacen(old, &line, 1),
        None => text.replacen(binary, &format!("{line}\n{binary}"), 1),
    };
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

fn at(release: &str) -> Vec<(String, String, bool, bool)> {
    HOSTS
        .iter()
        .map(|h| (h.to_string(), release.to_string(), true, false))
        .collect()
}

/// Every node seen cordoned while it watched: `etcdctl watch` on the Nodes the API
/// stand-in keeps in etcd, run in host-1's container against all three servers' endpoints
/// (so it goes on while any one of them restarts), for 15 minutes at most.
struct CordonWatch {
    lab_host: String,
    child: std::process::Child,
    reader: std::thread::JoinHandle<String>,
}

const WATCH_PID: &str = "/root/cordon-watch.pid";

impl CordonWatch {
    fn start(lab: &Lab) -> CordonWatch {
        let endpoints: Vec<String> = lab.targets[..SERVERS.len()]
            .iter()
            .map(|t| format!("https://{}:2379", t.address))
            .collect();
        let etcdctl = crate::k3s_standin::ETCDCTL
            .replace("ETCDCTL_API=3 ", "")
            .replace("https://127.0.0.1:2379", &endpoints.join(","));
        let script = format!(
            "echo $$ > {WATCH_PID}; export ETCDCTL_API=3; \
             exec timeout 900 {etcdctl} watch --prefix /registry/minions/"
        );
        let mut child = Command::new("docker")
            .args(["exec", &lab.container("host-1"), "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("docker exec etcdctl watch");
        let mut stdout = child.stdout.take().expect("its stdout");
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
            text
        });
        foundry_tests::wait_for("the watch to start", Duration::from_secs(30), || {
            !on(lab, "host-1", &format!("cat {WATCH_PID} 2>/dev/null")).is_empty()
        });
        CordonWatch {
            lab_host: lab.container("host-1"),
            child,
            reader,
        }
    }

    /// Stops the watch (its own process, by its id): the nodes it saw cordoned.
    fn stopped(mut self) -> Vec<String> {
        let _ = Command::new("docker")
            .args([
                "exec",
                &self.lab_host,
                "sh",
                "-c",
                &format!("kill $(cat {WATCH_PID})"),
            ])
            .output();
        let _ = self.child.wait();
        let text = self.reader.join().unwrap_or_default();
        let mut seen: Vec<String> = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|n| n["spec"]["unschedulable"] == true)
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }
}

/// Every sample has all three servers' members, and at most one of them not a healthy
/// voter: servers restarted one at a time, quorum never lost.
fn one_at_a_time(samples: &[QuorumSample], what: &str) {
    for s in samples {
        let mut names: Vec<&str> = s.members.iter().map(|(n, _, _)| n.as_str()).collect();
        names.sort();
        assert_eq!(names, SERVERS, "{what}: members at {:.1} s", s.at);
        assert!(
            s.down().len() <= 1,
            "{what}: two servers down together at {:.1} s: {:?}",
            s.at,
            s.members
        );
    }
}

#[test]
fn k3s_upgrades_server_by_server_keeping_quorum_resumed_by_the_same_command_and_paused_by_a_server_that_never_comes_back()
 {
    let began = Instant::now();
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    let lab = Lab::up_with("upg", 4, &["--systemd"]);
    phase("lab up");
    use_release(&lab, OLD);
    ok(&lab, &["component", "install", "openbao"]);
    ok(&lab, &["cluster", "init", "--yes"]);
    ok(
        &lab,
        &[
            "cluster", "node", "add", "host-2", "host-3", "--role", "server", "--yes",
        ],
    );
    ok(
        &lab,
        &[
            "cluster", "node", "add", "host-4", "--role", "agent", "--yes",
        ],
    );
    phase("cluster at v1.31");
    assert_eq!(nodes(&lab), at(OLD));
    let config_yaml = |h: &str| on(&lab, h, "sha256sum /etc/rancher/k3s/config.yaml");
    let configs: Vec<String> = HOSTS.iter().map(|h| config_yaml(h)).collect();
    assert!(configs.iter().all(|c| c.len() > 64), "{configs:?}");

    // v1.31 -> v1.33 skips v1.32: refused before any run, nothing touched.
    use_release(&lab, NEXT);
    let runs = lab.home.runs().len();
    let out = foundry(
        &lab,
        &["component", "upgrade", "k3s", "--to", NEXT, "--yes"],
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
    for h in HOSTS {
        assert!(
            on(&lab, h, "/usr/local/bin/k3s --version").contains(OLD),
            "{h}'s binary untouched"
        );
    }
    phase("a binary of another release refused");

    // To v1.32, killed once host-1 is done (its uncordon recorded), before host-2 starts;
    // then the same command again.
    use_release(&lab, NEW);
    let quorum = QuorumSampler::start_on(&lab, &SERVERS, Duration::from_secs(1200));
    let cordons = CordonWatch::start(&lab);
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
    for h in ["host-2", "host-3", "host-4"] {
        assert_eq!(starts(&lab, h, NEW), 0, "{h} not started before the kill");
        assert!(
            on(&lab, h, "/usr/local/bin/k3s --version").contains(OLD),
            "{h}'s binary untouched before the kill"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let run = stderr
        .lines()
        .find_map(|l| l.strip_prefix("starting stack-upgrade run "))
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|| panic!("the killed run's id: {stderr}"));
    let runs = lab.home.runs().len();
    phase("killed between the first two servers");
    let out = ok(&lab, &upgrade);
    let text = said(&out);
    assert!(
        text.contains(&format!("resuming stack-upgrade run {run}")),
        "the same command resumes the killed run: {text}"
    );
    assert_eq!(lab.home.runs().len(), runs, "no second run");
    let seen_cordoned = cordons.stopped();
    phase("resumed by the same command");

    for h in HOSTS {
        assert_eq!(starts(&lab, h, NEW), 1, "{h} restarted once at {NEW}");
        assert!(
            on(&lab, h, "/usr/local/bin/k3s --version").contains(NEW),
            "{h}'s binary"
        );
    }
    assert_eq!(nodes(&lab), at(NEW), "all Ready at {NEW}, none cordoned");
    assert_eq!(
        seen_cordoned, HOSTS,
        "each node drained (cordoned) on its turn"
    );
    // Strictly one at a time: each restart began after the one before was up again, and
    // etcd, sampled between the two, had every server a healthy voter again.
    let times: Vec<(f64, f64)> = HOSTS.iter().map(|h| restarted(&lab, h, NEW)).collect();
    let samples = quorum.samples();
    for i in 1..HOSTS.len() {
        let ((_, up), (start, _)) = (times[i - 1], times[i]);
        assert!(
            start > up,
            "{} restarted at {start:.3}, before {} was up again at {up:.3}",
            HOSTS[i],
            HOSTS[i - 1]
        );
        if i < SERVERS.len() {
            assert!(
                samples
                    .iter()
                    .any(|s| s.unix > up && s.unix < start && s.down().is_empty()),
                "no sample between {} up ({up:.3}) and {} restarting ({start:.3}) had every \
                 server a healthy voter",
                HOSTS[i - 1],
                HOSTS[i]
            );
        }
    }
    one_at_a_time(&samples, "to v1.32");
    let after: Vec<String> = HOSTS.iter().map(|h| config_yaml(h)).collect();
    assert_eq!(after, configs, "config.yaml kept byte for byte");
    phase("one at a time, quorum kept");

    // To v1.33 with a 20 s wait per node: host-2's K3s never comes back, its token file no
    // longer the one its bootstrap data was made with (K3s exits at start; systemd restarts
    // it again and again). The run waits 20 s, pauses naming the node and what to do, and
    // touches no node after it.
    k3s_setting(&lab, "join_timeout", "20s");
    use_release(&lab, NEXT);
    on(
        &lab,
        "host-2",
        &format!(
            "cp -p {TOKEN_FILE} /root/token.kept && \
             printf 'K10%s::server:not-this-clusters-secret\\n' $(printf x | sha256sum | cut -c1-64) > {TOKEN_FILE}"
        ),
    );
    let upgrade = ["component", "upgrade", "k3s", "--to", NEXT, "--yes"];
    let waited = Instant::now();
    let out = foundry(&lab, &upgrade).output().expect("foundry");
    let waited = waited.elapsed();
    let text = said(&out);
    assert!(!out.status.success(), "{text}");
    for needed in [
        format!(
            "node host-2 did not come back at {NEXT} within 20 s of its restart (it ran {NEW})"
        ),
        format!("K3s {NEXT} is not running: its unit k3s is `"),
        "the upgrade stops at this node".into(),
        "hint: see why on host-2 (`journalctl -u k3s`".into(),
        "foundry workflow resume".into(),
    ] {
        assert!(text.contains(&needed), "{needed} in: {text}");
    }
    assert!(
        waited >= Duration::from_secs(20) && waited < Duration::from_secs(150),
        "waited {waited:?}"
    );
    let paused = lab
        .home
        .runs()
        .into_iter()
        .find(|r| r["state"] == "paused")
        .unwrap_or_else(|| panic!("a paused run: {:?}", lab.home.runs()));
    let paused = paused["run"].as_str().expect("its id").to_string();
    assert!(
        on(
            &lab,
            "host-2",
            "journalctl --no-pager -o cat -u k3s | grep -c 'encrypted with a different token'"
        )
        .parse::<u32>()
        .unwrap_or(0)
            >= 1,
        "host-2's K3s refused its token"
    );
    assert_eq!(starts(&lab, "host-1", NEXT), 1, "host-1 upgraded first");
    for h in ["host-3", "host-4"] {
        assert_eq!(starts(&lab, h, NEXT), 0, "{h} not restarted after host-2");
        assert!(
            on(&lab, h, "/usr/local/bin/k3s --version").contains(NEW),
            "{h}'s binary untouched after host-2"
        );
    }
    let now = nodes(&lab);
    assert!(
        now.contains(&("host-2".into(), NEW.into(), true, true)),
        "host-2 drained, still at {NEW}: {now:?}"
    );
    assert!(
        now.contains(&("host-3".into(), NEW.into(), true, false)),
        "host-3 not drained: {now:?}"
    );
    phase("paused at host-2, the nodes after it untouched");

    // Fixed on the host; `workflow resume` waits again and goes on.
    on(
        &lab,
        "host-2",
        &format!("cp -p /root/token.kept {TOKEN_FILE}"),
    );
    ok(&lab, &["workflow", "resume", &paused]);
    assert_eq!(nodes(&lab), at(NEXT), "all Ready at {NEXT}, none cordoned");
    for h in ["host-1", "host-3", "host-4"] {
        assert_eq!(starts(&lab, h, NEXT), 1, "{h} restarted once at {NEXT}");
    }
    let samples = quorum.assert_quorum_kept("etcd through both upgrades");
    one_at_a_time(&samples, "through both upgrades");
    let after: Vec<String> = HOSTS.iter().map(|h| config_yaml(h)).collect();
    assert_eq!(after, configs, "config.yaml kept byte for byte");
    phase(&format!(
        "resumed once fixed; quorum kept in {} samples",
        samples.len()
    ));

    // Again: nothing to do, nothing restarted.
    let before: Vec<usize> = HOSTS.iter().map(|h| starts(&lab, h, NEXT)).collect();
    let out = ok(&lab, &upgrade);
    let text = said(&out);
    assert!(text.contains("nothing to upgrade"), "{text}");
    let after: Vec<usize> = HOSTS.iter().map(|h| starts(&lab, h, NEXT)).collect();
    assert_eq!(after, before, "no node restarted again");
    phase("again: nothing to do");
}
