//! The SSH activity against real sshd on lab hosts: exact argument passing (no injection),
//! sudo, a changed host key refused with both fingerprints, an unreachable address, a
//! missing key and a refused login: clear errors, never a panic.

use foundry_activities::ssh::{SshExec, SshUpload};
use foundry_core::{Activity, ActivityCx, SecretValue};
use foundry_tests::lab::Lab;

fn cx() -> ActivityCx {
    ActivityCx::standalone("test")
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssh_runs_argv_exactly_with_sudo_and_checks_host_keys() {
    let lab = Lab::up("ssh", 2);
    let host = &lab.targets[0];

    // Quotes, `$(...)`, backticks and separators reach the program as one argument.
    let weird = "a'b\"c $(touch /tmp/pwned) `touch /tmp/pwned2`; touch /tmp/pwned3 | &";
    let write = SshExec::new(
        host.clone(),
        argv(&["sh", "-c", "printf %s \"$1\" > /tmp/arg", "sh", weird]),
    );
    assert_eq!(write.apply(&cx()).await.expect("exec").exit_code, 0);
    assert_eq!(
        lab.read_file(host, "/tmp/arg").expect("written"),
        weird.as_bytes()
    );
    for pwned in ["/tmp/pwned", "/tmp/pwned2", "/tmp/pwned3"] {
        assert!(
            lab.read_file(host, pwned).is_none(),
            "{pwned} exists: injection"
        );
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

    // Twelve commands at once share one connection (eight channels at a time); the last
    // counts the host's established SSH connections while the others still run.
    let mut all: Vec<_> = (0..11)
        .map(|_| SshExec::new(host.clone(), argv(&["sleep", "1"])))
        .collect();
    all.push(SshExec::new(
        host.clone(),
        argv(&[
            "sh",
            "-c",
            "sleep 0.5; ss -Htn state established '( sport = :22 )' | wc -l > /tmp/conns",
        ]),
    ));
    let tasks: Vec<_> = all
        .into_iter()
        .map(|e| tokio::spawn(async move { e.apply(&cx()).await }))
        .collect();
    for task in tasks {
        assert_eq!(task.await.expect("task").expect("exec").exit_code, 0);
    }
    assert_eq!(
        lab.read_file(host, "/tmp/conns").expect("counted"),
        b"1\n",
        "one pooled connection"
    );

    // A command past its timeout: a transient failure (`sleep 30` left to its end would
    // succeed, so the error itself proves the timeout ended it).
    let mut slow = SshExec::new(host.clone(), argv(&["sleep", "30"]));
    slow.timeout_ms = Some(500);
    let err = slow.apply(&cx()).await.expect_err("timed out");
    assert!(
        err.transient && err.message.contains("did not end within 500 ms"),
        "{err:?}"
    );

    // Upload: content, mode and owner; unchanged the second time; the content never on a
    // command line.
    let mut upload = SshUpload {
        target: host.clone(),
        path: "/etc/foundry-upload.conf".into(),
        content: SecretValue::new("token = 's3cret $(touch /tmp/pwned4)'\n".to_string()),
        mode: 0o640,
        owner: "root:admin".into(),
        sudo: true,
    };
    assert!(upload.probe(&cx()).await.expect("probe").is_none());
    assert!(upload.apply(&cx()).await.expect("upload").changed);
    let stat = lab.ssh(
        host,
        "stat -c '%a %U:%G' /etc/foundry-upload.conf; cat /etc/foundry-upload.conf",
    );
    assert_eq!(
        String::from_utf8_lossy(&stat.stdout),
        "640 root:admin\ntoken = 's3cret $(touch /tmp/pwned4)'\n"
    );
    assert!(lab.read_file(host, "/tmp/pwned4").is_none());
    assert!(upload.probe(&cx()).await.expect("probe").is_some());
    assert!(
        !upload.apply(&cx()).await.expect("again").changed,
        "unchanged"
    );
    upload.mode = 0o600;
    assert!(
        upload.probe(&cx()).await.expect("probe").is_none(),
        "mode differs"
    );
    assert!(upload.apply(&cx()).await.expect("mode").changed);
    // A missing parent directory is made; a parent that is a file is an error naming it.
    upload.path = "/tmp/foundry-upload-dir/x".into();
    assert!(upload.apply(&cx()).await.expect("parent made").changed);
    assert!(
        upload.probe(&cx()).await.expect("probe").is_some(),
        "written"
    );
    upload.path = "/etc/hostname/x".into();
    let err = upload
        .apply(&cx())
        .await
        .expect_err("a file is no directory");
    assert!(err.message.contains("/etc/hostname/x"), "{err:?}");

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
    assert!(lab.read_file(host, "/tmp/should-not-exist").is_none());

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
    keyless.key = std::path::PathBuf::from("/nonexistent/id_ed25519").into();
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
