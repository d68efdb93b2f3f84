//! What the cluster tests share: `foundry` on a lab's config, commands in the lab's host
//! containers (through Docker, so they work on a host cut off the network), the counting
//! installer (each install.sh run on a host written down, and held at the test's word),
//! etcd's members as `etcdctl` sees them, and a sampler of etcd's quorum.

use std::process::{Child, Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry_tests::kill;
use foundry_tests::lab::Lab;

pub(crate) fn foundry(lab: &Lab, args: &[&str]) -> Command {
    let config = lab.config.to_str().expect("utf8").to_string();
    let mut all = vec!["--config", config.as_str()];
    all.extend(args);
    lab.home.cmd(&all)
}

pub(crate) fn run(lab: &Lab, args: &[&str]) -> Output {
    foundry(lab, args).output().expect("foundry")
}

pub(crate) fn ok(lab: &Lab, args: &[&str]) -> Output {
    let out = run(lab, args);
    assert!(
        out.status.success(),
        "foundry {args:?}: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `script` run by `sh` as root in host `name`'s container: its stdout, trimmed.
pub(crate) fn on(lab: &Lab, name: &str, script: &str) -> String {
    let out = Command::new("docker")
        .args(["exec", &lab.container(name), "sh", "-c", script])
        .output()
        .expect("docker exec");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Each install's start and end on host `name`, as the counting installer wrote them:
/// (`start` or `end`, seconds).
pub(crate) fn installs(lab: &Lab, name: &str) -> Vec<(String, f64)> {
    on(lab, name, "cat /root/installs 2>/dev/null")
        .lines()
        .filter_map(|l| {
            let (what, at) = l.split_once(' ')?;
            Some((what.to_string(), at.trim().parse().ok()?))
        })
        .collect()
}

pub(crate) fn starts(lab: &Lab, name: &str) -> usize {
    installs(lab, name)
        .iter()
        .filter(|(w, _)| w == "start")
        .count()
}

/// etcd's members: (name, is a learner).
pub(crate) type Members = Vec<(String, bool)>;

/// `etcdctl member list` over TLS with K3s's etcd client certificate.
pub(crate) fn member_list() -> String {
    format!(
        "{} member list -w json 2>/dev/null",
        crate::k3s_standin::ETCDCTL
    )
}

/// `etcdctl member list -w json`'s members; none when it did not answer.
pub(crate) fn parse_members(out: &[u8]) -> Members {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(out) else {
        return Vec::new();
    };
    json["members"]
        .as_array()
        .map(|members| {
            members
                .iter()
                .map(|m| {
                    // K3s names a member `<node>-<suffix>`.
                    let name = m["name"].as_str().unwrap_or_default();
                    let node = name.rsplit_once('-').map_or(name, |(node, _)| node);
                    (node.to_string(), m["isLearner"].as_bool().unwrap_or(false))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The etcd members host-1 sees.
pub(crate) fn members(lab: &Lab) -> Members {
    parse_members(on(lab, "host-1", &member_list()).as_bytes())
}

/// The lab's config naming a counting installer (the stand-in, its runs written down).
/// It also waits, before it does anything, while the host has a file `/root/hold` (at
/// most 5 minutes): how a test holds an install in its middle, at a moment of its choosing
/// ([`hold`], [`release`]).
pub(crate) fn count_installs(lab: &Lab) {
    let dir = lab.home.path().join("labs").join(&lab.name).join("k3s");
    let standin = dir.join("install.sh");
    let text = std::fs::read_to_string(&standin).expect("the install.sh stand-in");
    let counting = text.replacen(
        "set -ef\n",
        "set -ef\necho \"start $(date +%s.%N)\" >> /root/installs\n\
         trap 'echo \"end $(date +%s.%N)\" >> /root/installs' EXIT\n\
         held=0\nwhile [ -e /root/hold ] && [ $held -lt 1500 ]; do sleep 0.2; held=$((held + 1)); done\n",
        1,
    );
    assert_ne!(counting, text, "the stand-in starts with `set -ef`");
    let path = lab.home.path().join("counting-install.sh");
    std::fs::write(&path, counting).expect("writing the counting installer");
    let config = std::fs::read_to_string(&lab.config).expect("the lab's config");
    let from = standin.to_str().expect("utf8");
    assert!(
        config.contains(from),
        "the lab's config names the stand-in: {config}"
    );
    let config = config.replace(from, path.to_str().expect("utf8"));
    std::fs::write(&lab.config, config).expect("writing the config");
}

/// Foundry killed, for sure, and reaped.
pub(crate) fn killed(mut child: Child) {
    kill(&mut child);
    let _ = child.wait();
}

/// Holds the next install on host `name` before it does anything (see [`count_installs`]).
pub(crate) fn hold(lab: &Lab, name: &str) {
    on(lab, name, "touch /root/hold");
}

/// Lets a held install on host `name` go on.
pub(crate) fn release(lab: &Lab, name: &str) {
    on(lab, name, "rm -f /root/hold");
}

/// Whether an install on host `name` started and has not ended.
pub(crate) fn installing(lab: &Lab, name: &str) -> bool {
    let seen = installs(lab, name);
    let started = seen.iter().filter(|(w, _)| w == "start").count();
    let ended = seen.iter().filter(|(w, _)| w == "end").count();
    started > ended
}

/// One look at etcd's quorum: each member, whether it votes, and whether its own
/// endpoint said it is healthy (etcd's `/health`, through `etcdctl endpoint health`).
#[derive(Clone, Debug)]
pub(crate) struct QuorumSample {
    /// Seconds since the sampler started.
    pub at: f64,
    /// When, as Unix seconds (to set beside the hosts' journals: the lab's containers
    /// share this machine's clock).
    pub unix: f64,
    /// (node, is a learner, healthy); empty when etcd did not answer at all.
    pub members: Vec<(String, bool, bool)>,
}

impl QuorumSample {
    pub fn voters(&self) -> usize {
        self.members.iter().filter(|(_, l, _)| !l).count()
    }

    pub fn healthy_voters(&self) -> usize {
        self.members.iter().filter(|(_, l, h)| !l && *h).count()
    }

    pub fn learners(&self) -> usize {
        self.members.iter().filter(|(_, l, _)| *l).count()
    }

    /// A majority of the voters is healthy.
    pub fn has_quorum(&self) -> bool {
        self.voters() > 0 && self.healthy_voters() > self.voters() / 2
    }

    /// The members that are not healthy voters: learners, and voters that did not answer.
    pub fn down(&self) -> Vec<&str> {
        self.members
            .iter()
            .filter(|(_, l, h)| *l || !h)
            .map(|(n, _, _)| n.as_str())
            .collect()
    }
}

/// The member list and each member's health, read on host `name` (one `docker exec`).
fn quorum_sample(container: &str, began: Instant) -> QuorumSample {
    let etcdctl = format!(
        "{} --dial-timeout=3s --command-timeout=5s",
        crate::k3s_standin::ETCDCTL
    );
    let script = format!(
        "{etcdctl} member list -w json 2>/dev/null; echo; echo '#health'; \
         {etcdctl} endpoint health --cluster -w json 2>/dev/null; true"
    );
    let out = Command::new("docker")
        .args(["exec", container, "sh", "-c", &script])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let at = began.elapsed().as_secs_f64();
    let unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let (list, health) = out.split_once("#health").unwrap_or((out.as_str(), ""));
    let list: serde_json::Value = serde_json::from_str(list.trim()).unwrap_or_default();
    let health: serde_json::Value = serde_json::from_str(health.trim()).unwrap_or_default();
    let healthy: Vec<&str> = health
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["health"].as_bool() == Some(true))
        .filter_map(|h| h["endpoint"].as_str())
        .collect();
    let members = list["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default();
            let node = name.rsplit_once('-').map_or(name, |(node, _)| node);
            let ok = m["clientURLs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|u| u.as_str())
                .any(|u| healthy.contains(&u));
            (
                node.to_string(),
                m["isLearner"].as_bool().unwrap_or(false),
                ok,
            )
        })
        .collect();
    QuorumSample { at, unix, members }
}

/// etcd's quorum sampled on a server (through its container) until stopped, at most
/// `for_at_most`: the member list and each member's health, about 3 times a second. Sampled
/// on several servers ([`QuorumSampler::start_on`]), each sample is asked of the one that
/// answered last, and of the next when it does not (it is restarting).
pub(crate) struct QuorumSampler {
    samples: Arc<Mutex<Vec<QuorumSample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl QuorumSampler {
    pub fn start(lab: &Lab, server: &str, for_at_most: Duration) -> QuorumSampler {
        QuorumSampler::start_on(lab, &[server], for_at_most)
    }

    pub fn start_on(lab: &Lab, servers: &[&str], for_at_most: Duration) -> QuorumSampler {
        let samples: Arc<Mutex<Vec<QuorumSample>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let containers: Vec<String> = servers.iter().map(|s| lab.container(s)).collect();
        let thread = {
            let (samples, stop) = (samples.clone(), stop.clone());
            std::thread::spawn(move || {
                let began = Instant::now();
                let mut at = 0;
                while !stop.load(Ordering::Relaxed) && began.elapsed() < for_at_most {
                    let mut sample = quorum_sample(&containers[at], began);
                    for _ in 1..containers.len() {
                        if !sample.members.is_empty() {
                            break;
                        }
                        at = (at + 1) % containers.len();
                        sample = quorum_sample(&containers[at], began);
                    }
                    samples.lock().expect("samples").push(sample);
                    std::thread::sleep(Duration::from_millis(300));
                }
            })
        };
        QuorumSampler {
            samples,
            stop,
            thread: Some(thread),
        }
    }

    /// The samples so far.
    pub fn samples(&self) -> Vec<QuorumSample> {
        self.samples.lock().expect("samples").clone()
    }

    /// Stops sampling and checks every sample: etcd answered, a majority of its voters
    /// healthy, never two learners. Returns the samples.
    pub fn assert_quorum_kept(mut self, what: &str) -> Vec<QuorumSample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let samples = self.samples();
        assert!(
            samples.len() >= 10,
            "{what}: etcd sampled {} times",
            samples.len()
        );
        for sample in &samples {
            assert!(
                sample.has_quorum(),
                "{what}: etcd without a healthy majority of voters at {:.1} s: {:?}",
                sample.at,
                sample.members
            );
            assert!(
                sample.learners() <= 1,
                "{what}: two learners at {:.1} s: {:?}",
                sample.at,
                sample.members
            );
        }
        samples
    }
}

impl Drop for QuorumSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
