//! The K3s stand-in and its install.sh stand-in (`workflows/src/lab/standin/`), against a
//! lab of systemd hosts (`lab up --systemd`): real systemd runs the units, real sshd
//! takes the commands, and the servers' etcd is Debian's real etcd 3.4, so learners,
//! membership and quorum are etcd's own. The stand-ins are put on the hosts with
//! `docker cp`: these tests test the stand-ins, not Foundry's upload. No K3s binary can
//! be had here; what these prove is the stand-in's contract, not K3s's.

use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;

/// The lab's host `i` (0-based): its name and address.
pub(crate) fn host(lab: &Lab, i: usize) -> (&str, &str) {
    (&lab.names[i], &lab.targets[i].address)
}

/// `script` run by `sh` as root on the host, through SSH; its stdin is the script, so
/// no value in it (a token read on the host) is in any argv.
pub(crate) fn spawn(lab: &Lab, i: usize, script: &str) -> Child {
    let mut child = Lab::ssh_command(&lab.targets[i], "sudo sh -s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssh");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("writing the script");
    child
}

pub(crate) fn run(lab: &Lab, i: usize, script: &str) -> Output {
    spawn(lab, i, script).wait_with_output().expect("ssh")
}

/// Runs `script` on host `i`, expecting success; its stdout, trimmed.
pub(crate) fn ok(lab: &Lab, i: usize, script: &str) -> String {
    let out = run(lab, i, script);
    assert!(
        out.status.success(),
        "on {}: {script}\nstdout: {}\nstderr: {}",
        lab.names[i],
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Polls `cond` every 300 ms (each poll is a round trip to a lab host) until it holds;
/// panics naming `what` at the deadline.
pub(crate) fn until(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// Waits for `child` to exit, for at most `deadline`; kills it past that.
pub(crate) fn finish(mut child: Child, what: &str, deadline: Duration) -> Output {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if child.try_wait().expect("polling").is_some() {
            return child.wait_with_output().expect("output");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    panic!(
        "timed out after {deadline:?} waiting for {what}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn succeeded(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The stand-ins `lab up --systemd` wrote into the lab's directory, copied onto every
/// host: `k3s` to /usr/local/bin, `install.sh` to /root.
pub(crate) fn put_standins(lab: &Lab) {
    let dir = lab.home.path().join("labs").join(&lab.name).join("k3s");
    for name in lab.names.clone() {
        let container = lab.container(&name);
        for (file, to) in [
            ("k3s", "/usr/local/bin/k3s"),
            ("install.sh", "/root/install.sh"),
        ] {
            let out = Command::new("docker")
                .arg("cp")
                .arg(dir.join(file))
                .arg(format!("{container}:{to}"))
                .output()
                .expect("docker cp");
            succeeded(&out, &format!("docker cp {file} to {name}"));
        }
    }
}

/// The installer as Foundry runs it on an air-gapped host, bounded by `timeout` seconds:
/// `env` are more of its variables (`K3S_URL=…`).
pub(crate) fn install(env: &str, timeout: u32) -> String {
    format!(
        "INSTALL_K3S_SKIP_DOWNLOAD=true {env} timeout {timeout} sh /root/install.sh </dev/null >/tmp/install.log 2>&1 \
         || {{ rc=$?; cat /tmp/install.log >&2; exit $rc; }}"
    )
}

/// `etcdctl` on a server host as K3s's etcd wants its clients: over TLS on loopback, with
/// the etcd client certificate K3s keeps (`--client-cert-auth`).
/// Where K3s keeps etcd's CAs and certificates.
const ETCD_TLS: &str = "/var/lib/rancher/k3s/server/tls/etcd";

pub(crate) const ETCDCTL: &str = "ETCDCTL_API=3 etcdctl --endpoints=https://127.0.0.1:2379 \
    --cacert=/var/lib/rancher/k3s/server/tls/etcd/server-ca.crt \
    --cert=/var/lib/rancher/k3s/server/tls/etcd/client.crt \
    --key=/var/lib/rancher/k3s/server/tls/etcd/client.key";

/// The etcd members as `etcdctl member list -w json` on host `i` shows them: (node name,
/// isLearner). K3s names a member `<node>-<8 hex digits>`; the suffix is checked and cut.
pub(crate) fn members(lab: &Lab, i: usize) -> Vec<(String, bool)> {
    let out = ok(lab, i, &format!("{ETCDCTL} member list -w json"));
    let json: serde_json::Value = serde_json::from_str(&out).expect("etcdctl's JSON");
    let mut found: Vec<(String, bool)> = json["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default();
            let (node, suffix) = name.rsplit_once('-').unwrap_or((name, ""));
            assert!(
                suffix.len() == 8 && suffix.chars().all(|c| c.is_ascii_hexdigit()),
                "K3s's member name: {name}"
            );
            (node.to_string(), m["isLearner"].as_bool().unwrap_or(false))
        })
        .collect();
    found.sort();
    found
}

/// Writes the kubeconfig's client certificate, key and CA as files in a temporary
/// directory, then sends a request for a path on :6443 with them (`$1`, the method `$2`,
/// GET unless given): the body, a newline, the code.
const API_REQUEST: &str = r#"d=$(mktemp -d) && cd "$d" && python3 -c '
import base64, json
k = json.load(open("/etc/rancher/k3s/k3s.yaml"))
user, cluster = k["users"][0]["user"], k["clusters"][0]["cluster"]
for name, data in (("c.crt", user["client-certificate-data"]), ("c.key", user["client-key-data"]),
                   ("ca.crt", cluster["certificate-authority-data"])):
    open(name, "wb").write(base64.b64decode(data))
' && curl -s -X "${2:-GET}" --cacert ca.crt --cert c.crt --key c.key -w '\n%{http_code}' "https://127.0.0.1:6443$1"; rc=$?; cd / && rm -rf "$d"; exit $rc"#;

/// GET `path` on the server `i`'s :6443 as the kubeconfig's user (its client
/// certificate, checked against the kubeconfig's CA): the body, a newline, the code.
fn api_get(lab: &Lab, i: usize, path: &str) -> String {
    api(lab, i, "GET", path)
}

pub(crate) fn api(lab: &Lab, i: usize, method: &str, path: &str) -> String {
    ok(
        lab,
        i,
        &format!("set -- '{path}' '{method}'\n{API_REQUEST}"),
    )
}

/// Whether the k3s stand-in on host `i` carries the Kubernetes API stand-in.
fn carries_api(lab: &Lab, i: usize) -> bool {
    run(lab, i, "grep -q '^class KubeApi' /usr/local/bin/k3s")
        .status
        .success()
}

pub(crate) fn journal(lab: &Lab, i: usize, unit: &str) -> String {
    ok(lab, i, &format!("journalctl -u {unit} --no-pager -o cat"))
}

pub(crate) fn unit_state(lab: &Lab, i: usize, unit: &str) -> String {
    let out = run(lab, i, &format!("systemctl is-active {unit}"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The token file of server `from` copied to `/root/token` on host `to` (0600), host to
/// host through this machine's pipes, never an argv.
pub(crate) fn copy_token(lab: &Lab, from: usize, to: usize, file: &str) {
    let token = ok(
        lab,
        from,
        &format!("cat /var/lib/rancher/k3s/server/{file}"),
    );
    let script = format!("umask 077; cat > /root/token <<'EOF'\n{token}\nEOF\n");
    ok(lab, to, &script);
}

#[test]
fn servers_join_one_at_a_time_as_etcd_voters_and_agents_check_their_token() {
    let began = Instant::now();
    let lab = Lab::up_with("k3s", 4, &["--systemd"]);
    let phase = |what: &str| eprintln!("{:>6.1} s  {what}", began.elapsed().as_secs_f64());
    phase("lab up");
    put_standins(&lab);
    assert_eq!(ok(&lab, 0, "cat /proc/1/comm"), "systemd");
    assert_eq!(
        ok(&lab, 0, "k3s --version | head -1"),
        "k3s version v1.32.4+k3s1 (stand-in)"
    );

    // The first server: cluster-init from config.yaml; the installer returns once the
    // unit said READY=1, so it is active at once.
    ok(
        &lab,
        0,
        &format!(
            "mkdir -p /etc/rancher/k3s && printf 'cluster-init: true\\n' > /etc/rancher/k3s/config.yaml\n{}",
            install("INSTALL_K3S_EXEC=server", 120)
        ),
    );
    assert_eq!(unit_state(&lab, 0, "k3s"), "active");
    let token = ok(&lab, 0, "cat /var/lib/rancher/k3s/server/token");
    assert!(
        token.starts_with("K10") && token.contains("::server:"),
        "K3s's token form: {}",
        token.len()
    );
    assert_eq!(
        ok(
            &lab,
            0,
            "stat -c %a /etc/systemd/system/k3s.service.env /etc/rancher/k3s/k3s.yaml \
             /var/lib/rancher/k3s/server/node-token /var/lib/rancher/k3s/server/agent-token"
        ),
        "600\n600\n600\n600"
    );
    let unit = ok(&lab, 0, "cat /etc/systemd/system/k3s.service");
    for line in [
        "Type=notify",
        "TimeoutStartSec=0",
        "Restart=always",
        "EnvironmentFile=-/etc/systemd/system/k3s.service.env",
    ] {
        assert!(unit.contains(line), "{line} in {unit}");
    }
    assert_eq!(members(&lab, 0), [("host-1".to_string(), false)]);
    // etcd over TLS with client certificates, at K3s's paths: plain HTTP and a client
    // without a certificate are refused, K3s's etcd client certificate is taken.
    ok(
        &lab,
        0,
        &format!(
            "cd {ETCD_TLS} && test -s server-ca.key && test -s peer-ca.crt && test -s peer-ca.key \
             && test -s server-client.crt && test -s peer-server-client.key && test -s client.key"
        ),
    );
    let tls_checks = format!(
        "cd {ETCD_TLS}; curl -s -o /dev/null http://127.0.0.1:2379/version; echo plain=$?; \
         curl -s -o /dev/null --cacert server-ca.crt https://127.0.0.1:2379/version; echo anonymous=$?; \
         curl -s --cacert server-ca.crt --cert client.crt --key client.key https://127.0.0.1:2379/version"
    );
    let checked = ok(&lab, 0, &tls_checks);
    let lines: Vec<&str> = checked.lines().collect();
    assert_ne!(lines[0], "plain=0", "plain HTTP refused: {checked}");
    assert_ne!(
        lines[1], "anonymous=0",
        "no certificate, refused: {checked}"
    );
    assert!(lines[2].contains("etcdserver"), "{checked}");
    assert!(
        api_get(&lab, 0, "/readyz").ends_with("\n200"),
        "the kubeconfig reaches :6443"
    );
    ok(
        &lab,
        0,
        "test -x /usr/local/bin/k3s-killall.sh && test -x /usr/local/bin/k3s-uninstall.sh",
    );

    phase("first server installed");

    // A second learner is refused by etcd itself: with a learner that never starts in
    // the cluster, host-2's join waits, and goes on once that learner is removed.
    let (_, first) = host(&lab, 0);
    let first = first.to_string();
    let prefix = first
        .rsplit_once('.')
        .expect("an IPv4 address")
        .0
        .to_string();
    let stuck = ok(
        &lab,
        0,
        &format!(
            "{ETCDCTL} member add stuck-learner --learner --peer-urls=https://{prefix}.99:2380 -w json"
        ),
    );
    let stuck: serde_json::Value = serde_json::from_str(&stuck).expect("member add's JSON");
    let stuck_id = format!("{:x}", stuck["member"]["ID"].as_u64().expect("an ID"));
    copy_token(&lab, 0, 1, "token");
    let join = spawn(
        &lab,
        1,
        &install(
            &format!(
                "INSTALL_K3S_EXEC=server K3S_URL=https://{first}:6443 K3S_TOKEN_FILE=/root/token"
            ),
            180,
        ),
    );
    until(
        "host-2's join to be held back by etcd's one-learner rule",
        Duration::from_secs(60),
        || journal(&lab, 1, "k3s").contains("too many learner members in cluster"),
    );
    assert_eq!(unit_state(&lab, 1, "k3s"), "activating");
    ok(&lab, 0, &format!("{ETCDCTL} member remove {stuck_id}"));
    let joined = finish(join, "host-2's join", Duration::from_secs(120));
    succeeded(&joined, "host-2's join");
    assert_eq!(unit_state(&lab, 1, "k3s"), "active");
    // The etcd CAs came with the bootstrap data; the certificates are the server's own.
    let ca_of = |i| {
        ok(
            &lab,
            i,
            &format!("cd {ETCD_TLS} && sha256sum server-ca.crt peer-ca.crt"),
        )
    };
    assert_eq!(ca_of(0), ca_of(1), "one pair of etcd CAs");
    let leaf_of = |i| ok(&lab, i, &format!("sha256sum {ETCD_TLS}/server-client.crt"));
    assert_ne!(leaf_of(0), leaf_of(1), "each server its own certificate");
    assert_eq!(
        members(&lab, 0),
        [("host-1".to_string(), false), ("host-2".to_string(), false)],
        "host-2 a voter before the next join"
    );
    let log = journal(&lab, 1, "k3s");
    for said in [
        "Added etcd member host-2-",
        "Promoted etcd member host-2-",
        "k3s is up and running",
    ] {
        assert!(log.contains(said), "{said} in {log}");
    }
    let token_value = token.rsplit(':').next().expect("the secret");
    for path in [
        "/etc/systemd/system/k3s.service",
        "/usr/local/bin/k3s-uninstall.sh",
    ] {
        let text = ok(&lab, 1, &format!("cat {path}"));
        assert!(!text.contains(token_value), "the token is in {path}");
    }
    assert!(!log.contains(token_value), "the token is in the journal");

    phase("host-2 joined");

    // A join toward a server that cannot be reached waits, and completes once it can.
    let (_, second) = host(&lab, 1);
    let second = second.to_string();
    copy_token(&lab, 0, 2, "token");
    lab.cut("host-2");
    let join = spawn(
        &lab,
        2,
        &install(
            &format!(
                "INSTALL_K3S_EXEC=server K3S_URL=https://{second}:6443 K3S_TOKEN_FILE=/root/token"
            ),
            180,
        ),
    );
    until(
        "host-3's join to wait for its unreachable server",
        Duration::from_secs(60),
        || journal(&lab, 2, "k3s").contains("Waiting to retrieve the cluster CA"),
    );
    assert_eq!(unit_state(&lab, 2, "k3s"), "activating");
    lab.restore("host-2");
    let joined = finish(join, "host-3's join", Duration::from_secs(150));
    succeeded(&joined, "host-3's join");
    assert_eq!(
        members(&lab, 2),
        [
            ("host-1".to_string(), false),
            ("host-2".to_string(), false),
            ("host-3".to_string(), false)
        ]
    );

    phase("host-3 joined");

    // An agent: K3S_URL and a token make one; the server checks the token.
    copy_token(&lab, 0, 3, "node-token");
    ok(
        &lab,
        3,
        &install(
            &format!("K3S_URL=https://{first}:6443 K3S_TOKEN=\"$(cat /root/token)\""),
            120,
        ),
    );
    assert_eq!(unit_state(&lab, 3, "k3s-agent"), "active");
    let env = ok(
        &lab,
        3,
        "stat -c %a /etc/systemd/system/k3s-agent.service.env",
    );
    assert_eq!(env, "600");
    assert!(
        ok(
            &lab,
            3,
            "grep -c '^K3S_TOKEN=' /etc/systemd/system/k3s-agent.service.env"
        ) == "1",
        "the token is in the .env"
    );
    let unit = ok(&lab, 3, "cat /etc/systemd/system/k3s-agent.service");
    assert!(
        !unit.contains(token_value),
        "the token is in the agent's unit"
    );
    assert!(
        journal(&lab, 3, "k3s-agent").contains("accepted the node's token"),
        "the agent checked its token"
    );
    ok(&lab, 3, "test -x /usr/local/bin/k3s-agent-uninstall.sh");

    phase("agent joined");

    // With the API stand-in in the executable, every server and the agent registered
    // their Node, Ready, at the stand-in's version; without it, :6443 has no nodes.
    let nodes = api_get(&lab, 0, "/api/v1/nodes");
    let (body, code) = nodes.rsplit_once('\n').expect("a code");
    if !carries_api(&lab, 0) {
        assert_eq!(code, "404", "{nodes}");
        return;
    }
    assert_eq!(code, "200", "{nodes}");
    let list: serde_json::Value = serde_json::from_str(body).expect("a NodeList");
    let mut seen = Vec::new();
    for node in list["items"].as_array().expect("items") {
        let name = node["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        let labels = &node["metadata"]["labels"];
        let server = name != "host-4";
        for role in ["control-plane", "etcd"] {
            let label = labels[format!("node-role.kubernetes.io/{role}")].as_str();
            assert_eq!(label == Some("true"), server, "{name}: {role}");
        }
        assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.32.4+k3s1");
        let ready = node["status"]["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{name} Ready");
        seen.push(name);
    }
    seen.sort();
    assert_eq!(seen, ["host-1", "host-2", "host-3", "host-4"]);

    // A server's Node deleted: its etcd member goes with it, as K3s's does.
    let deleted = api(&lab, 0, "DELETE", "/api/v1/nodes/host-3");
    assert!(deleted.ends_with("\n200"), "{deleted}");
    until(
        "host-3's etcd member to be removed with its Node",
        Duration::from_secs(30),
        || members(&lab, 0).iter().all(|(name, _)| name != "host-3"),
    );
    assert_eq!(
        members(&lab, 0),
        [("host-1".to_string(), false), ("host-2".to_string(), false)]
    );
}

#[test]
fn the_installer_keeps_config_yaml_refuses_a_wrong_token_and_uninstalls() {
    let lab = Lab::up_with("k3si", 2, &["--systemd"]);
    put_standins(&lab);
    let sans = "echo | openssl s_client -connect 127.0.0.1:6443 2>/dev/null \
                | openssl x509 -noout -ext subjectAltName";

    // Flags given to the installer live in the unit; flags in config.yaml stay.
    ok(
        &lab,
        0,
        &format!(
            "mkdir -p /etc/rancher/k3s && printf 'cluster-init: true\\ntls-san:\\n  - config-san.lab.test\\n' > /etc/rancher/k3s/config.yaml\n{}",
            install("INSTALL_K3S_EXEC='server --tls-san cli-san.lab.test'", 120)
        ),
    );
    let names = ok(&lab, 0, sans);
    assert!(
        names.contains("config-san.lab.test") && names.contains("cli-san.lab.test"),
        "{names}"
    );
    let token = ok(&lab, 0, "cat /var/lib/rancher/k3s/server/token");
    ok(&lab, 0, &install("", 120));
    assert_eq!(unit_state(&lab, 0, "k3s"), "active");
    let names = ok(&lab, 0, sans);
    assert!(
        names.contains("config-san.lab.test") && !names.contains("cli-san.lab.test"),
        "a re-run without the flag lost it; config.yaml's stayed: {names}"
    );
    assert_eq!(
        ok(&lab, 0, "cat /var/lib/rancher/k3s/server/token"),
        token,
        "a re-run keeps the cluster's token"
    );
    assert_eq!(members(&lab, 0), [("host-1".to_string(), false)]);

    // Another token for a server that has one is refused, as K3s refuses to read its
    // bootstrap data with it: never a new cluster, never a new token.
    let other = spawn(
        &lab,
        0,
        &install("INSTALL_K3S_EXEC='server --token another-secret'", 30),
    );
    until(
        "the server to refuse another token",
        Duration::from_secs(40),
        || journal(&lab, 0, "k3s").contains("encrypted with a different token"),
    );
    let refused = finish(other, "the installer's bound", Duration::from_secs(60));
    assert!(!refused.status.success(), "the installer waited");
    assert_eq!(
        ok(&lab, 0, "cat /var/lib/rancher/k3s/server/token"),
        token,
        "the token file is untouched"
    );
    ok(&lab, 0, &install("", 120));
    assert_eq!(unit_state(&lab, 0, "k3s"), "active");

    // An agent with a wrong token is refused by its server; the unit keeps retrying and
    // the installer keeps waiting, as K3s's does.
    let (_, first) = host(&lab, 0);
    let first = first.to_string();
    copy_token(&lab, 0, 1, "token");
    // INSTALL_K3S_SKIP_START: the unit written and enabled, not started.
    ok(
        &lab,
        1,
        &install(
            &format!(
                "INSTALL_K3S_SKIP_START=true K3S_URL=https://{first}:6443 K3S_TOKEN_FILE=/root/token"
            ),
            30,
        ),
    );
    assert_eq!(
        ok(&lab, 1, "systemctl is-enabled k3s-agent"),
        "enabled",
        "the agent's unit is enabled"
    );
    assert_eq!(unit_state(&lab, 1, "k3s-agent"), "inactive");
    ok(&lab, 1, "sed -i 's/:server:.*/:server:wrong/' /root/token");
    let wrong = spawn(
        &lab,
        1,
        &install(
            &format!("K3S_URL=https://{first}:6443 K3S_TOKEN_FILE=/root/token"),
            30,
        ),
    );
    until(
        "the server to refuse the wrong token",
        Duration::from_secs(30),
        || journal(&lab, 1, "k3s-agent").contains("refused the token"),
    );
    assert_ne!(unit_state(&lab, 1, "k3s-agent"), "active");
    let refused = finish(wrong, "the installer's bound", Duration::from_secs(60));
    assert!(!refused.status.success(), "the installer waited");
    copy_token(&lab, 0, 1, "token");
    ok(
        &lab,
        1,
        &install(
            &format!("K3S_URL=https://{first}:6443 K3S_TOKEN_FILE=/root/token"),
            120,
        ),
    );
    assert_eq!(unit_state(&lab, 1, "k3s-agent"), "active");

    // The uninstall scripts remove the units and the files.
    ok(
        &lab,
        1,
        "/usr/local/bin/k3s-agent-uninstall.sh >/dev/null 2>&1",
    );
    ok(
        &lab,
        1,
        "test ! -e /etc/systemd/system/k3s-agent.service && test ! -e /etc/systemd/system/k3s-agent.service.env \
         && test ! -e /usr/local/bin/k3s && test ! -e /usr/local/bin/k3s-agent-uninstall.sh",
    );
    ok(&lab, 0, "/usr/local/bin/k3s-uninstall.sh >/dev/null 2>&1");
    ok(
        &lab,
        0,
        "test ! -e /etc/systemd/system/k3s.service && test ! -e /etc/systemd/system/k3s.service.env \
         && test ! -e /var/lib/rancher/k3s && test ! -e /etc/rancher/k3s && test ! -e /usr/local/bin/k3s \
         && test ! -e /usr/local/bin/k3s-killall.sh && ! pgrep -x etcd",
    );
    assert_ne!(unit_state(&lab, 0, "k3s"), "active");
}
