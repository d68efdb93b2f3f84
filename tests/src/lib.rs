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
        // The test's own CARGO_MANIFEST_DIR would dirty build scripts that watch it
        // (ring's), so the next `cargo test` would rebuild them.
        let status = build
            .env_remove("CARGO_MANIFEST_DIR")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the foundry binary");
        assert!(status.success(), "building the foundry binary failed");
        profile_dir.join("foundry")
    })
}

/// Fails the test, with all `what` printed, unless it succeeded.
pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({:?}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private Foundry home in a temporary directory, and a scratch directory beside it.
pub struct Home {
    dir: tempfile::TempDir,
    /// Variables every command of this home is given (a shared journal's URL, the name
    /// the machine it stands for goes by).
    vars: Vec<(String, String)>,
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
            vars: Vec::new(),
        }
    }

    /// This home, each of its commands given `name=value`.
    pub fn with_var(mut self, name: &str, value: &str) -> Home {
        self.vars.push((name.to_string(), value.to_string()));
        self
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

    /// A `foundry` command with this home, no colours, no inherited crash points, and no
    /// D-Bus session bus: the keyring of the person running the tests is never touched (a
    /// test that wants one starts its own, [`keyring::SecretService`]).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(foundry_bin());
        cmd.args(args);
        self.env(&mut cmd);
        cmd
    }

    /// `foundry ARGS` on a pseudo-terminal of its own, made by `script(1)`: what is written
    /// to this command's stdin is typed there, and what `foundry` shows comes out on its
    /// stdout. The environment is [`Home::cmd`]'s.
    pub fn in_terminal(&self, args: &[&str]) -> Command {
        let quoted = |word: &str| format!("'{}'", word.replace('\'', "'\\''"));
        let mut line = quoted(&foundry_bin().to_string_lossy());
        for arg in args {
            line.push(' ');
            line.push_str(&quoted(arg));
        }
        let mut cmd = Command::new("script");
        cmd.args(["-qfec", &line, "/dev/null"]);
        self.env(&mut cmd);
        cmd.env("TERM", "xterm").env("SHELL", "/bin/sh");
        cmd
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("FOUNDRY_HOME", self.path())
            .env("NO_COLOR", "1")
            .env_remove("FOUNDRY_FAILPOINTS")
            .env_remove("FOUNDRY_LOG")
            .env_remove("FOUNDRY_CONFIG")
            .env_remove("FOUNDRY_KEYRING")
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("FOUNDRY_JOURNAL")
            .env_remove("FOUNDRY_HOSTNAME")
            .env_remove("FOUNDRY_LEASE_TTL")
            .env_remove("FOUNDRY_JOURNAL_WAIT")
            .stdin(Stdio::null());
        for (name, value) in &self.vars {
            cmd.env(name, value);
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("running foundry")
    }

    /// Runs `foundry`, expecting success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.ok_output(args).stdout).into_owned()
    }

    /// Runs `foundry`, expecting success; returns all it printed.
    pub fn ok_output(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert_success(&out, &format!("foundry {args:?}"));
        out
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

    /// The id of a run of this home that has not completed (one killed part-way).
    pub fn unfinished_run(&self) -> String {
        let runs = self.runs();
        runs.iter()
            .find(|r| r["state"] != "completed")
            .and_then(|r| r["run"].as_str())
            .unwrap_or_else(|| panic!("no unfinished run: {runs:?}"))
            .to_string()
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
/// Sends `sig` (`-STOP`, `-CONT`) to the process `pid`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {pid}");
}

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

/// Runs `cmd` to its end within `deadline`, its output captured; kills it and panics
/// naming `what` at the deadline.
pub fn output_within(cmd: &mut Command, what: &str, deadline: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let end = Instant::now() + deadline;
    while child.try_wait().expect("polling a child").is_none() {
        if Instant::now() > end {
            kill(&mut child);
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("a child's output")
}

/// A real Secret Service for one test: GNOME Keyring (`gnome-keyring-daemon`, its login
/// collection unlocked by a known password) on a private D-Bus session bus, both in a
/// temporary directory with their own HOME and XDG directories, so that a person's own
/// keyring is never touched. Both stop when it is dropped.
pub mod kube_standin;

pub mod keyring {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use crate::{kill, output_within};

    pub struct SecretService {
        dir: tempfile::TempDir,
        bus: Child,
        daemon: Child,
        address: String,
    }

    /// The private bus: no service is ever started on demand, so only the daemon this
    /// test starts can answer as the Secret Service.
    const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=SOCKET</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#;

    const TOOLS: [&str; 4] = [
        "dbus-daemon",
        "dbus-send",
        "gnome-keyring-daemon",
        "secret-tool",
    ];

    impl SecretService {
        /// Starts the bus and the keyring and waits, bounded, until the keyring is on the
        /// bus; fails loudly when the tools are missing.
        pub fn start() -> SecretService {
            for tool in TOOLS {
                let found = Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .output()
                    .is_ok_and(|o| o.status.success());
                assert!(
                    found,
                    "{tool} is missing: run `bash scripts/peers.sh` (it installs the Secret Service)"
                );
            }
            let dir = tempfile::Builder::new()
                .prefix("foundry-keyring-")
                .tempdir()
                .expect("temp dir");
            let socket = dir.path().join("bus");
            let socket_text = socket.to_str().expect("utf8 path").to_string();
            let config = dir.path().join("bus.conf");
            std::fs::write(&config, BUS_CONFIG.replace("SOCKET", &socket_text))
                .expect("bus config");
            let mut bus = Command::new("dbus-daemon")
                .arg(format!("--config-file={}", config.display()))
                .args(["--nofork", "--nopidfile"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting dbus-daemon");
            let deadline = Instant::now() + Duration::from_secs(10);
            while !socket.exists() {
                if Instant::now() > deadline {
                    kill(&mut bus);
                    panic!("dbus-daemon made no socket at {socket_text} in 10 s");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let address = format!("unix:path={socket_text}");
            let daemon = start_daemon(dir.path(), &address);
            let mut service = SecretService {
                dir,
                bus,
                daemon,
                address,
            };
            service.wait_ready();
            service
        }

        /// `DBUS_SESSION_BUS_ADDRESS` for a `foundry` that should find this keyring.
        pub fn address(&self) -> &str {
            &self.address
        }

        /// The secret of the item with these attributes, as `secret-tool` (libsecret, a
        /// client of its own) reads it; none when there is no such item.
        pub fn lookup(&self, service: &str, user: &str) -> Option<String> {
            let mut cmd = Command::new("secret-tool");
            cmd.args(["lookup", "service", service, "username", user])
                .env("DBUS_SESSION_BUS_ADDRESS", &self.address);
            let out = output_within(&mut cmd, "secret-tool lookup", Duration::from_secs(20));
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && !text.is_empty()).then_some(text)
        }

        /// Waits until the daemon owns the Secret Service's name on the bus.
        fn wait_ready(&mut self) {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let owned = Command::new("dbus-send")
                    .env("DBUS_SESSION_BUS_ADDRESS", &self.address)
                    .args([
                        "--session",
                        "--print-reply",
                        "--reply-timeout=2000",
                        "--dest=org.freedesktop.DBus",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus.NameHasOwner",
                        "string:org.freedesktop.secrets",
                    ])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("boolean true"));
                if owned {
                    return;
                }
                let log =
                    std::fs::read_to_string(self.dir.path().join("daemon.log")).unwrap_or_default();
                if let Ok(Some(status)) = self.daemon.try_wait() {
                    panic!("gnome-keyring-daemon ended ({status}): {log}");
                }
                assert!(
                    Instant::now() < deadline,
                    "the Secret Service is not on the bus after 20 s: {log}"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// `gnome-keyring-daemon` with the Secret Service only, its login collection made or
    /// unlocked with the password it reads on stdin, and nothing of this user's
    /// environment.
    fn start_daemon(dir: &Path, address: &str) -> Child {
        let home = dir.join("home");
        let runtime = dir.join("run");
        for d in [&home, &runtime] {
            std::fs::create_dir_all(d).expect("keyring dirs");
        }
        std::fs::set_permissions(&runtime, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let log = std::fs::File::create(dir.join("daemon.log")).expect("daemon log");
        let mut child = Command::new("gnome-keyring-daemon")
            .args(["--unlock", "--components=secrets", "--foreground"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("DBUS_SESSION_BUS_ADDRESS", address)
            .stdin(Stdio::piped())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("starting gnome-keyring-daemon");
        // The password, then end of input: the daemon reads to the end.
        let mut stdin = child.stdin.take().expect("stdin");
        std::io::Write::write_all(&mut stdin, b"foundry-test").expect("the keyring's password");
        child
    }

    impl Drop for SecretService {
        fn drop(&mut self) {
            kill(&mut self.daemon);
            kill(&mut self.bus);
        }
    }
}

/// The local Docker Engine, a real peer (`scripts/peers.sh` installs and starts it).
pub mod docker {
    use std::path::Path;
    use std::process::Command;
    use std::sync::OnceLock;

    use foundry_activities::container::Endpoint;

    const SOCKET: &str = "/var/run/docker.sock";
    const IMAGE: &str = "foundry-test-busybox:1";

    /// The `docker` client with `args`, whatever it answers.
    pub fn docker(args: &[&str]) -> std::process::Output {
        Command::new("docker").args(args).output().expect("docker")
    }

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
            Lab::up_with(prefix, hosts, &[])
        }

        /// As [`Lab::up`], with more options of `lab up` (`--own-engine`).
        pub fn up_with(prefix: &str, hosts: usize, options: &[&str]) -> Lab {
            engine();
            let home = Home::new();
            let name = format!("{prefix}{:06x}", rand::random::<u32>() & 0xff_ffff);
            let count = hosts.to_string();
            let mut last = String::new();
            for _ in 0..8 {
                let subnet = format!("10.77.{}.0/24", 1 + rand::random::<u8>() % 250);
                let mut args = vec![
                    "lab", "up", "--hosts", &count, "--name", &name, "--subnet", &subnet,
                ];
                args.extend(options);
                let out = home.run(&args);
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
            Self::ssh_command(target, command).output().expect("ssh")
        }

        /// The OpenSSH client's command that runs `command` on a host (the lab's key, host
        /// keys not checked, no prompt), to spawn as a test needs.
        pub fn ssh_command(target: &SshTarget, command: &str) -> Command {
            let mut ssh = Command::new("ssh");
            ssh.args([
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
                "--",
                &format!("{}@{}", target.user, target.address),
                command,
            ]);
            ssh
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

        /// Gives `admin` on the lab's host `host` a password, through its container.
        pub fn set_password(&self, host: &str, password: &str) {
            use std::io::Write;
            let mut child = Command::new("docker")
                .args(["exec", "-i", &self.container(host), "chpasswd"])
                .stdin(std::process::Stdio::piped())
                .spawn()
                .expect("docker exec chpasswd");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(format!("admin:{password}\n").as_bytes())
                .expect("writing");
            assert!(child.wait().expect("chpasswd").success());
        }

        /// The container of the lab's host `host`.
        pub fn container(&self, host: &str) -> String {
            let out = Command::new("docker")
                .args([
                    "ps",
                    "-q",
                    "--no-trunc",
                    "--filter",
                    &format!("label=foundry.lab={}", self.name),
                    "--filter",
                    &format!("label=foundry.lab.host={host}"),
                ])
                .output()
                .expect("docker ps");
            let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
            assert!(
                !id.is_empty(),
                "lab {} has no container for {host}",
                self.name
            );
            id
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
    pub mod live;

    use std::collections::BTreeMap;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// What was handed over: the unseal keys, and the root token when it was kept.
    pub struct Handed {
        pub root: Option<String>,
        pub keys: Vec<String>,
    }

    fn private(path: &Path) -> String {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("the handover file {}: {e}", path.display()));
        let mode = std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} mode", path.display());
        text
    }

    impl Handed {
        /// The handover's index file (no secret in it) and the files it lists, one secret
        /// each: `…-unseal-key-<n>.txt`, `…-root-token.txt`.
        pub fn read(index: &Path) -> Handed {
            let text = private(index);
            assert!(
                text.contains("password manager") && text.contains("delete its file"),
                "{text}"
            );
            let mut handed = Handed {
                root: None,
                keys: Vec::new(),
            };
            for line in text.lines().filter(|l| l.starts_with('/')) {
                let path = Path::new(line);
                let secret = private(path).trim().to_string();
                assert!(!text.contains(&secret), "the index holds a secret");
                let name = path.file_name().expect("name").to_string_lossy();
                if name.ends_with("-root-token.txt") {
                    handed.root = Some(secret);
                } else {
                    assert!(name.contains("-unseal-key-"), "{name}");
                    handed.keys.push(secret);
                }
            }
            assert_eq!(handed.keys.len(), 3, "{text}");
            handed
        }

        /// The keys and root token shown on a terminal, one by one.
        pub fn parse(text: &str) -> Handed {
            let value = |prefix: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|l| l.strip_prefix(prefix))
                    .map(|v| v.split_once(": ").map_or(v, |(_, v)| v).trim().to_string())
                    .collect()
            };
            let keys = value("Unseal Key ");
            let root = value("Initial Root Token: ");
            assert_eq!(keys.len(), 3, "{text}");
            assert!(root.len() <= 1, "{text}");
            Handed {
                root: root.first().cloned(),
                keys,
            }
        }

        /// Every form a secret could be written in: root token, keys base64 and hex.
        pub fn secrets(&self) -> Vec<String> {
            let mut all: Vec<String> = self.root.iter().cloned().collect();
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

    /// What precedes `secret`'s first occurrence in `haystack` (the secret itself left out).
    fn context(haystack: &[u8], secret: &str) -> String {
        let at = haystack
            .windows(secret.len())
            .position(|w| w == secret.as_bytes())
            .unwrap_or(0);
        String::from_utf8_lossy(&haystack[at.saturating_sub(160)..at]).into_owned()
    }

    /// No secret in any byte of the files under `root` but `except` (and where `allowed`
    /// says one may be), nor in `extra`; a journal must be among the files searched.
    pub fn assert_nowhere(
        root: &Path,
        except: &[&Path],
        allowed: &dyn Fn(&Path, &str) -> bool,
        secrets: &[String],
        extra: &[(&str, &[u8])],
    ) {
        let files = files_under(root, except);
        assert!(
            files
                .keys()
                .any(|p| p.extension().is_some_and(|e| e == "journal")),
            "no journal scanned: {:?}",
            files.keys()
        );
        for (i, secret) in secrets.iter().enumerate() {
            for (path, bytes) in &files {
                assert!(
                    allowed(path, secret) || !contains(bytes, secret),
                    "secret #{i} is in {}: {}",
                    path.display(),
                    context(bytes, secret)
                );
            }
            for (what, bytes) in extra {
                assert!(
                    !contains(bytes, secret),
                    "secret #{i} is in {what}: {}",
                    context(bytes, secret)
                );
            }
        }
    }
}

/// Asking the lab's DNS servers from inside a container network.
pub mod dns {
    use std::process::Command;

    use foundry_workflows::dns::PDNS_IMAGE;

    /// `dig` from a throwaway container on `network`: the answer's status and its records
    /// (`name ttl class type content`), bounded by dig's own timeouts.
    pub fn dig(network: &str, server: &str, name: &str, rtype: &str) -> (String, Vec<String>) {
        let out = Command::new("docker")
            .args([
                "run",
                "--rm",
                "--network",
                network,
                "--entrypoint",
                "dig",
                PDNS_IMAGE,
                "+time=2",
                "+tries=2",
                "+noall",
                "+comments",
                "+answer",
                &format!("@{server}"),
                name,
                rtype,
            ])
            .output()
            .expect("docker");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = text
            .lines()
            .find_map(|l| l.split("status: ").nth(1))
            .map(|s| s.split(',').next().unwrap_or_default().to_string())
            .unwrap_or_else(|| {
                format!("no answer: {text} {}", String::from_utf8_lossy(&out.stderr))
            });
        let answers = text
            .lines()
            .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        (status, answers)
    }
}
