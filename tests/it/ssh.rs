//! The SSH activity against real sshd on lab hosts: exact argument passing (no injection),
//! sudo, a changed host key refused with both fingerprints, an unreachable address, a
//! missing key and a refused login: clear errors, never a panic.

use std::process::Command;

use foundry_activities::ssh::{SshExec, SshTarget};
use foundry_core::{Activity, ActivityCx};
use foundry_tests::Home;
use foundry_tests::docker::engine;

/// A lab of two hosts for this test, removed at the end.
struct Lab {
    home: Home,
    name: String,
    targets: Vec<SshTarget>,
}

impl Lab {
    fn up() -> Lab {
        engine();
        let home = Home::new();
        let name = format!("ssh{:06x}", rand::random::<u32>() & 0xff_ffff);
        let subnet = format!("10.77.{}.0/24", 200 + rand::random::<u8>() % 50);
        home.ok(&[
            "lab", "up", "--hosts", "2", "--name", &name, "--subnet", &subnet,
        ]);
        let config = foundry_workflows::config::load(&home.path().join(format!("lab-{name}.yaml")))
            .expect("config");
        let targets = config
            .hosts
            .into_iter()
            .map(|h| SshTarget {
                address: h.address,
                port: h.port,
                user: h.user,
                key: h.key.expect("key"),
                host_key: h.host_key.expect("host key"),
            })
            .collect();
        Lab {
            home,
            name,
            targets,
        }
    }

    /// Reads a file on a host with the OpenSSH client, as an independent witness.
    fn read(&self, target: &SshTarget, path: &str) -> Option<Vec<u8>> {
        let out = Command::new("ssh")
            .args([
                "-i",
                target.key.to_str().expect("utf8"),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "LogLevel=ERROR",
                &format!("{}@{}", target.user, target.address),
                &format!("cat {path}"),
            ])
            .output()
            .expect("ssh");
        out.status.success().then_some(out.stdout)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.home.run(&["lab", "down", "--name", &self.name]);
    }
}

fn cx() -> ActivityCx {
    ActivityCx::standalone("test")
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_runs_argv_exactly_with_sudo_and_checks_host_keys() {
    let lab = Lab::up();
    let host = &lab.targets[0];

    // Quotes, `$(...)`, backticks and separators reach the program as one argument.
    let weird = "a'b\"c $(touch /tmp/pwned) `touch /tmp/pwned2`; touch /tmp/pwned3 | &";
    let write = SshExec::new(
        host.clone(),
        argv(&["sh", "-c", "printf %s \"$1\" > /tmp/arg", "sh", weird]),
    );
    assert_eq!(write.apply(&cx()).await.expect("exec").exit_code, 0);
    assert_eq!(
        lab.read(host, "/tmp/arg").expect("written"),
        weird.as_bytes()
    );
    for pwned in ["/tmp/pwned", "/tmp/pwned2", "/tmp/pwned3"] {
        assert!(lab.read(host, pwned).is_none(), "{pwned} exists: injection");
    }

    // A failing command: its status and last stderr line.
    let fail = SshExec::new(host.clone(), argv(&["sh", "-c", "echo nope >&2; exit 3"]));
    let err = fail.apply(&cx()).await.expect_err("fails");
    assert!(
        err.transient && err.message.contains("exited with status 3: nope"),
        "{err:?}"
    );

    // sudo: root for the command, the admin user without it.
    let mut root = SshExec::new(host.clone(), argv(&["sh", "-c", "[ \"$(id -u)\" = 0 ]"]));
    assert!(root.apply(&cx()).await.is_err(), "admin is not root");
    root.sudo = true;
    assert_eq!(root.apply(&cx()).await.expect("sudo").exit_code, 0);

    // Probe: the effect is there.
    let mut probed = SshExec::new(host.clone(), argv(&["true"]));
    probed.probe = Some(argv(&["test", "-f", "/tmp/arg"]));
    assert!(probed.probe(&cx()).await.expect("probe").is_some());

    // Another host's key for this address: refused with both fingerprints, nothing run.
    let mut impostor = host.clone();
    impostor.host_key = lab.targets[1].host_key.clone();
    let marker = SshExec::new(impostor, argv(&["touch", "/tmp/should-not-exist"]));
    let err = marker.apply(&cx()).await.expect_err("refused");
    assert!(!err.transient, "{err:?}");
    assert!(err.message.contains("host key changed"), "{}", err.message);
    assert_eq!(err.message.matches("SHA256:").count(), 2, "{}", err.message);
    assert!(lab.read(host, "/tmp/should-not-exist").is_none());

    // A refused login, a missing key, an address nobody answers at.
    let mut stranger = host.clone();
    stranger.user = "nobody-here".into();
    let err = SshExec::new(stranger, argv(&["true"]))
        .apply(&cx())
        .await
        .expect_err("refused");
    assert!(
        !err.transient && err.message.contains("was refused"),
        "{err:?}"
    );
    let mut keyless = host.clone();
    keyless.key = "/nonexistent/id_ed25519".into();
    let err = SshExec::new(keyless, argv(&["true"]))
        .apply(&cx())
        .await
        .expect_err("no key");
    assert!(
        !err.transient && err.message.contains("/nonexistent/id_ed25519"),
        "{err:?}"
    );
    let mut absent = host.clone();
    absent.address = host
        .address
        .rsplit_once('.')
        .map(|(net, _)| format!("{net}.250"))
        .expect("address");
    let err = SshExec::new(absent, argv(&["true"]))
        .apply(&cx())
        .await
        .expect_err("unreachable");
    assert!(err.transient, "worth another attempt: {err:?}");
}
