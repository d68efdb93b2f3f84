//! `foundry host` against real lab hosts: configure (twice: everything, then nothing),
//! add by password and by agent (then only the host's own key logs in), host keys trusted
//! only when accepted, list live with a cut host, and bad input. Every check on a host is
//! made with the OpenSSH client, an independent witness.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use foundry_activities::ssh::{SshTarget, fingerprint_of};
use foundry_tests::lab::Lab;
use foundry_tests::{Home, wait_for};

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_refused(out: &Output, needles: &[&str]) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr: {err}");
    assert!(!err.contains("panicked"), "a panic: {err}");
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

/// `foundry ARGS` with `stdin` written to its standard input.
fn run_with_stdin(home: &Home, args: &[&str], stdin: &str) -> Output {
    let mut child = home
        .cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning foundry");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("foundry output")
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            found.push(path);
        }
    }
    found
}

fn public_line(key: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-y", "-f", key.to_str().expect("utf8")])
        .output()
        .expect("ssh-keygen -y");
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn host_configure_all_changes_every_host_once_then_nothing() {
    let lab = Lab::up("host", 10);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8");

    let first = home.run(&["host", "configure", "--all", "--config", config]);
    let out = text(&first.stdout);
    assert!(first.status.success(), "{first:?}");
    for name in &lab.names {
        // The lab's hosts have the packages and carry their names already.
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name}: {out}"));
        assert!(row.ends_with("user, sudoers, ssh-key"), "{row}");
    }
    assert!(out.contains("10 hosts, 10 changed"), "{out}");

    let public = public_line(lab.targets[0].key.file().expect("a key file"));
    for target in &lab.targets {
        let facts = lab.ssh(
            target,
            "getent passwd foundry | cut -d: -f6,7; id -nG foundry; \
             sudo -n stat -c '%U:%G %a' /etc/sudoers.d/foundry /home/foundry/.ssh /home/foundry/.ssh/authorized_keys; \
             sudo -n cat /home/foundry/.ssh/authorized_keys",
        );
        assert!(facts.status.success(), "{facts:?}");
        let facts = text(&facts.stdout);
        let lines: Vec<&str> = facts.lines().collect();
        assert_eq!(lines[0], "/home/foundry:/bin/bash", "{facts}");
        assert!(lines[1].split_whitespace().any(|g| g == "sudo"), "{facts}");
        assert_eq!(
            &lines[2..5],
            [
                "root:root 440",
                "foundry:foundry 700",
                "foundry:foundry 600"
            ],
            "{facts}"
        );
        assert_eq!(&lines[5..], [public.as_str()], "{facts}");
        let sudoers = lab.ssh(target, "sudo -n cat /etc/sudoers.d/foundry");
        assert_eq!(
            text(&sudoers.stdout),
            "foundry ALL=(ALL:ALL) NOPASSWD: ALL\n"
        );
        // The foundry user logs in with the key and has sudo.
        let foundry = SshTarget {
            user: "foundry".into(),
            ..target.clone()
        };
        let root = lab.ssh(&foundry, "sudo -n id -u");
        assert!(root.status.success(), "{root:?}");
        assert_eq!(text(&root.stdout).trim(), "0");
    }

    // Again: nothing changes, and it says so, in JSON and to people.
    let events = home.json(&["host", "configure", "--all", "--config", config]);
    let result = events.last().expect("a result line");
    assert_eq!(result["summary"], "10 hosts, nothing changed", "{result}");
    let hosts = result["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 10);
    for host in hosts {
        assert_eq!(host["changed"].as_array().map(Vec::len), Some(0), "{host}");
        assert_eq!(
            host["unchanged"].as_array().map(Vec::len),
            Some(5),
            "{host}"
        );
    }
    // Each concern was a journaled step keyed under its host.
    let completed: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "step_completed")
        .filter_map(|e| e["step"].as_str())
        .collect();
    // The look at an existing `foundry` user, then the five concerns.
    assert_eq!(completed.len(), 60, "{completed:?}");
    for concern in [
        "existing-user",
        "user",
        "sudoers",
        "ssh-key",
        "packages",
        "hostname",
    ] {
        assert!(completed.contains(&format!("host-7/{concern}#0").as_str()));
    }
    let human = home.ok(&["host", "configure", "--all", "--config", config]);
    assert!(human.contains("10 hosts, nothing changed"), "{human}");

    // On a terminal (a pseudo-terminal from `script`): one progress line per host, each
    // naming the host and its step.
    let line = format!(
        "{} --config {config} host configure --all",
        foundry_tests::foundry_bin().display()
    );
    let tty = std::process::Command::new("script")
        .args(["-qfec", &line, "/dev/null"])
        .env("FOUNDRY_HOME", home.path())
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script");
    assert!(tty.status.success(), "{tty:?}");
    let screen = strip_ansi(&String::from_utf8_lossy(&tty.stdout));
    for host in ["host-2", "host-10"] {
        // `host-2 hostname`: the host's own line, its name then its step (the plain
        // output, off a terminal, says `host-2/hostname#0`).
        assert!(
            screen.contains(&format!("{host} hostname")),
            "no progress line for {host}: {screen}"
        );
        assert!(!human.contains(&format!("{host} hostname")), "{human}");
    }
    assert!(screen.contains("10 hosts, nothing changed"), "{screen}");
}

/// `text` without its terminal escape sequences (`ESC [ … letter`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for e in chars.by_ref() {
                if e.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn host_add_by_password_or_agent_then_only_its_own_key_logs_in() {
    let lab = Lab::up("hadd", 2);
    let home = &lab.home;
    let password = "Lab-pw-7f3e2a91";
    lab.set_password("host-1", password);
    let fresh = home.scratch().join("stack.yaml");
    let cfg = fresh.to_str().expect("utf8");
    let t1 = &lab.targets[0];
    let add = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = [
            "host",
            "add",
            "web-1",
            "--address",
            &t1.address,
            "--user",
            "admin",
            "--config",
            cfg,
        ]
        .map(String::from)
        .to_vec();
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };

    // A new host without --accept-new-host-key and no terminal: refused, fingerprint shown,
    // nothing written.
    let refused = run_with_stdin(
        home,
        &args(&add(&["--password-stdin"])),
        &format!("{password}\n"),
    );
    let fingerprint = fingerprint_of(&t1.host_key).expect("fingerprint");
    assert_refused(&refused, &[&fingerprint, "hint:", "--accept-new-host-key"]);
    assert!(!fresh.exists(), "a config was written");
    assert!(!home.path().join("keys").join("web-1").exists());

    // With it: a key of the host's own, installed, stored 0600, recorded.
    let added = run_with_stdin(
        home,
        &args(&add(&["--password-stdin", "--accept-new-host-key"])),
        &format!("{password}\n"),
    );
    assert!(added.status.success(), "{added:?}");
    let stack = foundry_workflows::config::load(&fresh).expect("the new config");
    let entry = stack.host("web-1").expect("web-1 recorded");
    assert_eq!(
        (entry.address.as_str(), entry.user.as_str(), entry.port),
        (t1.address.as_str(), "admin", 22)
    );
    assert_eq!(entry.host_key.as_deref(), Some(t1.host_key.as_str()));
    let key = match entry.key.clone().expect("a key") {
        foundry_workflows::config::KeyField::File(path) => path,
        other => panic!("a key file, not {other}"),
    };
    assert_eq!(key, home.path().join("keys").join("web-1"));
    let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&key), 0o600);
    assert_eq!(mode(&home.path().join("keys")), 0o700);
    assert_ne!(
        public_line(&key),
        public_line(t1.key.file().expect("a key file")),
        "a key of its own"
    );
    let own = SshTarget {
        key: key.clone().into(),
        ..t1.clone()
    };
    let login = lab.ssh(&own, "grep -c 'foundry@web-1' ~/.ssh/authorized_keys");
    assert!(login.status.success(), "the new key logs in: {login:?}");
    assert_eq!(text(&login.stdout).trim(), "1");
    // `host ssh` uses it, with host keys checked against the config.
    let ssh = home.run(&[
        "host", "ssh", "web-1", "--config", cfg, "--", "printf", "%s|", "a b", "$HOME",
    ]);
    assert!(ssh.status.success(), "{ssh:?}");
    assert_eq!(text(&ssh.stdout), "a b|$HOME|");

    // Again: nothing changes, the key is not installed twice.
    let yaml = std::fs::read_to_string(&fresh).expect("config");
    let again = run_with_stdin(
        home,
        &args(&add(&["--password-stdin", "--output", "json"])),
        &format!("{password}\n"),
    );
    assert!(again.status.success(), "{again:?}");
    let result: serde_json::Value = serde_json::from_slice(&again.stdout).expect("one JSON object");
    assert_eq!(result["config_changed"], false, "{result}");
    assert_eq!(result["new_key"], false, "{result}");
    assert_eq!(std::fs::read_to_string(&fresh).expect("config"), yaml);
    let count = lab.ssh(&own, "grep -c 'foundry@web-1' ~/.ssh/authorized_keys");
    assert_eq!(text(&count.stdout).trim(), "1");

    // A wrong password: a clear error, and no password anywhere.
    let wrong = "Wrong-pw-51c0ffee";
    let out = run_with_stdin(
        home,
        &args(
            &[
                "host",
                "add",
                "web-9",
                "--address",
                &t1.address,
                "--user",
                "admin",
                "--config",
                cfg,
                "--password-stdin",
                "--accept-new-host-key",
            ]
            .map(String::from),
        ),
        &format!("{wrong}\n"),
    );
    assert_refused(&out, &["password was refused"]);
    for secret in [wrong, password] {
        assert!(!text(&out.stdout).contains(secret) && !text(&out.stderr).contains(secret));
        assert_eq!(
            files_containing(&home.path(), secret),
            Vec::<PathBuf>::new()
        );
    }
    assert!(
        foundry_workflows::config::load(&fresh)
            .expect("config")
            .host("web-9")
            .is_none()
    );

    // The agent: the lab key in a fresh ssh-agent logs in the first time.
    let socket = home.scratch().join("agent.sock");
    let mut agent = Agent(
        Command::new("ssh-agent")
            .args(["-D", "-a", socket.to_str().expect("utf8")])
            .stdout(Stdio::null())
            .spawn()
            .expect("ssh-agent"),
    );
    wait_for("the agent's socket", Duration::from_secs(10), || {
        socket.exists()
    });
    let added = Command::new("ssh-add")
        .arg(t1.key.file().expect("a key file"))
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("ssh-add");
    assert!(added.status.success(), "{added:?}");
    let t2 = &lab.targets[1];
    let by_agent = home
        .cmd(&[
            "host",
            "add",
            "web-2",
            "--address",
            &t2.address,
            "--user",
            "admin",
            "--agent",
            "--accept-new-host-key",
            "--config",
            cfg,
        ])
        .env("SSH_AUTH_SOCK", &socket)
        .output()
        .expect("foundry");
    assert!(by_agent.status.success(), "{by_agent:?}");
    let stack = foundry_workflows::config::load(&fresh).expect("config");
    let key2 = stack
        .host("web-2")
        .and_then(|h| h.key.clone())
        .expect("web-2's key");
    let own2 = SshTarget {
        key: key2.to_string().parse().expect("a key source"),
        ..t2.clone()
    };
    assert!(lab.ssh(&own2, "true").status.success());
    agent.stop();

    // An address nobody answers at: a clear error in bounded time, nothing written.
    let absent = t1
        .address
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.250"))
        .expect("address");
    let start = Instant::now();
    let out = run_with_stdin(
        home,
        &args(
            &[
                "host",
                "add",
                "far",
                "--address",
                &absent,
                "--config",
                cfg,
                "--password-stdin",
                "--accept-new-host-key",
            ]
            .map(String::from),
        ),
        "x\n",
    );
    assert_refused(&out, &[&absent]);
    // Only that it does not hang (the connect deadline is 10 s): generous under load.
    assert!(
        start.elapsed() < Duration::from_secs(90),
        "{:?}",
        start.elapsed()
    );
    assert!(
        foundry_workflows::config::load(&fresh)
            .expect("config")
            .host("far")
            .is_none()
    );
}

/// Ends the ssh-agent it holds, also when the test fails.
struct Agent(Child);

impl Agent {
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

#[test]
fn host_list_shows_latency_and_a_cut_host_unreachable_in_bounded_time() {
    let lab = Lab::up("hlist", 2);
    let home = &lab.home;
    let config = lab.config.to_str().expect("utf8");
    let rows = home.json(&["host", "list", "--config", config]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row["reachable"], true, "{row}");
        assert!(row["latency_ms"].is_u64(), "{row}");
    }
    home.ok(&["lab", "cut", "host-2", "--name", &lab.name]);
    let start = Instant::now();
    let out = home.ok(&["host", "list", "--config", config, "--timeout", "3s"]);
    // Only that it does not hang on the cut host (TCP would give up after minutes): a
    // generous bound, since the point is the `--timeout`, checked in the row below.
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name}: {out}"))
            .to_string()
    };
    assert!(
        row("host-1").contains(" yes ") && row("host-1").contains("ms"),
        "{out}"
    );
    assert!(
        row("host-2").contains(" no ") && row("host-2").contains("no answer within 3s"),
        "{out}"
    );
    home.ok(&["lab", "restore", "host-2", "--name", &lab.name]);
}

#[test]
fn host_commands_refuse_bad_input_clearly() {
    let home = Home::new();
    std::fs::create_dir_all(home.path()).expect("home");
    // A host name with shell metacharacters: refused before anything connects.
    let out = home.run(&[
        "host",
        "add",
        "a;touch /tmp/x",
        "--address",
        "127.0.0.1",
        "--password-stdin",
    ]);
    assert_refused(&out, &["host name `a;touch /tmp/x`"]);
    assert!(!home.path().join("foundry.yaml").exists());

    // No config at all, then several and none chosen: refused, listing them.
    let out = home.run(&["host", "list"]);
    assert_refused(&out, &["no stack config in", "hint:", "host add"]);
    let key = home.scratch().join("absent_key");
    let yaml = format!(
        "hosts:\n  - name: web-1\n    address: 127.0.0.1\n    key: {}\n    host_key: ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILyWnI75cIn29qycIBWNSFj7o6H+VCipxWbxejjNvknm\n",
        key.display()
    );
    std::fs::write(home.path().join("a.yaml"), &yaml).expect("a");
    std::fs::write(home.path().join("b.yaml"), &yaml).expect("b");
    let out = home.run(&["host", "configure", "--all"]);
    assert_refused(
        &out,
        &["several stack configs", "a.yaml", "b.yaml", "--config"],
    );

    // A missing key file: named, with what to do.
    let a = home.path().join("a.yaml");
    let a = a.to_str().expect("utf8");
    let out = home.run(&["host", "configure", "--all", "--config", a]);
    assert_refused(&out, &[&key.display().to_string(), "hint:"]);
    let out = home.run(&["host", "ssh", "web-1", "--config", a]);
    assert_refused(&out, &[&key.display().to_string()]);
    let out = home
        .cmd(&["host", "list", "--output", "json"])
        .env("FOUNDRY_CONFIG", a)
        .output()
        .expect("foundry");
    assert!(out.status.success(), "{out:?}");
    let row: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(row["reachable"], false);
    assert!(
        row["error"]
            .as_str()
            .is_some_and(|e| e.contains("absent_key")),
        "{row}"
    );
    assert!(home.runs().is_empty(), "no run was started");
}
