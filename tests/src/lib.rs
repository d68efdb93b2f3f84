//! Test support: a temporary Foundry home, the real `foundry` binary, and waiting on a
//! condition with a deadline (never a bare sleep).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `foundry` binary of this build, built once per test process so it is never stale.
pub fn foundry_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("FOUNDRY_BIN") {
            return PathBuf::from(bin);
        }
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/it-xxxx -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target profile directory")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut build = Command::new(env!("CARGO"));
        build.args(["build", "--quiet", "-p", "foundry-cli", "--bin", "foundry"]);
        if release {
            build.arg("--release");
        }
        let status = build
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the foundry binary");
        assert!(status.success(), "building the foundry binary failed");
        profile_dir.join("foundry")
    })
}

/// A private Foundry home in a temporary directory, and a scratch directory beside it.
pub struct Home {
    dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Home::new()
    }
}

impl Home {
    pub fn new() -> Home {
        Home {
            dir: tempfile::Builder::new()
                .prefix("foundry-it-")
                .tempdir()
                .expect("temp dir"),
        }
    }

    /// `$FOUNDRY_HOME`.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// A scratch directory for the test's own files.
    pub fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("scratch");
        std::fs::create_dir_all(&p).expect("scratch dir");
        p
    }

    pub fn runs_dir(&self) -> PathBuf {
        self.path().join("runs")
    }

    /// Every byte under the runs directory (journals, logs, summaries), to look for what
    /// must never be there.
    pub fn runs_bytes(&self) -> Vec<u8> {
        let mut all = Vec::new();
        for entry in std::fs::read_dir(self.runs_dir())
            .expect("runs dir")
            .flatten()
        {
            all.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
        all
    }

    /// A `foundry` command with this home, no colours and no inherited crash points.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(foundry_bin());
        cmd.args(args)
            .env("FOUNDRY_HOME", self.path())
            .env("NO_COLOR", "1")
            .env_remove("FOUNDRY_FAILPOINTS")
            .env_remove("FOUNDRY_LOG")
            .env_remove("FOUNDRY_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running foundry")
    }

    /// Runs `foundry`, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "foundry {args:?} failed ({:?}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The JSON lines of `foundry ... --output json`.
    pub fn json(&self, args: &[&str]) -> Vec<Value> {
        let mut all = args.to_vec();
        all.extend(["--output", "json"]);
        let out = self.run(&all);
        json_lines(&out.stdout)
    }

    /// Writes a plan file into the scratch directory.
    pub fn plan(&self, plan: &Value) -> PathBuf {
        let path = self
            .scratch()
            .join(format!("plan-{}.json", rand::random::<u32>()));
        std::fs::write(&path, serde_json::to_vec_pretty(plan).expect("plan json"))
            .expect("writing plan");
        path
    }

    /// `foundry workflow start local --input <plan>`, to add to or run.
    pub fn start_cmd(&self, plan: &Value) -> Command {
        let path = self.plan(plan);
        self.cmd(&[
            "workflow",
            "start",
            "local",
            "--input",
            path.to_str().expect("utf8 path"),
        ])
    }

    /// Runs a plan to its end.
    pub fn start_plan(&self, plan: &Value) -> Output {
        self.start_cmd(plan).output().expect("running foundry")
    }

    /// Starts a plan in the background, its output discarded.
    pub fn spawn_plan(&self, plan: &Value) -> Child {
        self.start_cmd(plan)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning foundry")
    }

    /// Waits until this home's first run, as `workflow show` gives it, satisfies `cond`;
    /// returns the run's id.
    pub fn wait_for_run(&self, what: &str, cond: impl Fn(&Value) -> bool) -> String {
        let mut run = String::new();
        wait_for(what, Duration::from_secs(20), || {
            let Some(id) = self
                .runs()
                .first()
                .and_then(|r| r["run"].as_str().map(str::to_string))
            else {
                return false;
            };
            let ok = cond(&self.show(&id));
            run = id;
            ok
        });
        run
    }

    /// Every run in this home, as `workflow list --all --output json` shows them.
    pub fn runs(&self) -> Vec<Value> {
        self.json(&["workflow", "list", "--all"])
    }

    /// The one run of this home.
    pub fn only_run(&self) -> String {
        let runs = self.runs();
        assert_eq!(runs.len(), 1, "expected one run, found {runs:?}");
        runs[0]["run"].as_str().expect("run id").to_string()
    }

    /// `workflow show --output json` of a run.
    pub fn show(&self, run: &str) -> Value {
        let lines = self.json(&["workflow", "show", run]);
        lines.into_iter().next().expect("show printed nothing")
    }
}

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Polls `cond` every few milliseconds until it holds; panics naming `what` at the deadline.
pub fn wait_for(what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// Polls `cond` every 200 ms (each poll may be a round trip to a lab host) until it holds
/// while `child` still runs; panics naming `what` at the deadline, and at once, with the
/// child's stderr when it was piped, if the child ends first.
pub fn wait_for_while_running(
    child: &mut Child,
    what: &str,
    deadline: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return;
        }
        if let Some(status) = child.try_wait().expect("polling a child") {
            let mut err = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
            }
            panic!("foundry ended ({status}) before {what}: {err}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {deadline:?} waiting for {what}");
}

/// Whether a child ended by SIGKILL.
pub fn killed(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(libc::SIGKILL)
}

/// Kills a child with SIGKILL and reaps it.
pub fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The lines of a file, or none if it does not exist.
pub fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_string).collect())
        .unwrap_or_default()
}

/// The local Docker Engine, a real peer (`scripts/peers.sh` installs and starts it).
pub mod docker {
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    use foundry_activities::container::Endpoint;

    const SOCKET: &str = "/var/run/docker.sock";
    const IMAGE: &str = "foundry-test-busybox:1";

    /// The Engine's endpoint; fails the test, loudly, when no Engine answers.
    pub fn engine() -> Endpoint {
        let ok = Path::new(SOCKET).exists()
            && Command::new("docker")
                .args(["-H", &format!("unix://{SOCKET}"), "version"])
                .output()
                .is_ok_and(|o| o.status.success());
        assert!(
            ok,
            "no Docker Engine answers at {SOCKET}: run `bash scripts/peers.sh` (the test command does)"
        );
        Endpoint::Local {
            socket: SOCKET.into(),
        }
    }

    /// A tiny image made here from Debian's static busybox: nothing is pulled.
    pub fn test_image() -> &'static str {
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| {
            engine();
            let script = format!(
                "set -e; docker image inspect {IMAGE} >/dev/null 2>&1 && exit 0; \
                 d=$(mktemp -d); mkdir -p \"$d/bin\"; cp /bin/busybox \"$d/bin/\"; \
                 for x in sh sleep true cat; do ln -s busybox \"$d/bin/$x\"; done; \
                 tar -C \"$d\" -c . | docker import -c 'CMD [\"/bin/sleep\",\"3600\"]' - {IMAGE} >/dev/null; \
                 rm -rf \"$d\""
            );
            let status = Command::new("sh")
                .args(["-c", &script])
                .status()
                .expect("building the test image");
            assert!(status.success(), "building {IMAGE} failed");
        });
        IMAGE
    }

    /// An image of a Debian host whose PID 1 is systemd (with sshd), made here by
    /// debootstrap from Debian's packages: nothing is pulled. Built once per machine.
    pub fn systemd_image() -> &'static str {
        const SYSTEMD_IMAGE: &str = "foundry-test-systemd:1";
        static BUILT: OnceLock<()> = OnceLock::new();
        BUILT.get_or_init(|| {
            engine();
            let script = format!(
                "set -eu; docker image inspect {SYSTEMD_IMAGE} >/dev/null 2>&1 && exit 0; \
                 root=$(mktemp -d /var/tmp/foundry-systemd-rootfs.XXXXXX); trap 'rm -rf \"$root\"' EXIT; \
                 debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,openssh-server,procps \
                   bookworm \"$root\" http://deb.debian.org/debian >/dev/null; \
                 rm -f \"$root\"/etc/ssh/ssh_host_* \"$root\"/var/cache/apt/archives/*.deb; \
                 tar -C \"$root\" -c . | docker import -c 'ENTRYPOINT [\"/lib/systemd/systemd\"]' - {SYSTEMD_IMAGE} >/dev/null"
            );
            let status = Command::new("sh")
                .args(["-c", &script])
                .status()
                .expect("building the systemd image");
            assert!(status.success(), "building {SYSTEMD_IMAGE} failed");
        });
        SYSTEMD_IMAGE
    }

    /// Removes, when dropped, the containers and networks a test made.
    #[derive(Default)]
    pub struct Cleanup {
        pub containers: Vec<String>,
        pub networks: Vec<String>,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            for c in &self.containers {
                let _ = Command::new("docker").args(["rm", "-f", c]).output();
            }
            for n in &self.networks {
                // Every network of that name: the test may have made duplicates.
                let _ = Command::new("sh")
                    .args([
                        "-c",
                        &format!(
                            "docker network ls -q --filter name=^{n}$ | xargs -r docker network rm"
                        ),
                    ])
                    .output();
            }
        }
    }

    /// A name no other test uses.
    pub fn unique(prefix: &str) -> String {
        format!("foundry-it-{prefix}-{:08x}", rand::random::<u32>())
    }
}

/// A lab of real Debian hosts made by `foundry lab up` for one test, removed when dropped.
pub mod lab {
    use std::path::PathBuf;
    use std::process::{Command, Output};

    use foundry_activities::container::Endpoint;
    use foundry_activities::ssh::SshTarget;

    use crate::Home;
    use crate::docker::engine;

    pub struct Lab {
        pub home: Home,
        pub name: String,
        /// The stack config `lab up` wrote.
        pub config: PathBuf,
        /// Each host's names as in the config, in order.
        pub names: Vec<String>,
        pub targets: Vec<SshTarget>,
    }

    impl Lab {
        /// A lab of `hosts` hosts on a /24 no other lab uses; a subnet taken by a
        /// concurrent test is skipped (a bounded number of times).
        pub fn up(prefix: &str, hosts: usize) -> Lab {
            engine();
            let home = Home::new();
            let name = format!("{prefix}{:06x}", rand::random::<u32>() & 0xff_ffff);
            let count = hosts.to_string();
            let mut last = String::new();
            for _ in 0..8 {
                let subnet = format!("10.77.{}.0/24", 1 + rand::random::<u8>() % 250);
                let out = home.run(&[
                    "lab", "up", "--hosts", &count, "--name", &name, "--subnet", &subnet,
                ]);
                if out.status.success() {
                    return Lab::read(home, name);
                }
                last = String::from_utf8_lossy(&out.stderr).into_owned();
                let _ = home.run(&["lab", "down", "--name", &name]);
                if !last.contains("overlap") {
                    break;
                }
            }
            let _ = home.run(&["lab", "down", "--name", &name]);
            panic!("lab up failed: {last}");
        }

        fn read(home: Home, name: String) -> Lab {
            let config = home.path().join(format!("lab-{name}.yaml"));
            let loaded = foundry_workflows::config::load(&config).expect("the lab's config");
            let names = loaded.hosts.iter().map(|h| h.name.clone()).collect();
            let targets = loaded
                .hosts
                .into_iter()
                .map(|h| SshTarget {
                    address: h.address,
                    port: h.port,
                    user: h.user,
                    key: match h.key.expect("key") {
                        foundry_workflows::config::KeyField::File(path) => path.into(),
                        other => panic!("a lab's key is a file, not {other}"),
                    },
                    host_key: h.host_key.expect("host key"),
                })
                .collect();
            Lab {
                home,
                name,
                config,
                names,
                targets,
            }
        }

        /// The engine host: the one with this machine's Docker Engine socket (label
        /// `foundry.lab.engine=1`, as `foundry lab list` shows it), and its name.
        pub fn engine_host(&self) -> (String, SshTarget) {
            let listed = self.home.json(&["lab", "list", "--name", &self.name]);
            let host = listed
                .iter()
                .find(|h| h["labels"]["foundry.lab.engine"] == "1")
                .and_then(|h| h["labels"]["foundry.lab.host"].as_str())
                .unwrap_or_else(|| panic!("lab {} has no engine host: {listed:?}", self.name))
                .to_string();
            let i = self
                .names
                .iter()
                .position(|n| *n == host)
                .unwrap_or_else(|| panic!("{host} is not in the lab's config"));
            (host, self.targets[i].clone())
        }

        /// The Docker Engine through SSH to the engine host.
        pub fn engine(&self) -> Endpoint {
            Endpoint::ssh(self.engine_host().1)
        }

        /// `foundry lab cut HOST` (`restore` when `restore`), expecting success.
        pub fn cable(&self, host: &str, restore: bool) {
            let verb = if restore { "restore" } else { "cut" };
            self.home.ok(&["lab", verb, host, "--name", &self.name]);
        }

        /// Runs `command` on a host with the OpenSSH client, an independent witness.
        pub fn ssh(&self, target: &SshTarget, command: &str) -> Output {
            Command::new("ssh")
                .args([
                    "-i",
                    target
                        .key
                        .file()
                        .and_then(|p| p.to_str())
                        .expect("a key file, in UTF-8"),
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                    "-o",
                    "BatchMode=yes",
                    "-o",
                    "ConnectTimeout=10",
                    "-o",
                    "LogLevel=ERROR",
                    &format!("{}@{}", target.user, target.address),
                    command,
                ])
                .output()
                .expect("ssh")
        }

        /// Cuts `host` off the lab's network (`foundry lab cut`).
        pub fn cut(&self, host: &str) {
            self.home.ok(&["lab", "cut", host, "--name", &self.name]);
        }

        /// Puts `host` back on the network at its address (`foundry lab restore`).
        pub fn restore(&self, host: &str) {
            self.home
                .ok(&["lab", "restore", host, "--name", &self.name]);
        }

        /// A file's bytes on a host, or `None` when it cannot be read.
        pub fn read_file(&self, target: &SshTarget, path: &str) -> Option<Vec<u8>> {
            let out = self.ssh(target, &format!("cat {path}"));
            out.status.success().then_some(out.stdout)
        }
    }

    impl Drop for Lab {
        fn drop(&mut self) {
            let _ = self.home.run(&["lab", "down", "--name", &self.name]);
        }
    }
}

/// Looking for secrets where they must never be: the handover file's contents, every
/// file of a home, byte searches.
pub mod leak {
    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// What the handover file holds.
    pub struct Handed {
        pub root: String,
        pub keys: Vec<String>,
    }

    impl Handed {
        pub fn read(path: &Path) -> Handed {
            let text = std::fs::read_to_string(path)
                .unwrap_or_else(|e| panic!("the handover file {}: {e}", path.display()));
            let mode = std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "handover file mode");
            Handed::parse(&text)
        }

        /// The keys and root token in the handover's text, wherever it was shown.
        pub fn parse(text: &str) -> Handed {
            assert!(
                text.contains("password manager") && text.contains("delete this file"),
                "{text}"
            );
            let value = |prefix: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|l| l.strip_prefix(prefix))
                    .map(|v| v.split_once(": ").map_or(v, |(_, v)| v).trim().to_string())
                    .collect()
            };
            let keys = value("Unseal Key ");
            let root = value("Initial Root Token: ");
            assert_eq!(keys.len(), 3, "{text}");
            assert_eq!(root.len(), 1, "{text}");
            Handed {
                root: root[0].clone(),
                keys,
            }
        }

        /// Every form a secret could be written in: root token, keys base64 and hex.
        pub fn secrets(&self) -> Vec<String> {
            let mut all = vec![self.root.clone()];
            for key in &self.keys {
                all.push(key.clone());
                all.push(hex(&base64(key)));
            }
            all
        }
    }

    fn base64(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = Vec::new();
        let (mut acc, mut bits) = (0u32, 0u32);
        for c in text.bytes().filter(|c| *c != b'=') {
            let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
            acc = (acc << 6) | v;
            bits += 6;
            if bits >= 8 {
                bits -= 8;
                out.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        out
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Every file under `dir` but `except`, with its bytes.
    pub fn files_under(dir: &Path, except: &[&Path]) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut found = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    todo.push(path);
                } else if !except.contains(&path.as_path()) {
                    found.insert(path.clone(), std::fs::read(&path).unwrap_or_default());
                }
            }
        }
        found
    }

    pub fn contains(haystack: &[u8], needle: &str) -> bool {
        !needle.is_empty()
            && haystack
                .windows(needle.len())
                .any(|w| w == needle.as_bytes())
    }
}
