//! `foundry setup`'s wizard: a host the config names under `hosts:` without the key and
//! host key `host add` records is asked for and added. Through a real terminal (a
//! pseudo-terminal from `script(1)`): the answers typed once, `foundry` SIGKILLed by a
//! crash point once the host was added but before that was journaled, then `foundry setup`
//! again on a terminal asks nothing, completes, and the host is recorded with a key; the
//! typed password is in no byte of the home, no journal, no output. Without a terminal and
//! without answers in the environment, setup stops before any change, naming the variable
//! to set.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use foundry_tests::lab::Lab;
use foundry_tests::{Home, kill, leak};

/// `foundry` on a pseudo-terminal: what it shows, and a keyboard.
struct Terminal {
    child: Child,
    keys: Option<ChildStdin>,
    screen: Arc<Mutex<Vec<u8>>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Terminal {
    fn start(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Terminal {
        let mut cmd = home.in_terminal(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("script");
        let keys = child.stdin.take();
        let mut out = child.stdout.take().expect("stdout");
        let screen = Arc::new(Mutex::new(Vec::new()));
        let shared = screen.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => shared.lock().expect("screen").extend_from_slice(&buf[..n]),
                }
            }
        });
        Terminal {
            child,
            keys,
            screen,
            reader: Some(reader),
        }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().expect("screen")).into_owned()
    }

    /// Waits until the screen shows `text` (counted from the start) `times` times.
    fn expect(&mut self, text: &str, times: usize, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            if self.shown().matches(text).count() >= times {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "foundry ended ({status}) before showing {text:?}: {}",
                    self.shown()
                );
            }
            assert!(
                Instant::now() < end,
                "no {text:?} within {deadline:?}: {}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until `foundry` has turned its terminal's echo off (a hidden answer is read):
    /// typed earlier, an answer would be echoed, then discarded when echo goes off.
    fn expect_echo_off(&mut self, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let off = foundry_tty(self.child.id()).is_some_and(|tty| {
                let out = std::process::Command::new("stty")
                    .args(["-a", "-F", &tty])
                    .output()
                    .expect("stty");
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .any(|w| w == "-echo")
            });
            if off {
                return;
            }
            assert!(
                Instant::now() < end,
                "echo never went off: {}",
                self.shown()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` and Enter.
    fn answer(&mut self, line: &str) {
        let keys = self.keys.as_mut().expect("a keyboard");
        keys.write_all(format!("{line}\r").as_bytes())
            .expect("typing");
        keys.flush().expect("typing");
    }

    /// Waits for the end (bounded); its status and all it showed.
    fn end(mut self, deadline: Duration) -> (ExitStatus, String) {
        let end = Instant::now() + deadline;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > end {
                kill(&mut self.child);
                panic!("foundry did not end within {deadline:?}: {}", self.shown());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        drop(self.keys.take());
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, format!("{}{err}", self.shown()))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill(&mut self.child);
        }
    }
}

/// The terminal of the `foundry` process under `script`'s process `root`.
fn foundry_tty(root: u32) -> Option<String> {
    // Parents by process, from /proc/<pid>/stat (the field after the name's parenthesis).
    let mut parents = Vec::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
            parents.push((pid, ppid));
        }
    }
    let mut family = vec![root];
    for _ in 0..8 {
        for (pid, ppid) in &parents {
            if family.contains(ppid) && !family.contains(pid) {
                family.push(*pid);
            }
        }
    }
    family.iter().find_map(|pid| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "foundry")
            .then(|| std::fs::read_link(format!("/proc/{pid}/fd/0")).ok())
            .flatten()
            .map(|p| p.to_string_lossy().into_owned())
    })
}

/// The lab's config as a user who has not added their host yet would write it: the host
/// with its address and user but no key or host key; the whole stack placed, as the lab
/// places it (the network phase plans any placement a config lacks).
fn unadded_config(lab: &Lab, path: &Path) {
    use foundry_workflows::config;
    let mut stack = config::load(&lab.config).expect("the lab's config");
    for host in &mut stack.hosts {
        host.key = None;
        host.host_key = None;
    }
    config::save(path, &stack, "a host named but not added").expect("the wizard's config");
}

const PROMPTS: [&str; 5] = [
    "address of host",
    "user to log in to",
    "a private key file",
    "password of",
    "Trust it?",
];

#[test]
fn setup_wizard_on_a_terminal_asks_once_survives_a_kill_and_keeps_no_password() {
    let lab = Lab::up("wizard", 1);
    let home = &lab.home;
    let host = lab.names[0].clone();
    let target = lab.targets[0].clone();
    let password = "Wizard-pw-3b9e61d4";
    lab.set_password(&host, password);
    let config = home.scratch().join("stack.yaml");
    unadded_config(&lab, &config);
    let cfg = config.to_str().expect("utf8");

    // Typed once; killed once the host is added, before its step's completion is durable.
    let mut term = Terminal::start(
        home,
        &["--config", cfg, "setup"],
        &[("FOUNDRY_FAILPOINTS", &format!("add/{host}/add#0@effect"))],
    );
    let wait = Duration::from_secs(60);
    term.expect(&format!("address of host {host}"), 1, wait);
    term.answer(&target.address);
    term.expect(&format!("user to log in to {host}"), 1, wait);
    term.answer("admin");
    term.expect("a private key file", 1, wait);
    term.answer("");
    term.expect(&format!("password of admin@{}", target.address), 1, wait);
    term.expect_echo_off(wait);
    term.answer(password);
    term.expect("Trust it?", 1, wait);
    let fingerprint =
        foundry_activities::ssh::fingerprint_of(&target.host_key).expect("fingerprint");
    assert!(
        term.shown().contains(&fingerprint),
        "the fingerprint is shown: {}",
        term.shown()
    );
    term.answer("yes");
    let (status, first) = term.end(Duration::from_secs(120));
    assert!(
        !status.success(),
        "the crash point did not stop it: {first}"
    );
    let run = home.unfinished_run();
    let steps = home.show(&run)["step_list"].clone();
    let state = |key: &str| -> String {
        steps
            .as_array()
            .and_then(|s| s.iter().find(|s| s["key"] == key))
            .and_then(|s| s["state"].as_str())
            .unwrap_or("none")
            .to_string()
    };
    for what in ["address", "user", "key", "password", "trust"] {
        assert_eq!(
            state(&format!("add/ask/{host}/{what}#0")),
            "done",
            "{steps}"
        );
    }
    assert_ne!(state(&format!("add/{host}/add#0")), "done", "{steps}");
    // The answers are journaled; the password is not, nor in a run's log.
    let runs = home.runs_bytes();
    assert!(
        leak::contains(&runs, &target.address),
        "an answer is journaled"
    );
    assert!(
        !leak::contains(&runs, password),
        "the password is journaled"
    );

    // Again on a terminal: nothing asked, the run goes on to its end; then OpenBAO's keys
    // are shown, the first with its question (not stored: the files stay).
    let mut term = Terminal::start(home, &["--config", cfg, "setup"], &[]);
    term.expect("Stored it somewhere safe?", 1, Duration::from_secs(600));
    term.answer("n");
    let (status, second) = term.end(Duration::from_secs(60));
    assert!(status.success(), "{second}");
    assert!(second.contains("resuming the unfinished setup"), "{second}");
    assert!(second.contains("setup complete"), "{second}");
    for prompt in PROMPTS {
        assert!(!second.contains(prompt), "asked again ({prompt}): {second}");
    }
    let stack = foundry_workflows::config::load(&config).expect("config");
    let entry = stack.host(&host).expect("the host");
    assert!(entry.key.is_some(), "no key recorded: {entry:?}");
    assert_eq!(entry.host_key.as_deref(), Some(target.host_key.as_str()));
    assert_eq!(
        (entry.address.as_str(), entry.user.as_str()),
        (target.address.as_str(), "admin")
    );
    // The typed password: in no byte of the home, nor anything shown.
    leak::assert_nowhere(
        &home.path(),
        &[],
        &|_, _| false,
        &[password.to_string()],
        &[
            ("the first terminal", first.as_bytes()),
            ("the second", second.as_bytes()),
        ],
    );
    let runs = home.runs();
    assert!(
        runs.iter()
            .filter(|r| r["workflow"] == "setup")
            .all(|r| r["state"] == "completed"),
        "{runs:?}"
    );
}

#[test]
fn setup_without_a_terminal_or_answers_stops_before_any_change_naming_what_to_set() {
    let home = Home::new();
    let config = home.scratch().join("stack.yaml");
    // A documentation address: nothing is asked of it before the answers.
    let text = "hosts:\n  - name: web-1\n    address: 192.0.2.10\n    user: admin\n";
    std::fs::write(&config, text).expect("config");
    let cfg = config.to_str().expect("utf8");
    let out = home.run(&["--config", cfg, "setup"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(!said.contains("panicked"), "{said}");
    assert!(
        said.contains("address of host web-1") && said.contains("FOUNDRY_INPUT_WEB_1_ADDRESS"),
        "names the question and the variable: {said}"
    );
    assert!(said.contains("foundry host add"), "{said}");
    // With --yes the config answers the address and the user; the password is missing.
    let out = home.run(&["--config", cfg, "setup", "--yes"]);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("resuming the unfinished setup"), "{said}");
    assert!(said.contains("FOUNDRY_INPUT_WEB_1_PASSWORD"), "{said}");
    // Nothing changed: the config as written, no key made.
    assert_eq!(std::fs::read_to_string(&config).expect("config"), text);
    assert!(!home.path().join("keys").exists(), "a key was made");
    let runs = home.runs();
    assert_eq!(runs.len(), 1, "one setup, resumed: {runs:?}");
    assert_eq!(runs[0]["state"], "waiting_for_input", "{runs:?}");
}
